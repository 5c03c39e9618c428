// The worked examples agree with themselves and with Portcullis: Grafana trusts exactly the headers
// Portcullis sets, nginx and Traefik ask /oauth2/auth and copy the identity headers, and the index
// lists every example. (Each portcullis.yaml is validated in config-files.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfigText } from '../../src/config/load.js';
import { examplesDir, isPlainObject, readText, readYaml } from './chart.js';

// The identity headers Portcullis sends on every signed-in request (CONTRACT.md §4).
const IDENTITY_HEADERS = ['X-Forwarded-User', 'X-Forwarded-Email', 'X-Forwarded-Preferred-Username', 'X-Forwarded-Groups'];

type Route = { name: string; headers?: Record<string, string>; match?: { host?: string } };

/** examples/idps/<name>.md next to examples/idps/<name>/portcullis.yaml (Glewlwyd's page holds its config inline). */
const IDP_PAGES = ['keycloak', 'entra-id', 'google', 'dex', 'authentik', 'adfs', 'oidc-provider', 'lemonldap-ng'] as const;
/** The IdPs Portcullis's test suites run: their pages name tests instead of saying "not tested". */
const IDPS_IN_THE_SUITES = new Set(['oidc-provider', 'glewlwyd', 'lemonldap-ng']);
/** What each IdP page covers (issue 14), by the section headings that cover it. */
const PAGE_ITEMS: Record<string, RegExp> = {
  'the issuer URL': /^issuer/,
  'the client settings': /client|app registration/,
  'tokenEndpointAuthMethod': /tokenendpointauthmethod/,
  'token lifetimes': /token lifetimes/,
  'groups in the ID token': /groups/,
  'the bearer aud': /bearer/,
  'logout': /logout/,
  'known quirks': /quirks/,
};

function exampleConfig(path: string): { routes: Route[]; [k: string]: unknown } {
  const env = new Proxy({}, { get: () => 'placeholder-value-long-enough-for-a-session-secret' }) as Record<string, string>;
  return parseConfigText(readText(join(examplesDir, path)), env).value as { routes: Route[] };
}

/** grafana.ini as { section: { key: value } }; `;` and `#` start comments. */
function parseIni(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith(';') || line.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) { section = s[1]!; out[section] ??= {}; continue; }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (kv) (out[section] ??= {})[kv[1]!] = kv[2]!;
  }
  return out;
}

// That every link in the examples' Markdown resolves is checked with the rest of the docs
// (test/docs/links.test.ts).
test('examples/README.md links every example folder', () => {
  const index = readText(join(examplesDir, 'README.md'));
  const folders = readdirSync(examplesDir).filter((n) => statSync(join(examplesDir, n)).isDirectory());
  for (const f of folders) assert.match(index, new RegExp(`\\]\\(${f}/`), `examples/README.md does not link ${f}/`);
});

test('every example folder has a README and a portcullis.yaml (idps: one per provider)', () => {
  for (const f of ['grafana', 'legacy-app', 'nginx', 'traefik', 'api-tokens', 'entra-group-overage', 'multi-provider', 'idps']) assert.ok(existsSync(join(examplesDir, f, 'README.md')), `${f}/README.md`);
  for (const f of ['grafana', 'legacy-app', 'nginx', 'traefik', 'api-tokens', 'entra-group-overage', 'multi-provider', ...IDP_PAGES.map((idp) => `idps/${idp}`)]) {
    assert.ok(existsSync(join(examplesDir, f, 'portcullis.yaml')), `${f}/portcullis.yaml`);
  }
});

test('grafana.ini trusts exactly the X-WEBAUTH-* headers the grafana route sets', () => {
  const ini = parseIni(readText(join(examplesDir, 'grafana', 'grafana.ini')));
  const proxy = ini['auth.proxy']!;
  assert.equal(proxy.enabled, 'true');
  assert.equal(ini.auth?.disable_login_form, 'true');
  const route = exampleConfig('grafana/portcullis.yaml').routes.find((r) => r.name === 'grafana')!;
  const set = Object.keys(route.headers ?? {});
  const trusted = [proxy.header_name!, ...(proxy.headers ?? '').split(/\s+/).filter(Boolean).map((kv) => kv.split(':')[1]!)];
  assert.deepEqual([...trusted].sort(), [...set].sort());
  assert.ok(ini.auth?.signout_redirect_url?.endsWith('/oauth2/sign_out'));
});

test('the Grafana Helm values carry the same routes as the Grafana portcullis.yaml', () => {
  const values = readYaml(join(examplesDir, 'grafana', 'helm-values.yaml')) as { config: { routes: Route[] } };
  assert.deepEqual(values.config.routes, exampleConfig('grafana/portcullis.yaml').routes);
});

test('nginx: auth_request to an internal /oauth2/auth, identity headers copied, 401 sends people to sign in', () => {
  const conf = readText(join(examplesDir, 'nginx', 'nginx.conf'));
  assert.match(conf, /auth_request \/oauth2\/auth;/);
  assert.match(conf, /location = \/oauth2\/auth \{\s*\n\s*internal;/);
  for (const h of ['X-Forwarded-Host', 'X-Forwarded-Uri', 'X-Forwarded-Method']) assert.match(conf, new RegExp(`proxy_set_header ${h} \\$`));
  for (const h of IDENTITY_HEADERS) {
    const v = `upstream_http_${h.toLowerCase().replace(/-/g, '_')}`;
    const m = new RegExp(`auth_request_set \\$(\\w+)\\s+\\$${v};`).exec(conf);
    assert.ok(m, `auth_request_set from $${v}`);
    assert.match(conf, new RegExp(`proxy_set_header ${h} \\$${m[1]};`), `${h} set from $${m[1]}`);
  }
  assert.match(conf, /error_page 401 = @sign_in;/);
  assert.match(conf, /return 302 https:\/\/auth\.example\.com\/oauth2\/start\?rd=/);
  const config = exampleConfig('nginx/portcullis.yaml');
  assert.equal(config.trustProxy, true);
  assert.equal(config.publicUrl, 'https://auth.example.com');
});

test('traefik: forwardAuth to /oauth2/auth copying the identity headers, errors middleware for sign-in', () => {
  const dyn = readYaml(join(examplesDir, 'traefik', 'dynamic.yaml')) as { http: Record<string, Record<string, Record<string, unknown>>> };
  const mws = dyn.http.middlewares!;
  const fa = Object.values(mws).map((m) => m.forwardAuth).find(isPlainObject) as Record<string, unknown>;
  assert.equal(fa.address, 'http://portcullis:8080/oauth2/auth');
  assert.equal(fa.trustForwardHeader, false);
  for (const h of IDENTITY_HEADERS) assert.ok((fa.authResponseHeaders as string[]).includes(h), h);
  const errors = Object.values(mws).map((m) => m.errors).find(isPlainObject) as Record<string, unknown>;
  assert.deepEqual(errors.status, ['401']);
  assert.equal(errors.query, '/oauth2/start?rd={url}');
  // Every app router runs sign-in around auth, and every middleware/service it names exists.
  for (const [name, r] of Object.entries(dyn.http.routers!)) {
    assert.ok(Object.hasOwn(dyn.http.services!, r.service as string), `${name}: service ${String(r.service)}`);
    for (const m of (r.middlewares as string[] | undefined) ?? []) assert.ok(Object.hasOwn(mws, m), `${name}: middleware ${m}`);
  }
  const config = exampleConfig('traefik/portcullis.yaml');
  assert.equal(config.trustProxy, true);
});

test('each IdP example uses the claim paths its page describes', () => {
  const expect: Record<(typeof IDP_PAGES)[number], string[]> = {
    keycloak: ['realm_access.roles', 'resource_access.portcullis.roles', 'groups'],
    'entra-id': ['roles', 'groups'],
    google: ['hd', 'email'],
    dex: ['groups'],
    authentik: ['groups'],
    adfs: ['upn'],
    'oidc-provider': ['groups'],
    'lemonldap-ng': ['groups'],
  };
  for (const [idp, claims] of Object.entries(expect)) {
    const text = readText(join(examplesDir, 'idps', idp, 'portcullis.yaml'));
    const page = readText(join(examplesDir, 'idps', `${idp}.md`));
    for (const c of claims) {
      assert.match(text, new RegExp(`claim: ${c.replace(/\./g, '\\.')}[,}\\s]`), `${idp} uses ${c}`);
      assert.ok(page.includes(`\`${c}\``), `idps/${idp}.md mentions \`${c}\``);
    }
  }
});

test('every IdP page covers what issue 14 asks, says what "tested" means, and marks what was not', () => {
  for (const idp of [...IDP_PAGES, 'glewlwyd'] as const) {
    const page = readText(join(examplesDir, 'idps', `${idp}.md`));
    const headings = [...page.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.toLowerCase());
    for (const [item, heading] of Object.entries(PAGE_ITEMS)) {
      assert.ok(headings.some((h) => heading.test(h)), `idps/${idp}.md has a section on ${item} (headings: ${headings.join(' | ')})`);
    }
    assert.match(page, /\*\*tested\*\* (here )?means|statements marked \*\*\(tested\)\*\*|nothing on this page was tested/i, `idps/${idp}.md says what "tested" means`);
    const tested = IDPS_IN_THE_SUITES.has(idp);
    if (!tested) assert.match(page, /\*\*\(not tested\)\*\*/, `idps/${idp}.md marks what was not tested`);
    else assert.match(page, /\*\*\(tested: "/, `idps/${idp}.md names the tests`);
    if (idp !== 'glewlwyd') assert.match(page, new RegExp(`\\]\\(${idp}/portcullis\\.yaml\\)`), `idps/${idp}.md links its portcullis.yaml`);
  }
});

test('idps/README.md is an index: it links every IdP page, and every link resolves', () => {
  const dir = join(examplesDir, 'idps');
  const index = readText(join(dir, 'README.md'));
  const pages = readdirSync(dir).filter((n) => n.endsWith('.md') && n !== 'README.md');
  for (const p of pages) assert.match(index, new RegExp(`\\]\\(${p.replace('.', '\\.')}\\)`), `idps/README.md links ${p}`);
  for (const m of index.matchAll(/\]\(([^)#]+)/g)) {
    if (/^https?:/.test(m[1]!)) continue;
    assert.ok(existsSync(join(dir, m[1]!)), `broken link ${m[1]}`);
  }
});
