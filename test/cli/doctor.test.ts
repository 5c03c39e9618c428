// `portcullis doctor`: against the dev IdP, real loopback upstreams and a real redis-server — all ✓
// and exit 0; then each problem it exists to find (wrong secret, wrong issuer, unregistered
// redirect URI, unreachable upstream, skewed clock, keys for other algorithms, Redis down,
// certificates about to expire) named, with the exit code that goes with it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/main.js';
import { doctorCommand, type CheckResult, type DoctorOptions } from '../../src/cli/doctor.js';
import { freePort } from '../../dev/devidp/net.js';
import { findTool, requireTool } from '../helpers/chromium.js';
import { startTestIdp, type TestIdp } from '../helpers/idp.js';
import { startRedis } from '../helpers/redis.js';
import { startRogueIdp } from '../helpers/rogue-idp.js';
import { startTestUpstream, type EchoUpstream } from '../helpers/upstream.js';

const PUBLIC_URL = 'https://apps.example.com';
const dir = mkdtempSync(join(tmpdir(), 'portcullis-doctor-'));
// One IdP and one upstream for the whole file, stopped after its last test.
const idp: TestIdp = await startTestIdp({ after }, { redirectUris: [`${PUBLIC_URL}/oauth2/callback`] });
const upstream: EchoUpstream = await startTestUpstream({ after });

/** A config file (YAML is a superset of JSON) for the dev IdP and the echo upstream; `edit` changes the object first. */
function configFile(edit: (c: { oidc: Record<string, unknown>; session: Record<string, unknown>; routes: Array<Record<string, unknown>> } & Record<string, unknown>) => void = () => {}): string {
  const config = {
    publicUrl: PUBLIC_URL,
    oidc: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, timeout: '5s' },
    session: { secrets: ['doctor-test-session-secret-0123456789abcdef'] } as Record<string, unknown>,
    routes: [
      { name: 'public', match: { path: '/public' }, upstream: upstream.url, auth: 'public' },
      { name: 'app', match: { path: '/' }, upstream: upstream.url },
    ] as Array<Record<string, unknown>>,
  };
  edit(config);
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/** Runs the command in-process as `main` would (or with a skewed clock), capturing what it prints. */
async function doctor(file: string, opts: DoctorOptions & { json?: boolean } = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    const code = opts.now ? await doctorCommand(file, opts) : await main(['doctor', '--config', file, ...(opts.json ? ['--json'] : [])]);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** The checks of a `--json` run, by name. */
async function checks(file: string, opts: DoctorOptions = {}): Promise<{ code: number; byName: Map<string, CheckResult> }> {
  const r = await doctor(file, { ...opts, json: true });
  const doc = JSON.parse(r.out) as { exitCode: number; checks: CheckResult[] };
  assert.equal(doc.exitCode, r.code);
  return { code: r.code, byName: new Map(doc.checks.map((c) => [c.name, c])) };
}

function status(byName: Map<string, CheckResult>, name: string): string {
  const c = byName.get(name);
  assert.ok(c, `no check named "${name}" among ${[...byName.keys()].join(', ')}`);
  return c.status;
}

test('all good (dev IdP, two routes, a real redis-server): every check ✓, exit 0', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const r = await doctor(configFile((c) => { c.session.store = 'redis'; c.session.redis = { url: redis.url }; }));
  assert.equal(r.code, 0, r.out + r.err);
  for (const name of ['discovery', 'clock', 'jwks', 'client credentials', 'redirect uri', 'redis', 'upstream public', 'upstream app']) {
    assert.match(r.out, new RegExp(`^✓ ${name} — `, 'm'), `${name}:\n${r.out}`);
  }
  assert.doesNotMatch(r.out, /^[✗⚠]/m);
  assert.match(r.out, /invalid_grant/, 'the client authenticated; only the made-up code was refused');
  assert.match(r.out, /8 ok, 0 warnings, 0 failures$/);
});

test('wrong client secret: ✗ client credentials naming invalid_client, the rest ✓, exit 1', async () => {
  const r = await doctor(configFile((c) => { c.oidc.clientSecret = 'not-the-secret'; }));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^✗ client credentials — the token endpoint refused the client \(client_secret_basic, client portcullis\): .*invalid_client/m);
  assert.match(r.out, /^ {4}fix: oidc\.clientSecret/m);
  assert.match(r.out, /^✓ discovery — /m);
  assert.match(r.out, /^✓ redirect uri — /m);
});

test('private_key_jwt: the key the IdP has for the client → ✓ client credentials; another key → ✗ naming invalid_client and what to check', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const registered = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const { d: _d, ...pub } = registered.export({ format: 'jwk' });
  // A client of its own at the shared IdP, holding the public key inline as /oauth2/client-jwks.json
  // would publish it — kid included (oidc-provider matches the assertion's kid) — since doctor runs
  // no server to serve that endpoint.
  const { calculateJwkThumbprint } = await import('jose');
  const kid = await calculateJwkThumbprint(pub as import('jose').JWK);
  await idp.registerClient({ client_id: 'doctor-pkjwt', client_secret: '', redirect_uris: [`${PUBLIC_URL}/oauth2/callback`], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...pub, kid, alg: 'ES256', use: 'sig' }] } });
  const keyFile = (k: typeof registered) => {
    const f = join(dir, `client-${Math.random().toString(36).slice(2)}.pem`);
    writeFileSync(f, String(k.export({ format: 'pem', type: 'pkcs8' })));
    return f;
  };
  const pkjwt = (k: typeof registered) => configFile((c) => {
    delete c.oidc.clientSecret;
    Object.assign(c.oidc, { clientId: 'doctor-pkjwt', tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: keyFile(k) });
  });
  const good = await doctor(pkjwt(registered));
  assert.match(good.out, /^✓ client credentials — the token endpoint authenticated the client \(private_key_jwt, client doctor-pkjwt\)/m, good.out);
  const bad = await doctor(pkjwt(other));
  assert.equal(bad.code, 1, bad.out);
  assert.match(bad.out, /^✗ client credentials — the token endpoint refused the client \(private_key_jwt, client doctor-pkjwt\): .*invalid_client/m);
  assert.match(bad.out, /^ {4}fix: the IdP must know the first key of oidc\.clientKeysFile/m);
});

test('private_key_jwt with a certificate (Entra ID): ✓ client certificate with its expiry; ⚠ within 14 days of it; ✗ once expired or before it is valid', async () => {
  const { readFileSync } = await import('node:fs');
  const { X509Certificate } = await import('node:crypto');
  const fixture = (name: string) => readFileSync(new URL(`../signin/fixtures/${name}`, import.meta.url), 'utf8');
  const keysFile = join(dir, `client-cert-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(keysFile, `${fixture('entra-client-key.pem')}\n${fixture('entra-client-cert.pem')}`);
  const file = configFile((c) => {
    delete c.oidc.clientSecret;
    Object.assign(c.oidc, { clientId: 'doctor-cert', tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: keysFile });
  });
  const cert = new X509Certificate(fixture('entra-client-cert.pem'));
  const expires = Date.parse(cert.validTo);
  const at = async (nowMs: number) => (await checks(file, { now: () => nowMs })).byName.get('client certificate');
  const fine = await at(Date.now());
  assert.equal(fine?.status, 'ok');
  assert.match(fine!.detail, /^\(oidc\.clientKeysFile, the signing key\): valid until \d{4}-\d\d-\d\d/);
  const soon = await at(expires - 5 * 86_400_000);
  assert.equal(soon?.status, 'warn');
  assert.match(soon!.detail, /expires on .*, in 5 days/);
  assert.match(soon!.fix!, /upload the certificate to the IdP, put both first in oidc\.clientKeysFile/);
  assert.equal((await at(expires + 86_400_000))?.status, 'fail');
  assert.match((await at(expires + 86_400_000))!.detail, /expired on/);
  assert.equal((await at(Date.parse(cert.validFrom) - 86_400_000))?.status, 'fail', 'not yet valid');
  // A key without a certificate has no such check.
  assert.equal((await checks(configFile())).byName.has('client certificate'), false);
});

test('wrong issuer (the IdP names itself differently from oidc.issuer): ✗ discovery naming both; the IdP-client checks are not run', async (t) => {
  // As behind an ingress under another name: the document is served at the configured URL, but names another issuer.
  const rogue = await startRogueIdp(t, { discoveryIssuer: () => 'https://idp.example.com/realms/main' });
  const r = await doctor(configFile((c) => { c.oidc.issuer = rogue.issuer; }));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, new RegExp(`^✗ discovery — the IdP names itself "https://idp.example.com/realms/main", the config says "${rogue.issuer}"`, 'm'));
  assert.match(r.out, /fix: set oidc\.issuer to "https:\/\/idp\.example\.com\/realms\/main" exactly/);
  assert.match(r.out, /^✗ client credentials — not checked/m);
  assert.match(r.out, /^✓ upstream app — /m, 'the other checks still run');
});

test('IdP unreachable: ✗ discovery "cannot reach", exit 1, no crash', async () => {
  const port = await freePort();
  const { code, byName } = await checks(configFile((c) => { c.oidc.issuer = `http://127.0.0.1:${port}`; }));
  assert.equal(code, 1);
  assert.equal(status(byName, 'discovery'), 'fail');
  assert.match(byName.get('discovery')!.detail, /cannot reach .*ECONNREFUSED/);
  assert.equal(status(byName, 'jwks'), 'fail');
  assert.equal(byName.has('clock'), false, 'no answer, no Date to compare');
});

test('a broken IdP (every endpoint but discovery answers an HTML page with terminal escapes): ✗ jwks, ✗ client credentials, ⚠ redirect uri "could not tell", nothing it sent reaches the terminal raw', async (t) => {
  let jwksStatus = 200;
  const server = createHttpServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === '/jwks') res.statusCode = jwksStatus;
    if (req.url === '/.well-known/openid-configuration') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks`, authorization_endpoint: `${base}/auth`, token_endpoint: `${base}/token`, response_types_supported: ['code'] }));
    } else {
      res.setHeader('content-type', 'text/html');
      res.end('<html>\x1b[2J\x1b[31mowned</html>');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const r = await doctor(configFile((c) => { c.oidc.issuer = issuer; c.oidc.timeout = '1s'; }));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^✓ discovery — /m);
  assert.match(r.out, /^✗ jwks — .*not a JWK set/m);
  assert.match(r.out, /^✗ client credentials — the token endpoint gave no OAuth answer .*OAUTH_RESPONSE_IS_NOT_JSON/m);
  assert.match(r.out, /^⚠ redirect uri — could not tell: the authorization request got HTTP 200/m);
  assert.doesNotMatch(r.out, /\x1b/);
  // Its jwks_uri answering 404: Portcullis's own IdP client does not start (as the proxy would not be ready); the checks that need it say so.
  jwksStatus = 404;
  const down = await doctor(configFile((c) => { c.oidc.issuer = issuer; c.oidc.timeout = '1s'; }));
  assert.equal(down.code, 1, down.out);
  assert.match(down.out, /^✗ jwks — .*HTTP 404/m);
  assert.match(down.out, /^✗ client credentials — not checked: Portcullis's IdP client could not start: .*JWKS fetch failed: HTTP 404/m);
  assert.match(down.out, /^✗ redirect uri — not checked/m);
});

test('unregistered redirect URI (publicUrl not registered at the IdP): ✗ redirect uri, exit 1', async () => {
  const r = await doctor(configFile((c) => { c.publicUrl = 'https://elsewhere.example.com'; }));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^✗ redirect uri — the IdP refused the authorization request \(HTTP 400\): .*redirect_uri/m);
  assert.match(r.out, /fix: register https:\/\/elsewhere\.example\.com\/oauth2\/callback .* at the IdP/);
  assert.match(r.out, /^✓ client credentials — /m, 'the client itself is fine');
});

test('unreachable upstream: ✗ naming the route, the other route ✓, exit 1', async () => {
  const port = await freePort();
  const r = await doctor(configFile((c) => { c.routes.unshift({ name: 'billing', match: { path: '/billing' }, upstream: `http://127.0.0.1:${port}` }); }));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, new RegExp(`^✗ upstream billing — route "billing": cannot reach http://127.0.0.1:${port}: .*ECONNREFUSED`, 'm'));
  assert.match(r.out, /fix: check routes\[0\]\.upstream/);
  assert.match(r.out, /^✓ upstream app — .* answered HTTP \d{3}/m);
});

test('microsoft graph (oidc.groupOverage): reachable ✓; unreachable ✗; a scope of another API ⚠ (Graph would refuse the token); not checked when off', async () => {
  const graph = createHttpServer((req, res) => { req.resume(); res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"code":"InvalidAuthenticationToken"}}'); });
  await new Promise<void>((r) => graph.listen(0, '127.0.0.1', r));
  after(() => new Promise<void>((r) => { graph.close(() => r()); graph.closeAllConnections(); }));
  const graphUrl = `http://127.0.0.1:${(graph.address() as AddressInfo).port}`;
  const ok = await checks(configFile((c) => { c.oidc.groupOverage = { graphUrl }; }));
  assert.equal(status(ok.byName, 'microsoft graph'), 'ok');
  assert.match(ok.byName.get('microsoft graph')!.detail, /reachable \(HTTP 401 without a token\)/);
  const foreign = await checks(configFile((c) => { c.oidc.groupOverage = { graphUrl }; c.oidc.scopes = ['openid', 'api://reports/read']; }));
  assert.equal(status(foreign.byName, 'microsoft graph'), 'warn');
  assert.match(foreign.byName.get('microsoft graph')!.detail, /api:\/\/reports\/read/);
  const closed = await freePort();
  const down = await checks(configFile((c) => { c.oidc.groupOverage = { graphUrl: `http://127.0.0.1:${closed}` }; }));
  assert.equal(status(down.byName, 'microsoft graph'), 'fail');
  assert.equal(down.code, 1);
  assert.equal(ok.byName.has('microsoft graph') && !(await checks(configFile())).byName.has('microsoft graph'), true);
});

test('clock: the IdP 45 s ahead of this host is ✗ (tolerance 30 s), 20 s ahead ⚠ with exit 2, 45 s with clockTolerance 60s ✓', async () => {
  const file = configFile();
  const ahead = (sec: number) => ({ now: () => Date.now() - sec * 1000 });
  const far = await doctor(file, ahead(45));
  assert.equal(far.code, 1, far.out);
  assert.match(far.out, /^✗ clock — the IdP's clock is 4\d s ahead of this host \(oidc\.clockTolerance 30 s\): ID tokens will be refused/m);
  const behind = await checks(file, { now: () => Date.now() + 45_000 });
  assert.match(behind.byName.get('clock')!.detail, /4\d s behind this host/);
  assert.equal(status(behind.byName, 'clock'), 'fail');
  const near = await doctor(file, ahead(20));
  assert.equal(near.code, 2, `warnings only: exit 2\n${near.out}`);
  assert.match(near.out, /^⚠ clock — .*more than half the tolerance/m);
  assert.match(near.out, /0 failures$/);
  const tolerant = await checks(configFile((c) => { c.oidc.clockTolerance = '60s'; }), ahead(45));
  assert.equal(status(tolerant.byName, 'clock'), 'warn', '45 s of 60 s is more than half');
  const inStep = await checks(file);
  assert.equal(status(inStep.byName, 'clock'), 'ok');
});

test('jwks: keys for none of oidc.idTokenSigningAlgs (the dev IdP signs RS256/ES256, config allows ES512) → ✗', async () => {
  const { code, byName } = await checks(configFile((c) => { c.oidc.idTokenSigningAlgs = ['ES512']; }));
  assert.equal(code, 1);
  assert.equal(status(byName, 'jwks'), 'fail');
  assert.match(byName.get('jwks')!.detail, /none usable with ES512/);
  assert.match(byName.get('jwks')!.fix!, /oidc\.idTokenSigningAlgs/);
});

test('redis configured but down: ✗ redis with what to check, exit 1', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  await redis.stop();
  const { code, byName } = await checks(configFile((c) => { c.oidc.timeout = '2s'; c.session.store = 'redis'; c.session.redis = { url: `redis://:hunter2@127.0.0.1:${redis.port}` }; }));
  assert.equal(code, 1);
  assert.equal(status(byName, 'redis'), 'fail');
  const redisCheck = byName.get('redis')!;
  assert.match(redisCheck.detail, /not connected within 2 s: .*ECONNREFUSED/);
  assert.doesNotMatch(redisCheck.detail, /hunter2/, 'the password is never printed');
  assert.match(redisCheck.fix!, /session\.redis\.url/);
});

test('TLS certificates: an https upstream whose certificate expires in 5 days ⚠, after it expired ✗; an untrusted one fails the upstream check', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync(findTool('openssl')!, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '5', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const file = configFile((c) => { c.routes.push({ name: 'secure', match: { path: '/secure' }, upstream: `https://127.0.0.1:${port}` }); });
  const soon = await checks(file);
  const name = `certificate 127.0.0.1:${port}`;
  assert.equal(status(soon.byName, name), 'warn');
  assert.match(soon.byName.get(name)!.detail, /\(route secure\): expires on \d{4}-\d\d-\d\d, in [45] days/);
  assert.equal(status(soon.byName, 'upstream secure'), 'fail', 'undici verifies the certificate, as the proxy does');
  assert.match(soon.byName.get('upstream secure')!.detail, /self[- ]signed/i);
  // Ten days later (this host's clock moved; the IdP's Date then says it is 10 days behind, too).
  const later = await checks(file, { now: () => Date.now() + 10 * 86_400_000 });
  assert.equal(status(later.byName, name), 'fail');
  assert.match(later.byName.get(name)!.detail, /expired on/);
});

test('--json: one document {ok, exitCode, checks: [{name, status, detail, fix?}]}', async () => {
  const r = await doctor(configFile(), { json: true });
  assert.equal(r.code, 0, r.out);
  const doc = JSON.parse(r.out) as Record<string, unknown>;
  assert.deepEqual(Object.keys(doc).sort(), ['checks', 'exitCode', 'ok']);
  assert.equal(doc.ok, true);
  assert.equal(doc.exitCode, 0);
  const list = doc.checks as CheckResult[];
  assert.deepEqual(list.map((c) => c.name), ['discovery', 'clock', 'jwks', 'client credentials', 'redirect uri', 'upstream public', 'upstream app']);
  for (const c of list) {
    assert.equal(c.status, 'ok');
    assert.equal(typeof c.detail, 'string');
    assert.ok(c.detail.length > 0);
  }
});

test('config problems: printed as `portcullis check` prints them, exit 1 (and one failed "config" check with --json)', async () => {
  const bad = configFile((c) => { c.oidc.clientSecret = undefined; c.routes[0]!.upstrem = 'x'; });
  const r = await doctor(bad);
  assert.equal(r.code, 1);
  assert.match(r.err, /problems?\n/);
  assert.match(r.err, /routes\[0\]\.upstrem/);
  assert.equal(r.out, '');
  const j = await doctor(bad, { json: true });
  assert.equal(j.code, 1);
  const doc = JSON.parse(j.out) as { ok: boolean; checks: CheckResult[] };
  assert.equal(doc.ok, false);
  assert.equal(doc.checks[0]!.name, 'config');
  assert.match(doc.checks[0]!.detail, /routes\[0\]\.upstrem/);
});

test('several providers: every provider\'s IdP checks, named by id; one with a wrong secret fails alone', async (t) => {
  const partners = await startTestIdp(t, { redirectUris: [`${PUBLIC_URL}/oauth2/callback`] });
  const { code, byName } = await checks(configFile((c) => {
    (c as Record<string, unknown>).oidc = [
      { id: 'corp', ...c.oidc },
      { id: 'partners', issuer: partners.issuer, clientId: partners.clientId, clientSecret: 'not-the-secret', timeout: '5s' },
    ];
  }));
  assert.equal(code, 1);
  for (const name of ['discovery', 'jwks', 'client credentials', 'redirect uri']) assert.equal(status(byName, `corp: ${name}`), 'ok', `corp: ${name}`);
  assert.equal(status(byName, 'partners: discovery'), 'ok');
  assert.equal(status(byName, 'partners: client credentials'), 'fail');
  assert.match(byName.get('partners: client credentials')!.detail, /invalid_client/);
  assert.match(byName.get('partners: client credentials')!.fix!, /^oidc\[1\]\.clientSecret/, 'the fix names the provider\'s key path');
});
