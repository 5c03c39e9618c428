// Signed assertions (verified with jose against /oauth2/jwks.json), bearer tokens from API
// clients, and WebSockets cut off when their session ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createPublicKey, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import WebSocket from 'ws';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';

const ALICE = { user: 'alice', password: 'alice-password' };

test('X-Portcullis-Assertion verifies against /oauth2/jwks.json; keys rotate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-assert-'));
  const k1 = await generateKeyPair('ES256', { extractable: true });
  const k2 = await generateKeyPair('ES256', { extractable: true });
  const jwk1 = { ...(await exportJWK(k1.privateKey)), kid: 'k1', alg: 'ES256' };
  const jwk2 = { ...(await exportJWK(k2.privateKey)), kid: 'k2', alg: 'ES256' };
  const keysFile = join(dir, 'keys.json');
  writeFileSync(keysFile, JSON.stringify({ keys: [jwk1, jwk2] }));
  const s = await startStack(t, {
    routes: [
      { name: 'svc', match: { path: '/svc' }, upstream: '{upstream}', assertion: { audience: 'urn:svc', ttl: '2m' } },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { raw.assertionSigning = { keysFile }; },
  });
  const { jar } = await loginViaHttp(`${s.url}/svc/data`, ALICE);
  const seen = s.upstream.requests.at(-1)!;
  const jwt = String(seen.headers['x-portcullis-assertion']);
  const jwks = createRemoteJWKSet(new URL(`${s.url}/oauth2/jwks.json`));
  const { payload, protectedHeader } = await jwtVerify(jwt, jwks, { issuer: s.url, audience: 'urn:svc', algorithms: ['ES256'] });
  assert.equal(protectedHeader.kid, 'k1', 'the first key signs');
  assert.equal(payload.sub, 'alice');
  assert.equal(payload.email, 'alice@example.com');
  assert.deepEqual(payload.groups, ['admin', 'dev']);
  assert.ok(payload.jti && payload.sid);
  assert.ok(payload.exp! - payload.iat! <= 120);
  const published = await (await request(`${s.url}/oauth2/jwks.json`)).body.json() as { keys: JWK[] };
  assert.deepEqual(published.keys.map((k) => k.kid), ['k1', 'k2'], 'every key is published (rotation)');
  assert.ok(published.keys.every((k) => k.d === undefined), 'no private parts');
  // Not on other routes, and a client cannot send its own.
  await (await request(`${s.url}/other`, { headers: { cookie: jar.header(s.url), 'x-portcullis-assertion': 'forged' } })).body.dump();
  assert.equal(s.upstream.requests.at(-1)!.headers['x-portcullis-assertion'], undefined);
  // A tampered assertion does not verify.
  await assert.rejects(jwtVerify(`${jwt.slice(0, -4)}AAAA`, jwks, { issuer: s.url, audience: 'urn:svc' }));
});

function idpKey(): JWK {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid: 'idp-key', alg: 'RS256', use: 'sig' };
}

test('bearer routes accept IdP-issued JWTs for a configured audience and nothing else', async (t) => {
  const key = idpKey();
  const s = await startStack(t, {
    idp: { keys: { keys: [key] } },
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true, allow: { claim: 'scope_groups', contains: 'api' } },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['urn:api']; },
  });
  const signing = await importJWK(key, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => ({ iss: s.idp.issuer, aud: 'urn:api', sub: 'svc-1', scope_groups: ['api'], iat: now, exp: now + 300, ...over });
  const sign = (c: Record<string, unknown>, kid = 'idp-key') => new SignJWT(c).setProtectedHeader({ alg: 'RS256', kid }).sign(signing);
  const call = async (token: string, path = '/api/x') => {
    const r = await request(`${s.url}${path}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };

  const ok = await call(await sign(claims()));
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['set-cookie'], undefined, 'no session cookie for API clients');
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'svc-1');
  assert.equal((await call(await sign(claims({ scope_groups: ['other'] })))).status, 403, 'the same claim rules apply');

  const publicPem = createPublicKey({ key: key as never, format: 'jwk' }).export({ format: 'pem', type: 'spki' });
  const hsWithPublicKey = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'idp-key' }).sign(new TextEncoder().encode(String(publicPem)));
  const none = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims())).toString('base64url')}.`;
  const other = await importJWK(idpKey(), 'RS256');
  const bad: Array<[string, string]> = [
    ['wrong audience', await sign(claims({ aud: 'urn:other' }))],
    ['no audience', await sign(claims({ aud: undefined }))],
    ['wrong issuer', await sign(claims({ iss: 'https://evil.example' }))],
    ['expired', await sign(claims({ exp: now - 120 }))],
    ['not yet valid', await sign(claims({ nbf: now + 600 }))],
    ['alg none', none],
    ['HS256 with the public key as secret', hsWithPublicKey],
    ['signed by another key', await new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', kid: 'idp-key' }).sign(other)],
    ['garbage', 'abc.def.ghi'],
  ];
  for (const [what, token] of bad) {
    const r = await call(token);
    assert.equal(r.status, 401, what);
    assert.match(String(r.headers['www-authenticate']), /^Bearer .*error="invalid_token"/, what);
  }
  // No token on a bearer route: 401 with a Bearer challenge (API clients are not redirected).
  const none401 = await request(`${s.url}/api/x`, { headers: { accept: 'application/json' } });
  await none401.body.dump();
  assert.equal(none401.statusCode, 401);
  assert.match(String(none401.headers['www-authenticate']), /^Bearer realm=/);

  // A flood of random kids costs at most one JWKS refetch per cooldown window.
  const jwksFetches = () => s.server.runtime.metrics.idpDuration.get().then((m) => m.values.filter((v) => v.metricName?.endsWith('_count') && v.labels.endpoint === 'jwks').reduce((n, v) => n + v.value, 0));
  const before = await jwksFetches();
  for (let i = 0; i < 20; i++) assert.equal((await call(await sign(claims(), `random-${randomUUID()}`))).status, 401);
  const after = await jwksFetches();
  assert.ok(after - before <= 1, `JWKS fetched ${after - before} times for 20 unknown kids`);
});

test('a WebSocket is closed when its session signs out', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: jar.header(s.url) } });
  const first = await new Promise<string>((resolve, reject) => { ws.once('message', (m) => resolve(String(m))); ws.once('error', reject); });
  const upgrade = JSON.parse(first) as { headers: Record<string, string> };
  assert.equal(upgrade.headers['x-forwarded-user'], 'alice');
  assert.ok(!String(upgrade.headers.cookie ?? '').includes('portcullis'), 'no Portcullis cookie on the upgrade');
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const t0 = Date.now();
  const out = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { origin: s.url, cookie: jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
  await closed;
  assert.ok(Date.now() - t0 < 2000, 'closed promptly');
  // And an unauthenticated upgrade is refused.
  const anon = new WebSocket(`${s.url.replace('http', 'ws')}/live`);
  const status = await new Promise<number>((resolve) => anon.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  assert.equal(status, 401);
});

test('a server-sent-event stream is cut off when its session signs out', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const sse = await request(`${s.url}/__events`, { headers: { cookie: jar.header(s.url), accept: 'text/event-stream' } });
  assert.equal(sse.statusCode, 200);
  let received = '';
  const ended = new Promise<string>((resolve) => {
    sse.body.on('data', (c: Buffer) => { received += c.toString(); });
    sse.body.on('error', () => resolve('aborted'));
    sse.body.on('end', () => resolve('ended'));
  });
  await until('the first event', 5_000, () => /data: chunk 1/.test(received));
  const t0 = Date.now();
  const out = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { origin: s.url, cookie: jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
  assert.equal(await ended, 'aborted', 'the stream was cut, not completed');
  assert.ok(Date.now() - t0 < 2000, 'promptly');
  assert.ok(!received.includes('chunk 100'), 'long before the upstream would have ended it');
});
