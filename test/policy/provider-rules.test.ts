// `{ provider: ID }` rules and `portcullis explain --provider`: where the identity comes from, tested
// like a claim but never read from the claims (an IdP cannot assert it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileRule } from '../../src/policy/rules.js';
import { authorize } from '../../src/policy/decide.js';
import { explain } from '../../src/cli/explain.js';
import { validateConfigObject } from '../../src/config/index.js';
import type { Issues } from '../../src/config/issues.js';

function compile(raw: unknown): { rule: ReturnType<typeof compileRule>; issues: Issues } {
  const issues: Issues = [];
  return { rule: compileRule(raw, 'allow', issues), issues };
}

test('a provider rule passes only for that provider (or one of the list), never from a claim', () => {
  const one = compile({ provider: 'corp' }).rule!;
  assert.equal(one.test({}, 'corp'), true);
  assert.equal(one.test({}, 'partners'), false);
  assert.equal(one.test({ provider: 'corp' }), false, 'a claim named provider proves nothing');
  assert.equal(one.label, 'provider is "corp"');
  const list = compile({ provider: ['corp', 'partners'] }).rule!;
  assert.equal(list.test({}, 'partners'), true);
  assert.equal(list.test({}, 'other'), false);
  assert.equal(list.test({}), false);
  const combined = compile({ all: [{ provider: 'corp' }, { claim: 'groups', contains: 'admin' }] }).rule!;
  assert.equal(combined.test({ groups: ['admin'] }, 'corp'), true);
  assert.equal(combined.test({ groups: ['admin'] }, 'partners'), false);
  assert.equal(compile({ not: { provider: 'partners' } }).rule!.test({}, 'corp'), true);
  const route = { auth: 'required' as const, allow: one };
  assert.equal(authorize(route, { sub: 'a' }, 'corp').allowed, true);
  assert.equal(authorize(route, { sub: 'a' }, 'partners').allowed, false);
});

test('a provider rule is checked: an id, alone, not empty', () => {
  for (const [raw, re] of [
    [{ provider: 'corp', claim: 'sub' }, /stands alone/],
    [{ provider: 'bad id' }, /provider id/],
    [{ provider: [] }, /never match/],
    [{ provider: ['corp', 3] }, /provider id/],
  ] as const) {
    const { rule, issues } = compile(raw);
    assert.equal(rule, undefined);
    assert.ok(issues.some((i) => re.test(i.message)), `${JSON.stringify(raw)}: ${JSON.stringify(issues)}`);
  }
});

test('explain --provider: a route that does not accept the provider treats the claims as signed out', () => {
  const r = validateConfigObject({
    publicUrl: 'https://apps.example.com',
    session: { secrets: ['x'.repeat(32)] },
    oidc: [
      { id: 'corp', issuer: 'https://corp.example.com', clientId: 'c', clientSecret: 's' },
      { id: 'partners', issuer: 'https://partners.example.com', clientId: 'c', clientSecret: 's' },
    ],
    routes: [
      { name: 'corp', match: { path: '/corp' }, upstream: 'http://127.0.0.1:1', providers: ['corp'] },
      { name: 'staff', match: { path: '/staff' }, upstream: 'http://127.0.0.1:1', allow: { provider: 'corp' } },
      { name: 'all', upstream: 'http://127.0.0.1:1' },
    ],
  }, {});
  assert.ok(r.ok);
  const claims = { sub: 'alice' };
  const corp = explain(r.config, 'https://apps.example.com/corp/x', 'GET', claims, 'corp');
  assert.equal(corp.exitCode, 0, corp.text);
  const partners = explain(r.config, 'https://apps.example.com/corp/x', 'GET', claims, 'partners');
  assert.equal(partners.exitCode, 3, partners.text);
  assert.match(partners.text, /does not accept: treated as signed out/);
  assert.match(partners.text, /user-unauthenticated/);
  const staff = explain(r.config, 'https://apps.example.com/staff', 'GET', claims, 'partners');
  assert.equal(staff.exitCode, 3);
  assert.match(staff.text, /✗ provider is "corp"/);
  assert.equal(explain(r.config, 'https://apps.example.com/x', 'GET', claims).exitCode, 0, 'default: the first provider');
  assert.equal(explain(r.config, 'https://apps.example.com/x', 'GET', claims, 'nope').exitCode, 1);
});
