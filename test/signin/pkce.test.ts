// PKCE and the sign-in's random values are made with node:crypto (src/signin/idp.ts), not
// openid-client's WebCrypto helpers: they must be exactly what RFC 7636 and openid-client make.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as client from 'openid-client';
import { pkceChallenge, randomSignInChecks } from '../../src/signin/idp.js';

test('S256 challenge: RFC 7636 Appendix B, and openid-client\'s value for any verifier', async () => {
  assert.equal(pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
  // RFC 7636 §4.1: 43–128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
  const verifier = fc.stringMatching(/^[A-Za-z0-9\-._~]{43,128}$/);
  await fc.assert(fc.asyncProperty(verifier, async (v) => {
    assert.equal(pkceChallenge(v), await client.calculatePKCECodeChallenge(v));
  }), { numRuns: 200 });
  for (let i = 0; i < 20; i++) {
    const v = client.randomPKCECodeVerifier();
    assert.equal(pkceChallenge(v), await client.calculatePKCECodeChallenge(v));
  }
});

test('nonce and verifier: 32 random bytes each, base64url (43 characters), as openid-client makes them; never repeated', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const { nonce, verifier } = randomSignInChecks();
    for (const v of [nonce, verifier]) {
      assert.match(v, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(v, 'base64url').length, 32);
      assert.ok(!seen.has(v), 'fresh');
      seen.add(v);
    }
  }
  assert.equal(client.randomNonce().length, 43, 'the same length as openid-client\'s');
  assert.equal(client.randomPKCECodeVerifier().length, 43);
});
