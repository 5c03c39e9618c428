// Interop: Glewlwyd's token-endpoint refusals are not RFC 6749 §5.2's, and Portcullis names their
// cause anyway. Verified against Glewlwyd 2.7.5's answers (no browser needed: the requests carry a
// code or refresh token Glewlwyd does not know, which it refuses exactly as a used, expired or
// revoked one — same branch in its source):
//   - authorization code unknown/used/expired: 403 {"error":"invalid_code"}      → the sign-in code was refused
//   - client secret wrong, redirect URI not registered, grant type not enabled:
//                                              403 {"error":"unauthorized_client"} → the client registration, with a hint
//   - refresh token unknown/revoked/expired:   400 with no body at all            → the session ends (not "IdP down")
// Run alone: `npm run test:interop`. Skips locally without Glewlwyd; fails with CI=true.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IdentityProvider, randomSignInChecks } from '../../src/signin/idp.js';
import { PortcullisError } from '../../src/errors.js';
import { missingGlewlwydReason, startGlewlwyd, type Glewlwyd } from './glewlwyd.js';

const skip = missingGlewlwydReason();
const CLIENT = { clientId: 'tokenerrors', clientSecret: 'TokenErrorsSecret0123', redirectUri: 'http://localhost:9/oauth2/callback' };

describe('Glewlwyd interop: token-endpoint refusals', { skip }, () => {
  let glewlwyd: Glewlwyd;
  before(async () => {
    glewlwyd = await startGlewlwyd();
    await glewlwyd.registerClient({ clientId: CLIENT.clientId, clientSecret: CLIENT.clientSecret, redirectUris: [CLIENT.redirectUri], tokenEndpointAuthMethods: ['client_secret_post'] });
  });
  after(async () => { await glewlwyd?.stop(); });

  /** Portcullis's sign-in stage against Glewlwyd, as `oidc:` in the config would set it up. */
  async function signInStage(t: { after(fn: () => void): void }, over: Partial<{ clientSecret: string; redirectUri: string }> = {}): Promise<IdentityProvider> {
    const idp = new IdentityProvider({
      issuer: glewlwyd.issuer,
      clientId: CLIENT.clientId,
      clientSecret: over.clientSecret ?? CLIENT.clientSecret,
      tokenEndpointAuthMethod: 'client_secret_post',
      scopes: ['openid'],
      clockToleranceSec: 30,
      userinfo: false,
      idTokenSigningAlgs: ['RS256'],
      timeoutMs: 5_000,
      redirectUri: over.redirectUri ?? CLIENT.redirectUri,
    });
    t.after(() => idp.close());
    idp.start().catch(() => {});
    await idp.waitReady(10_000);
    return idp;
  }

  async function codeExchangeError(idp: IdentityProvider): Promise<PortcullisError> {
    const { nonce, verifier } = randomSignInChecks();
    try {
      await idp.completeSignIn('code=not-a-code-glewlwyd-issued&state=s1', { state: 's1', nonce, verifier });
    } catch (err) {
      assert.ok(err instanceof PortcullisError, `a coded error, got ${String(err)}`);
      return err;
    }
    assert.fail('the code exchange succeeded');
  }

  test('an authorization code Glewlwyd refuses (403 invalid_code) is "the sign-in code was refused", not the client registration', async (t) => {
    const err = await codeExchangeError(await signInStage(t));
    assert.equal(err.code, 'ERR_CALLBACK_CODE_REJECTED', `${err.code}: ${(err.cause as Error)?.message}`);
    assert.equal(err.statusCode, 400);
    assert.ok(err.retrySignIn, 'the user is offered to sign in again');
    assert.match((err.cause as Error).message, /HTTP 403 invalid_code/, 'the operator sees Glewlwyd\'s own words');
  });

  for (const [what, over] of [
    ['a wrong client secret', { clientSecret: 'NotTheSecret0123' }],
    ['a redirect URI not registered for the client', { redirectUri: 'http://localhost:9/elsewhere/callback' }],
  ] as const) {
    test(`${what} (403 unauthorized_client) is a refused token request, and the operator's detail names every cause Glewlwyd means by it`, async (t) => {
      const err = await codeExchangeError(await signInStage(t, over));
      assert.equal(err.code, 'ERR_CALLBACK_TOKEN_REQUEST_REFUSED', `${err.code}: ${(err.cause as Error)?.message}`);
      assert.equal(err.statusCode, 502);
      assert.match(err.message, /unauthorized_client/);
      const detail = (err.cause as Error).message;
      assert.match(detail, /HTTP 403 unauthorized_client/);
      for (const cause of [/redirect URI/, /grant type/, /oidc\.clientSecret/, /oidc\.tokenEndpointAuthMethod/]) assert.match(detail, cause, `the hint names ${cause}`);
    });
  }

  test('a refresh token Glewlwyd refuses (a bare 400, no OAuth error body) ends the session, as invalid_grant does — not "the IdP is down"', async (t) => {
    const idp = await signInStage(t);
    const err = await idp.refresh('not-a-refresh-token-glewlwyd-issued', { sub: 'someone' }).then(() => assert.fail('the refresh succeeded'), (e: unknown) => e);
    assert.ok(err instanceof PortcullisError, String(err));
    assert.equal(err.code, 'ERR_REFRESH_INVALID_GRANT', `${err.code}: ${(err.cause as Error)?.message}`);
    assert.match((err.cause as Error).message, /refresh_token grant\) answered HTTP 400 with no OAuth error body/);
  });
});
