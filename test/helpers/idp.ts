// Test helper: the embedded dev OpenID Provider with one confidential client, stopped by the test's own cleanup.
import { createHash, generateKeyPair, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { startDevIdp, type DevClient, type DevIdp, type DevIdpOptions } from '../../dev/devidp/provider.js';

/** Anything with node:test's `after`: a TestContext, or `{ after }` imported from node:test inside describe(). */
export interface CleanupScope {
  after(fn: () => unknown): void;
}

export interface TestIdpOptions extends Partial<DevIdpOptions> {
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  backchannelLogoutUri?: string;
  backchannelLogoutSessionRequired?: boolean;
  tokenEndpointAuthMethod?: DevClient['token_endpoint_auth_method'];
  /** private_key_jwt: the client's jwks_uri (e.g. the proxy's /oauth2/client-jwks.json) or inline public keys. */
  jwksUri?: string;
  jwks?: DevClient['jwks'];
}

export interface TestIdp extends DevIdp {
  clientId: string;
  clientSecret: string;
  /** The client as registered; pass a changed copy to registerClient() to edit it after start. */
  client: DevClient;
}

export const TEST_CLIENT_ID = 'portcullis';
export const TEST_CLIENT_SECRET = 'test-secret';

export async function startTestIdp(t: CleanupScope, opts: TestIdpOptions): Promise<TestIdp> {
  const { redirectUris, postLogoutRedirectUris, backchannelLogoutUri, backchannelLogoutSessionRequired, tokenEndpointAuthMethod, jwksUri, jwks, clients, ...rest } = opts;
  const client: DevClient = {
    client_id: TEST_CLIENT_ID,
    client_secret: TEST_CLIENT_SECRET,
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
    backchannel_logout_uri: backchannelLogoutUri,
    backchannel_logout_session_required: backchannelLogoutSessionRequired,
    token_endpoint_auth_method: tokenEndpointAuthMethod,
    jwks_uri: jwksUri,
    jwks,
  };
  const keys = rest.keys ?? await pooledSigningKeys();
  const idp = await startDevIdp({ ...rest, ...(keys ? { keys } : {}), clients: [client, ...(clients ?? [])] });
  t.after(() => idp.close());
  return { ...idp, clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, client };
}

/**
 * A 2048-bit RSA key costs 0.2–0.3 s of CPU to generate and the suite starts hundreds of IdPs, so
 * scripts/test.mjs generates a pool of them once (PORTCULLIS_TEST_RSA_KEYS, a JSON array of private
 * JWKs) while it typechecks. Each IdP of a test process takes the next one, with a fresh ES256 key, as
 * the dev IdP's own default (kid = RFC 7638 thumbprint). The pool is taken round: a batch process
 * (scripts/test.mjs) runs several files, which between them may start more IdPs than the pool holds;
 * two IdPs share an RSA key only when 64 others were started between them, which no single test does.
 * Without the pool: undefined, and the dev IdP generates its own.
 */
let rsaPool: JsonWebKey[] | undefined;
let nextRsa = 0;

async function pooledSigningKeys(): Promise<{ keys: object[] } | undefined> {
  const file = process.env.PORTCULLIS_TEST_RSA_KEYS;
  if (!file) return undefined;
  try {
    rsaPool ??= JSON.parse(readFileSync(file, 'utf8')) as JsonWebKey[];
  } catch {
    rsaPool = [];
  }
  if (rsaPool.length === 0) return undefined;
  const rsaJwk = rsaPool[nextRsa++ % rsaPool.length];
  const generate = promisify(generateKeyPair) as (type: string, options: object) => Promise<{ privateKey: KeyObject }>;
  const ecJwk = (await generate('ec', { namedCurve: 'P-256' })).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsaJwk, kid: thumbprint({ e: rsaJwk.e, kty: 'RSA', n: rsaJwk.n }), use: 'sig', alg: 'RS256' },
      { ...ecJwk, kid: thumbprint({ crv: ecJwk.crv, kty: ecJwk.kty, x: ecJwk.x, y: ecJwk.y }), use: 'sig', alg: 'ES256' },
    ],
  };
}

/** RFC 7638: SHA-256 over the required members, in lexicographic order. */
function thumbprint(required: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(required)).digest('base64url');
}
