// X-Portcullis-Assertion through forward-auth (nginx `auth_request_set $a $upstream_http_x_portcullis_assertion`,
// Traefik `authResponseHeaders`): the 202 carries a JWT the app can verify with the keys at
// /oauth2/jwks.json — signed by the published key, `iss` publicUrl, `aud` the route's audience
// (default: the upstream's origin), `exp` = `iat` + the route's ttl, `sub` the user (session or
// bearer token) — and never the client's own X-Portcullis-Assertion, on any doorway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { request } from 'undici';
import { exchange, type RawReply } from '../helpers/raw-http.js';
import { ALICE } from './support.js';
import { DOORWAYS, doorwayHead, startDoorwayStacks } from './doorway-stacks.js';

const ROUTES = [
  { name: 'svc', match: { path: '/svc' }, upstream: '{upstream}', assertion: true, websocket: true, bearer: true },
  { name: 'short', match: { path: '/short' }, upstream: '{upstream}', assertion: { audience: 'urn:short', ttl: '30s' }, websocket: true, bearer: true },
  { name: 'admin', match: { path: '/admin' }, upstream: '{upstream}', assertion: true, allow: { claim: 'groups', contains: 'nobody-has-this' }, websocket: true, bearer: true },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true, bearer: true },
];
const FORGED = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.';
const trustLoopback = (raw: Record<string, unknown>) => { raw.trustProxy = ['127.0.0.1']; };

const all = (reply: RawReply, name: string) => reply.headers.filter(([n]) => n === name).map(([, v]) => v);

test('forward-auth returns a verifiable X-Portcullis-Assertion: signature, iss, aud, exp/ttl, sub — never the client\'s', { timeout: 60_000 }, async (t) => {
  const st = await startDoorwayStacks(t, { routes: ROUTES, user: ALICE, edit: trustLoopback });
  const A = st.A;
  const port = Number(new URL(A.url).port);
  const jwks = createRemoteJWKSet(new URL(`${A.url}/oauth2/jwks.json`));
  const published = (await (await request(`${A.url}/oauth2/jwks.json`)).body.json()) as { keys: Array<{ kid: string }> };
  const session: Array<[string, string]> = [['Cookie', `portcullis=${st.cookie('a')}`]];
  const ask = (path: string, credential: Array<[string, string]>, extra: Array<[string, string]> = []) => exchange(port, doorwayHead('f', port, path, credential, extra), undefined, false);

  const verify = async (reply: RawReply, audience: string, ttlSec: number, sub: string): Promise<JWTPayload> => {
    assert.equal(reply.status, 202, reply.body);
    const values = all(reply, 'x-portcullis-assertion');
    assert.equal(values.length, 1, 'one assertion');
    const jwt = values[0]!;
    assert.notEqual(jwt, FORGED);
    const { payload } = await jwtVerify(jwt, jwks, { issuer: A.url, audience, algorithms: ['ES256'] });
    const kid = decodeProtectedHeader(jwt).kid;
    assert.ok(published.keys.some((k) => k.kid === kid), 'signed by a key published at /oauth2/jwks.json');
    assert.equal(payload.sub, sub);
    assert.equal(payload.exp! - payload.iat!, ttlSec, 'exp = iat + the route\'s ttl');
    assert.ok(Math.abs(payload.iat! - Date.now() / 1000) < 30, 'issued now');
    await assert.rejects(jwtVerify(jwt, jwks, { issuer: A.url, audience, currentDate: new Date((payload.exp! + 1) * 1000) }), /exp/, 'not valid after exp');
    await assert.rejects(jwtVerify(jwt, jwks, { issuer: A.url, audience: 'urn:another-service' }), /aud/, 'only for its audience');
    await assert.rejects(jwtVerify(`${jwt.slice(0, -6)}AAAAAA`, jwks, { issuer: A.url, audience }), 'a tampered signature fails');
    return payload;
  };

  const upstreamOrigin = new URL(A.upstream.url).origin;
  // A session, the default audience (the upstream's origin) and ttl (2 min); the client's own assertion replaced.
  const viaSession = await verify(await ask('/svc/data', session, [['X-Portcullis-Assertion', FORGED]]), upstreamOrigin, 120, 'alice');
  assert.equal(viaSession.email, 'alice@example.com');
  assert.deepEqual(viaSession.groups, ['admin', 'dev']);
  assert.ok(viaSession.sid, 'a session\'s assertion names its session');
  // The route's own audience and ttl.
  await verify(await ask('/short/x', session, [['x_portcullis_assertion', FORGED]]), 'urn:short', 30, 'alice');
  // A bearer token: its subject, no session id.
  const token = await st.token({ sub: 'svc-robot', groups: ['robots'] });
  const viaBearer = await verify(await ask('/svc/data', [['Authorization', `Bearer ${token}`]], [['X-PORTCULLIS-ASSERTION', FORGED]]), upstreamOrigin, 120, 'svc-robot');
  assert.equal(viaBearer.sid, undefined);

  // The same assertion claims forward-auth gives are what a proxied request's upstream gets.
  const before = A.upstream.requests.length;
  const plain = await exchange(port, doorwayHead('a', port, '/svc/data', session), undefined, false);
  assert.equal(plain.status, 200);
  const proxied = String(A.upstream.requests.slice(before)[0]!.headers['x-portcullis-assertion']);
  const { payload: p2 } = await jwtVerify(proxied, jwks, { issuer: A.url, audience: upstreamOrigin });
  assert.deepEqual({ sub: p2.sub, aud: p2.aud, email: p2.email, groups: p2.groups, sid: p2.sid }, { sub: viaSession.sub, aud: viaSession.aud, email: viaSession.email, groups: viaSession.groups, sid: viaSession.sid });

  // No assertion where the route has none, nor on a refusal — and never the client's.
  const none = await ask('/other', session, [['X-Portcullis-Assertion', FORGED]]);
  assert.equal(none.status, 202);
  assert.deepEqual(all(none, 'x-portcullis-assertion'), []);
  const refused = await ask('/admin/x', session, [['X-Portcullis-Assertion', FORGED]]);
  assert.equal(refused.status, 403);
  assert.deepEqual(all(refused, 'x-portcullis-assertion'), []);
  const anonymous = await ask('/svc/x', [], [['X-Portcullis-Assertion', FORGED]]);
  assert.equal(anonymous.status, 401);
  assert.deepEqual(all(anonymous, 'x-portcullis-assertion'), []);
  const badToken = await ask('/svc/x', [['Authorization', 'Bearer not-a-token']], [['X-Portcullis-Assertion', FORGED]]);
  assert.equal(badToken.status, 401);
  assert.deepEqual(all(badToken, 'x-portcullis-assertion'), []);
});

test('a client\'s X-Portcullis-Assertion never passes, on any doorway, from any peer', { timeout: 60_000 }, async (t) => {
  const st = await startDoorwayStacks(t, { routes: ROUTES, user: ALICE, edit: trustLoopback });
  const token = await st.token({ sub: 'alice', email: 'alice@example.com', preferred_username: 'alice', groups: ['admin', 'dev'] });
  // Each stack generated its own signing key (no keysFile): an assertion verifies with its stack's keys.
  const jwksOf = (url: string) => createRemoteJWKSet(new URL(`${url}/oauth2/jwks.json`));
  const spellings: Array<[string, string]> = [['X-Portcullis-Assertion', FORGED], ['x_portcullis_assertion', FORGED], ['X-PORTCULLIS-ASSERTION', `${FORGED}2`]];
  for (const [door, name] of DOORWAYS) {
    for (const from of ['127.0.0.1', '127.0.0.2']) {
      if (door === 'f' && from !== '127.0.0.1') continue; // forward-auth answers trusted peers only (a 400, tested elsewhere)
      for (const path of ['/svc/x', '/other']) {
        await t.test(`${name}, ${path}, from ${from}`, async () => {
          const s = st.stackOf(door);
          const port = Number(new URL(s.url).port);
          const credential: Array<[string, string]> = door === 'd' ? [['Authorization', `Bearer ${token}`]] : [['Cookie', `portcullis=${st.cookie(door)}`]];
          if (door === 'c') st.beforeC();
          const before = s.upstream.requests.length;
          const reply = await exchange(port, doorwayHead(door, port, path, credential, spellings), undefined, false, 5000, from);
          if (door === 'c') assert.ok(st.tookC(reply.headers), 'precondition: refreshed');
          assert.equal(reply.status, door === 'e' ? 101 : door === 'f' ? 202 : 200, reply.body);
          let values: string[];
          if (door === 'f') values = all(reply, 'x-portcullis-assertion');
          else {
            const up = s.upstream.requests.slice(before)[0]!;
            values = [];
            for (let i = 0; i < up.rawHeaders.length; i += 2) {
              if (up.rawHeaders[i]!.toLowerCase().replace(/_/g, '-') === 'x-portcullis-assertion') values.push(up.rawHeaders[i + 1]!);
            }
          }
          if (path === '/other') assert.deepEqual(values, [], 'no assertion on a route without one');
          else {
            assert.equal(values.length, 1, `one assertion: ${values.join(' | ')}`);
            const { payload } = await jwtVerify(values[0]!, jwksOf(s.url), { issuer: s.url });
            assert.equal(payload.sub, 'alice', 'ours, for the user');
          }
        });
      }
    }
  }
});
