// Introspected bearer tokens (route `bearer: introspect`, RFC 7662 at the dev IdP) × the doorways
// that can carry one: a plain request, a WebSocket upgrade and forward-auth must reach the same
// decision for the same token — allowed with the same identity, 403 where the route's rule says
// no, 401 invalid_token for a token the IdP does not vouch for (unknown, altered, revoked) — whether
// the IdP is asked (first use of a token) or the answer is cached.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { exchange, type RawReply } from '../helpers/raw-http.js';
import { ALICE } from './support.js';
import { doorwayHead, type Doorway } from './doorway-stacks.js';

const ROUTES = [
  { name: 'introspected', match: { path: '/api' }, upstream: '{upstream}', bearer: 'introspect', websocket: true },
  { name: 'bob-only', match: { path: '/admin-api' }, upstream: '{upstream}', bearer: 'introspect', websocket: true, allow: { claim: 'sub', equals: 'bob' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', passAccessToken: true },
];
const DOORS: Array<[Doorway, string]> = [['a', 'plain request'], ['e', 'WebSocket upgrade'], ['f', 'forward-auth']];
const IDENTITY = ['x-forwarded-user', 'x-forwarded-email', 'x-forwarded-preferred-username', 'x-forwarded-groups'];

/** A fresh opaque access token of alice's (what the dev IdP issues at sign-in), read off a passAccessToken route. */
async function aliceToken(s: Stack): Promise<string> {
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const r = await request(`${s.url}/whoami`, { headers: { accept: 'application/json', cookie: jar.header(s.url) } });
  await r.body.dump();
  const token = String(s.upstream.requests.at(-1)!.headers['x-forwarded-access-token']);
  assert.ok(token && !token.includes('.'), 'an opaque token');
  return token;
}

test('an introspected bearer token gets the same decision and identity on a plain request, an upgrade and forward-auth', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t, {
    routes: ROUTES,
    edit: (raw) => {
      const oidc = raw.oidc as Record<string, unknown>;
      oidc.bearerAudiences = [String(oidc.clientId)];
      oidc.introspection = { cacheTtl: '30s', negativeCacheTtl: '5s' };
      raw.trustProxy = ['127.0.0.1'];
    },
  });
  const port = Number(new URL(s.url).port);
  const shared = await aliceToken(s);
  const revoked = await aliceToken(s);
  const r = await request(`${s.idp.issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${s.idp.clientId}:${s.idp.clientSecret}`).toString('base64')}` },
    body: new URLSearchParams({ token: revoked, token_type_hint: 'access_token' }).toString(),
  });
  await r.body.dump();
  assert.equal(r.statusCode, 200, 'revoked at the IdP');
  // One token per doorway used first there: each doorway asks the IdP itself once.
  const own: Record<string, string> = {};
  for (const [d] of DOORS) own[d] = await aliceToken(s);

  const send = async (d: Doorway, path: string, token: string): Promise<{ reply: RawReply; identity: Record<string, string> | undefined }> => {
    const before = s.upstream.requests.length;
    const reply = await exchange(port, doorwayHead(d, port, path, [['Authorization', `Bearer ${token}`]]), undefined, false);
    const seen = s.upstream.requests.slice(before);
    if (d === 'f') assert.equal(seen.length, 0, 'forward-auth proxies nothing');
    const source = d === 'f' ? (reply.status === 202 ? Object.fromEntries(reply.headers) : undefined) : seen[0]?.headers;
    const identity = source && Object.fromEntries(IDENTITY.map((h) => [h, String(source[h])]));
    return { reply, identity };
  };
  const allowed = { a: 200, e: 101, f: 202 } as Record<Doorway, number>;

  const rows: Array<{ name: string; path: string; token: (d: Doorway) => string; status: 'allow' | 403 | 401 }> = [
    { name: 'first use of a valid token (the IdP is asked)', path: '/api/x', token: (d) => own[d]!, status: 'allow' },
    { name: 'a valid token, answer cached', path: '/api/x', token: () => shared, status: 'allow' },
    { name: 'a valid token where the route\'s rule refuses alice', path: '/admin-api/x', token: () => shared, status: 403 },
    { name: 'an unknown token', path: '/api/x', token: () => 'not-a-token-the-idp-issued', status: 401 },
    { name: 'a valid token with a character added', path: '/api/x', token: () => `${shared}x`, status: 401 },
    { name: 'a token revoked at the IdP', path: '/api/x', token: () => revoked, status: 401 },
  ];
  for (const row of rows) {
    await t.test(row.name, async () => {
      const got: Array<{ d: Doorway; status: number; identity?: Record<string, string> }> = [];
      for (const [d, label] of DOORS) {
        const { reply, identity } = await send(d, row.path, row.token(d));
        const want = row.status === 'allow' ? allowed[d] : row.status;
        assert.equal(reply.status, want, `${label}: ${reply.body}`);
        if (row.status === 401) {
          assert.match(reply.headers.find(([n]) => n === 'www-authenticate')?.[1] ?? '', /error="invalid_token"/, `${label}: an invalid_token challenge`);
        }
        if (row.status === 'allow') {
          assert.equal(identity?.['x-forwarded-user'], 'alice', `${label}: alice's identity`);
        } else {
          assert.equal(identity, undefined, `${label}: nothing proxied, no identity`);
        }
        got.push({ d, status: reply.status, identity });
      }
      const ref = got[0]!;
      for (const g of got.slice(1)) assert.deepEqual(g.identity, ref.identity, `${g.d}: the identity of the plain request`);
    });
  }
});
