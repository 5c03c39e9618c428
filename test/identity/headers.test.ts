// Header templates, the size budget and presets, as tables (pure: no network).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileHeaderTemplate, encodeHeaderValue, headerSafe } from '../../src/identity/templates.js';
import { IdentityHeaderPlan, type HeaderBag } from '../../src/identity/headers.js';
import { validateConfigObject, type RouteConfig } from '../../src/config/index.js';
import type { Issues } from '../../src/config/issues.js';

const claims = {
  sub: 'u-1', email: 'zoe@example.com', name: 'Zoë\r\nX-Evil: 1', preferred_username: 'zoe',
  groups: ['admin', 'dev'], realm_access: { roles: ['editor'] }, 'https://example.com/org': 'acme',
};

test('templates render claims, literal text, fallbacks and nested paths', () => {
  const table: Array<[string, string | undefined]> = [
    ['{preferred_username}', 'zoe'],
    ['{groups}', 'admin,dev'],
    ['{realm_access.roles}', 'editor'],
    ['user={sub}; mail={email}', 'user=u-1; mail=zoe@example.com'],
    ['{nickname|preferred_username}', 'zoe'],
    ['{nickname}', undefined],
    ['{{literal}} {sub}', '{literal} u-1'],
    ['{name}', 'ZoëX-Evil: 1'], // CR/LF removed; non-ASCII is encoded per header by the plan
  ];
  for (const [tpl, expected] of table) {
    const issues: Issues = [];
    const t = compileHeaderTemplate(tpl, 'h', issues);
    assert.deepEqual(issues, [], tpl);
    assert.equal(t!(claims), expected, tpl);
  }
});

test('template syntax errors are config issues', () => {
  for (const bad of ['{email', 'email}', '{}', '{ bad name }', '{a||b}']) {
    const issues: Issues = [];
    assert.equal(compileHeaderTemplate(bad, 'routes[0].headers.X', issues), undefined, bad);
    assert.equal(issues[0]?.path, 'routes[0].headers.X', bad);
  }
});

test('header values cannot inject headers or carry control characters', () => {
  assert.equal(headerSafe('a\r\nSet-Cookie: x=1'), 'aSet-Cookie: x=1');
  assert.equal(headerSafe('tab\there\u0000nul'), 'tabherenul');
  assert.equal(headerSafe(['a\n', 'b']), 'a,b');
  assert.equal(headerSafe({ nested: true }), undefined);
  assert.equal(headerSafe('日本'), '日本', 'encoding happens per header value (encodeHeaderValue)');
});

function routes(extra: Record<string, unknown>[]): RouteConfig[] {
  const r = validateConfigObject({
    publicUrl: 'https://apps.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    session: { secrets: ['x'.repeat(40)] },
    routes: extra,
  }, {});
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  return [...r.config.routes];
}

test('a 600-group claim is trimmed visibly to stay within the header budget', () => {
  const plan = new IdentityHeaderPlan(routes([{ name: 'app', upstream: 'http://u' }]), 8192);
  const groups = Array.from({ length: 600 }, (_, i) => `group-with-a-long-name-${i}`);
  const h: HeaderBag = {};
  plan.inject('app', { claims: { ...claims, groups } }, h);
  assert.equal(h['x-forwarded-groups-truncated'], 'true');
  const g = String(h['x-forwarded-groups']);
  assert.ok(g.startsWith('group-with-a-long-name-0,'), 'the first groups are kept');
  assert.ok(!g.endsWith(','), 'cut at a group boundary');
  assert.ok(groups.includes(g.split(',').at(-1)!), 'the last kept group is whole');
  const total = Object.entries(h).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);
  assert.ok(total <= 8192, `total ${total}`);
  assert.equal(h['x-forwarded-user'], 'u-1', 'the user is never dropped');
  const small: HeaderBag = {};
  plan.inject('app', { claims }, small);
  assert.equal(small['x-forwarded-groups-truncated'], undefined);
});

test('grafana preset: X-WEBAUTH-* headers and a role from rules', () => {
  const plan = new IdentityHeaderPlan(routes([{
    name: 'grafana', upstream: 'http://g', preset: 'grafana',
    grafanaRoles: { Admin: { claim: 'groups', contains: 'admin' }, Editor: { claim: 'realm_access.roles', contains: 'editor' } },
  }]));
  const admin: HeaderBag = {};
  plan.inject('grafana', { claims }, admin);
  assert.equal(admin['x-webauth-user'], 'zoe');
  assert.equal(admin['x-webauth-email'], 'zoe@example.com');
  assert.equal(admin['x-webauth-role'], 'Admin');
  const editor: HeaderBag = {};
  plan.inject('grafana', { claims: { ...claims, groups: [] } }, editor);
  assert.equal(editor['x-webauth-role'], 'Editor');
  const nobody: HeaderBag = {};
  plan.inject('grafana', { claims: { sub: 's', email: 'e@x' } }, nobody);
  assert.equal(nobody['x-webauth-user'], 'e@x', 'falls back to email, then sub');
  assert.equal(nobody['x-webauth-role'], undefined, "no role header: Grafana's auto_assign_org_role applies");
  // And clients can never send these themselves, on any route.
  // (The upstream request removes them in every spelling: proxy/plan.ts, test/proxy/plan.test.ts.)
  for (const name of ['x-webauth-user', 'x-webauth-role', 'x-forwarded-groups-truncated']) assert.ok(plan.isProtected(name), name);
});

test('access token pass-through only where configured', () => {
  const plan = new IdentityHeaderPlan(routes([
    { name: 'plain', upstream: 'http://u' },
    { name: 'api', match: { path: '/api' }, upstream: 'http://u', passAccessToken: true, passAuthorization: true },
  ]));
  const a: HeaderBag = {};
  plan.inject('plain', { claims, accessToken: 'at-123' }, a);
  assert.equal(a['x-forwarded-access-token'], undefined);
  assert.equal(a.authorization, undefined);
  const b: HeaderBag = { authorization: 'Basic spoof' };
  plan.inject('api', { claims, accessToken: 'at-123' }, b);
  assert.equal(b['x-forwarded-access-token'], 'at-123');
  assert.equal(b.authorization, 'Bearer at-123');
});

test('non-ASCII header values: percent-encoding by default, RFC 2047 encoded words on request', () => {
  assert.equal(encodeHeaderValue('Zoë Ünal', 'percent'), 'Zo%C3%AB %C3%9Cnal');
  assert.equal(encodeHeaderValue('Zoë', 'rfc2047'), '=?UTF-8?B?Wm/Dqw==?=');
  assert.equal(encodeHeaderValue('plain ascii', 'rfc2047'), 'plain ascii', 'ASCII is never touched');
  const r = routes([{ name: 'app', upstream: 'http://u' }]);
  const percent: HeaderBag = {};
  new IdentityHeaderPlan(r).inject('app', { claims: { sub: 'é', preferred_username: '日本' } }, percent);
  assert.equal(percent['x-forwarded-user'], '%C3%A9');
  assert.equal(percent['x-forwarded-preferred-username'], '%E6%97%A5%E6%9C%AC');
  const words: HeaderBag = {};
  new IdentityHeaderPlan(r, 8192, undefined, 'rfc2047').inject('app', { claims: { sub: 'é' } }, words);
  assert.equal(words['x-forwarded-user'], '=?UTF-8?B?w6k=?=');
});
