// Test helper: the embedded dev OpenID Provider with one confidential client, stopped by the test's own cleanup.
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
  const idp = await startDevIdp({ ...rest, clients: [client, ...(clients ?? [])] });
  t.after(() => idp.close());
  return { ...idp, clientId: TEST_CLIENT_ID, clientSecret: TEST_CLIENT_SECRET, client };
}
