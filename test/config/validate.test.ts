// Config validation: every problem at once, each with its key path; substitution; secret files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfigText } from '../../src/config/load.js';
import { validateConfigObject, loadConfigFile } from '../../src/config/index.js';

const SECRET = 'x'.repeat(40);
const base = () => ({
  publicUrl: 'https://apps.example.com',
  oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
  session: { secrets: [SECRET] },
  routes: [{ name: 'app', upstream: 'http://127.0.0.1:3000' }],
});

test('a minimal config is valid and gets documented defaults', () => {
  const r = validateConfigObject(base(), {});
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  const c = r.config;
  assert.equal(c.listen.port, 8080);
  assert.equal(c.trustProxy, false);
  assert.deepEqual(c.providers[0]!.scopes, ['openid', 'email', 'profile']);
  assert.equal(c.session.store, 'cookie');
  assert.equal(c.session.idleTimeoutMs, 8 * 3600_000);
  assert.equal(c.routes[0]!.auth, 'required');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.routes[0]), 'config is frozen after validation');
});

test('every problem is reported at once, each with its key path', () => {
  const raw = {
    ...base(),
    lisen: { port: 1 },
    publicUrl: 'https://apps.example.com/sub',
    oidc: { issuer: 'not a url', clientId: 'c', clientSecret: 's', tokenEndpointAuthMethod: 'client_secret_jwt', idTokenSigningAlgs: ['none', 'HS256'] },
    session: { secrets: ['short'], store: 'memcached', idleTimeout: '8 hours' },
    routes: [
      { name: 'a', upstream: 'ftp://x', allow: { any: [{ claim: 'groups', contain: 'admin' }] }, colour: 'red' },
      { name: 'a', upstream: 'http://x', auth: 'maybe', headers: { 'Bad Header': '{email}', 'X-Ok': '{email' } },
    ],
  };
  const r = validateConfigObject(raw, {});
  assert.equal(r.ok, false);
  const paths = !r.ok ? r.issues.map((i) => `${i.path}: ${i.message}`) : [];
  const expect = [
    /^lisen: unknown key — did you mean "listen"\?/,
    /^publicUrl: must be an origin only/,
    /^oidc\.issuer: "not a url" is not an absolute URL/,
    /^oidc\.tokenEndpointAuthMethod: must be one of/,
    /^oidc\.idTokenSigningAlgs\[0\]: must be one of RS256, .* \(got "none"\)/,
    /^oidc\.idTokenSigningAlgs\[1\]: must be one of RS256, .* \(got "HS256"\)/,
    /^session\.secrets\[0\]: is 5 bytes; session secrets must be at least 32 bytes/,
    /^session\.store: must be one of cookie, redis/,
    /^session\.idleTimeout: must be a duration/,
    /^routes\[0\]\.colour: unknown key/,
    /^routes\[0\]\.upstream: must be an http\(s\) URL/,
    /^routes\[0\]\.allow\.any\[0\]/,
    /^routes\[1\]\.name: duplicate route name "a"/,
    /^routes\[1\]\.auth: must be one of required, public/,
    /^routes\[1\]\.headers\."Bad Header": is not a valid HTTP header name/,
    /^routes\[1\]\.headers\.X-Ok: unclosed "\{"/,
  ];
  for (const re of expect) assert.ok(paths.some((p) => re.test(p)), `missing ${re} in:\n${paths.join('\n')}`);
  assert.ok(paths.some((p) => p.includes('contain') && p.includes('did you mean "contains"')), paths.join('\n'));
});

test('a secret never appears in an error message', () => {
  const r = validateConfigObject({ ...base(), session: { secrets: ['tooshort-secret-value'] } }, {});
  assert.equal(r.ok, false);
  assert.ok(!JSON.stringify(!r.ok && r.issues).includes('tooshort-secret-value'));
  // Nor when it has the wrong shape (a string where the list goes).
  const shape = validateConfigObject({ ...base(), session: { secrets: 'a-long-enough-secret-value-in-the-wrong-place' } }, {});
  assert.ok(!shape.ok && shape.issues.some((i) => i.path === 'session.secrets'));
  assert.ok(!JSON.stringify(shape.issues).includes('long-enough-secret'), JSON.stringify(shape.issues));
});

test('${VAR} and ${VAR:-default} substitution, also inside flow collections, without YAML injection', () => {
  const text = `
publicUrl: \${URL:-https://apps.example.com}
oidc: { issuer: "https://idp.example.com", clientId: c, clientSecret: \${SECRET} }
session: { secrets: [\${SESSION_SECRET}] }
routes: [ { name: app, upstream: "http://127.0.0.1:\${UP_PORT}" } ]
`;
  const env = { SECRET: 'a: b\nroutes: []', SESSION_SECRET: SECRET, UP_PORT: '3000' };
  const parsed = parseConfigText(text, env);
  assert.deepEqual(parsed.issues, []);
  const v = parsed.value as { oidc: { clientSecret: string }; routes: Array<{ upstream: string }>; publicUrl: string };
  assert.equal(v.oidc.clientSecret, 'a: b\nroutes: []', 'the value stays one string');
  assert.equal(v.routes.length, 1);
  assert.equal(v.routes[0]!.upstream, 'http://127.0.0.1:3000');
  assert.equal(v.publicUrl, 'https://apps.example.com');
  const missing = parseConfigText(text, { SESSION_SECRET: SECRET });
  assert.ok(missing.issues.some((i) => i.path === 'oidc.clientSecret' && /SECRET is not set/.test(i.message)), JSON.stringify(missing.issues));
  assert.ok(missing.issues.some((i) => i.path === 'routes[0].upstream' && /UP_PORT/.test(i.message)));
});

test('*File secrets are read like Kubernetes mounts them; both forms at once is an error', () => {
  const files: Record<string, string> = { '/s/client': 'from-file\n', '/s/sessions': `${SECRET}\n# old:\n${'y'.repeat(33)}\n` };
  const readFile = (p: string) => { if (!(p in files)) throw Object.assign(new Error('nope'), { code: 'ENOENT' }); return files[p]!; };
  const raw = { ...base(), oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecretFile: '/s/client' }, session: { secretsFile: '/s/sessions' } };
  const r = validateConfigObject(raw, {}, { readFile });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  assert.equal(r.config.providers[0]!.clientSecret, 'from-file');
  assert.deepEqual(r.config.session.secrets, [SECRET, 'y'.repeat(33)]);
  const both = validateConfigObject({ ...raw, oidc: { ...raw.oidc, clientSecret: 'x' } }, {}, { readFile });
  assert.ok(!both.ok && both.issues.some((i) => i.path === 'oidc.clientSecret' && /not both/.test(i.message)));
  const gone = validateConfigObject({ ...raw, session: { secretsFile: '/s/missing' } }, {}, { readFile });
  assert.ok(!gone.ok && gone.issues.some((i) => i.path === 'session.secretsFile' && /ENOENT/.test(i.message)));
});

test('a route on another host needs a cookieDomain covering it (no sign-in loop)', () => {
  const raw = { ...base(), routes: [{ name: 'g', match: { host: 'grafana.example.com' }, upstream: 'http://g:3000' }] };
  const r = validateConfigObject(raw, {});
  assert.ok(!r.ok && r.issues.some((i) => i.path === 'routes[0].match.host' && /cookieDomain/.test(i.message)));
  const ok = validateConfigObject({ ...raw, session: { secrets: [SECRET], cookieDomain: '.example.com' } }, {});
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.issues));
});

test('trustProxy takes a boolean or a list of addresses/CIDRs', () => {
  assert.ok(validateConfigObject({ ...base(), trustProxy: ['10.0.0.0/8', '127.0.0.1', '::1'] }, {}).ok);
  const bad = validateConfigObject({ ...base(), trustProxy: ['10.0.0.0/33', 'proxy.local'] }, {});
  assert.ok(!bad.ok && bad.issues.length === 2 && bad.issues[0]!.path === 'trustProxy[0]');
});

test('oidc.groupOverage: off when omitted; graphUrl an https origin (http only on loopback: the user\'s token goes there)', () => {
  const off = validateConfigObject(base(), {});
  assert.ok(off.ok && off.config.providers[0]!.groupOverage === undefined, 'no Graph call unless configured');
  const on = validateConfigObject({ ...base(), oidc: { ...base().oidc, groupOverage: {} } }, {});
  assert.ok(on.ok, JSON.stringify(!on.ok && on.issues));
  assert.deepEqual(on.config.providers[0]!.groupOverage, { graphUrl: 'https://graph.microsoft.com', securityEnabledOnly: false, maxGroups: 5000 });
  const sovereign = validateConfigObject({ ...base(), oidc: { ...base().oidc, groupOverage: { graphUrl: 'https://microsoftgraph.chinacloudapi.cn/' } } }, {});
  assert.ok(sovereign.ok && sovereign.config.providers[0]!.groupOverage!.graphUrl === 'https://microsoftgraph.chinacloudapi.cn');
  assert.ok(validateConfigObject({ ...base(), oidc: { ...base().oidc, groupOverage: { graphUrl: 'http://127.0.0.1:8081' } } }, {}).ok);
  for (const [graphUrl, why] of [['http://graph.internal', /must be https/], ['https://graph.microsoft.com/v1.0', /origin only/], ['https://user:pw@graph.microsoft.com', /origin only|credentials/]] as const) {
    const bad = validateConfigObject({ ...base(), oidc: { ...base().oidc, groupOverage: { graphUrl } } }, {});
    assert.ok(!bad.ok && bad.issues.some((i) => i.path === 'oidc.groupOverage.graphUrl' && why.test(i.message)), `${graphUrl}: ${JSON.stringify(!bad.ok && bad.issues)}`);
  }
  const tooMany = validateConfigObject({ ...base(), oidc: { ...base().oidc, groupOverage: { maxGroups: 20000 } } }, {});
  assert.ok(!tooMany.ok && tooMany.issues.some((i) => i.path === 'oidc.groupOverage.maxGroups'));
});

test('the shipped example config is valid', () => {
  const r = loadConfigFile('config/portcullis.yaml', { OIDC_CLIENT_SECRET: 'secret', SESSION_SECRET: SECRET });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  assert.ok(readFileSync('config/portcullis.yaml', 'utf8').includes('${SESSION_SECRET}'));
});

test('an unknown key is an error with a suggestion, at any depth: top level, nested, in a route, in allow', () => {
  const raw = {
    ...base(),
    trustProxi: true,
    session: { secrets: [SECRET], cookeName: 'x' },
    rateLimit: { signin: 3 },
    routes: [{
      name: 'app',
      upstrem: 'http://127.0.0.1:3000',
      match: { pth: '/' },
      assertion: { ttll: '1m' },
      grafanaRoles: { Admn: { claim: 'groups', contains: 'admin' } },
      preset: 'grafana',
      allow: { all: [{ claim: 'groups', contans: 'admin' }], anyy: [] },
    }],
  };
  const r = validateConfigObject(raw, {});
  assert.ok(!r.ok);
  const lines = r.issues.map((i) => `${i.path}: ${i.message}`);
  for (const expected of [
    'trustProxi: unknown key — did you mean "trustProxy"?',
    'session.cookeName: unknown key — did you mean "cookieName"?',
    'rateLimit.signin: unknown key — did you mean "signIn"?',
    'routes[0].upstrem: unknown key — did you mean "upstream"?',
    'routes[0].match.pth: unknown key — did you mean "path"?',
    'routes[0].assertion.ttll: unknown key — did you mean "ttl"?',
    'routes[0].grafanaRoles.Admn: unknown key — did you mean "Admin"?',
    'routes[0].allow.all[0].contans: unknown operator "contans" — did you mean "contains"?',
    'routes[0].allow.anyy: unknown key "anyy" — did you mean "any"?',
  ]) assert.ok(lines.includes(expected), `missing "${expected}" in:\n${lines.join('\n')}`);
  // The misspelt upstream leaves the route without one: that is said too, once.
  assert.equal(lines.filter((l) => l.startsWith('routes[0].upstream')).length, 1, lines.join('\n'));
});

test('values from ${VAR} are read as the type the key takes; other types are not converted', () => {
  const env = { PORT: '8081', WS: 'true', WORKERS: 'auto' };
  const ok = validateConfigObject({ ...base(), listen: { port: '${PORT}' }, workers: '${WORKERS}', routes: [{ name: 'app', upstream: 'http://u', websocket: '${WS}' }] }, env);
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.issues));
  assert.equal(ok.config.listen.port, 8081);
  assert.equal(ok.config.workers, 'auto');
  assert.equal(ok.config.routes[0]!.websocket, true);
  const bad = validateConfigObject({ ...base(), listen: { port: true }, routes: [{ name: 'app', upstream: 'http://u', websocket: 1 }] }, {});
  assert.ok(!bad.ok);
  assert.deepEqual(bad.issues.map((i) => `${i.path}: ${i.message}`), [
    'listen.port: must be a whole number from 0 to 65535 (got true)',
    'routes[0].websocket: must be true or false (got 1)',
  ]);
});

test('an empty allow (`allow:` with nothing after it) is an error, never "any signed-in user"', () => {
  for (const allow of [null, {}]) {
    const r = validateConfigObject({ ...base(), routes: [{ name: 'app', upstream: 'http://u', allow }] }, {});
    assert.ok(!r.ok && r.issues.some((i) => i.path === 'routes[0].allow'), JSON.stringify(allow));
  }
  // Other empty values mean "not set", as before: the default applies.
  const r = validateConfigObject({ ...base(), logLevel: null, listen: { port: null } }, {});
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  assert.equal(r.config.listen.port, 8080);
});

test('a value of the wrong type is one problem in plain words, whatever the key accepts', () => {
  const r = validateConfigObject({ ...base(), listen: ['a', 'list'], trustProxy: 3, metrics: 'no', workers: 'many', logLevel: 'verbose', oidc: { ...base().oidc, scopes: 'openid' } }, {});
  assert.ok(!r.ok);
  assert.deepEqual(r.issues.map((i) => `${i.path}: ${i.message}`), [
    'listen: must be a mapping (got a list)',
    'logLevel: must be one of fatal, error, warn, info, debug, trace, silent (got "verbose")',
    'metrics: must be false, or a mapping (got "no")',
    'oidc.scopes: must be a list (got "openid")',
    'trustProxy: must be true or false, or a list (got 3)',
    'workers: must be a whole number from 1 to 64, or "auto" (got "many")',
  ]);
});

test('inside a route an empty value is an error: an empty match must not take every request', () => {
  const r = validateConfigObject({ ...base(), routes: [{ name: 'app', upstream: 'http://u', match: null, auth: null }] }, {});
  assert.ok(!r.ok);
  assert.deepEqual(r.issues.map((i) => i.path), ['routes[0].auth', 'routes[0].match']);
});

test('a key written in the wrong section says where it belongs', () => {
  const r = validateConfigObject({ ...base(), issuer: 'https://idp.example.com', routes: [{ name: 'app', upstream: 'http://u', path: '/x' }] }, {});
  assert.ok(!r.ok);
  const lines = r.issues.map((i) => `${i.path}: ${i.message}`);
  assert.ok(lines.includes('issuer: unknown key — it belongs at oidc.issuer'), lines.join('\n'));
  assert.ok(lines.includes('routes[0].path: unknown key — it belongs at routes[].match.path'), lines.join('\n'));
});
