// examples/api-tokens/portcullis.yaml, exactly as shipped (only its ${VAR}s filled in), against the
// development IdP, whose access tokens are opaque: what the example's README walks through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startExample } from '../helpers/example.js';
import { freePort, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { loginViaHttp } from '../helpers/browserless-login.js';

const FILE = fileURLToPath(new URL('../../examples/api-tokens/portcullis.yaml', import.meta.url));

test('examples/api-tokens: an opaque token passes the introspected API route, is refused once revoked, and the UI gets an exchanged token', async (t) => {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp(t, { redirectUris: [`${publicUrl}/oauth2/callback`] });
  const api = await startTestUpstream(t);
  const ui = await startTestUpstream(t);
  let offset = 0;
  await startExample(t, FILE, {
    PUBLIC_URL: publicUrl, OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: TEST_CLIENT_ID, OIDC_CLIENT_SECRET: TEST_CLIENT_SECRET,
    SESSION_SECRET: TEST_SESSION_SECRET, ORDERS_API: api.url, ORDERS_UI: ui.url,
  }, port, { now: () => Date.now() + offset });

  // A browser signs in; the UI route passes it a token for orders-api, not the user's own.
  await loginViaHttp(`${publicUrl}/orders/list`, { user: 'alice', password: 'alice-password' });
  const seen = ui.requests.at(-1)!;
  const exchanged = String(seen.headers.authorization).replace(/^Bearer /, '');
  assert.equal((await idp.provider.AccessToken.find(exchanged))?.aud, 'orders-api', 'the UI backend holds a token for the orders API');

  // The user's own opaque token (what an API client of this IdP holds) on the API route.
  const grant = await idp.provider.AccessToken.find(exchanged);
  const own = new idp.provider.AccessToken({ accountId: 'alice', client: await idp.provider.Client.find(TEST_CLIENT_ID), grantId: grant!.grantId, scope: 'openid email' });
  const token = await own.save();
  assert.ok(!token.includes('.'), 'opaque');
  const call = async (tok: string) => {
    const res = await request(`${publicUrl}/api/orders/42`, { headers: { authorization: `Bearer ${tok}`, accept: 'application/json' } });
    return { status: res.statusCode, body: await res.body.text(), www: res.headers['www-authenticate'] };
  };
  const ok = await call(token);
  assert.equal(ok.status, 200, ok.body);
  assert.equal(api.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
  assert.equal((await call(exchanged)).status, 200, 'the exchanged token (aud orders-api) is an accepted audience too');
  const bad = await call('not-a-token');
  assert.equal(bad.status, 401);
  assert.match(String(bad.www), /error="invalid_token"/);

  // The scope rule: a token without `email` is refused by the route's rule (403), not as a bad token.
  const narrow = await new idp.provider.AccessToken({ accountId: 'alice', client: await idp.provider.Client.find(TEST_CLIENT_ID), grantId: grant!.grantId, scope: 'openid' }).save();
  assert.equal((await call(narrow)).status, 403);

  // Revoked at the IdP: refused once the 30 s cache has passed (moved clock: nothing sleeps).
  await (await idp.provider.AccessToken.find(token))!.destroy();
  assert.equal((await call(token)).status, 200, 'within cacheTtl the cached answer stands (the documented lag)');
  offset += 30_001;
  assert.equal((await call(token)).status, 401, 'refused once cacheTtl has passed');
});
