// Interop suite: the one interface every real IdP adapter implements (Glewlwyd, LemonLDAP::NG). The
// suite only talks to an IdP through this. Sign-in, refresh and RP-initiated sign-out every adapter
// offers; the rest an adapter may declare unsupported (an absent method, a false flag), and the
// suites skip what it cannot do.
import type { Page } from 'playwright-core';

export interface InteropUser {
  username: string;
  password: string;
  email: string;
  /** Groups as the IdP should put them in the `groups` claim (empty: no claim or an empty one). */
  groups: string[];
}

export interface ClientSettings {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  /** Where the IdP may send the browser after RP-initiated logout. */
  postLogoutRedirectUris?: string[];
  backchannelLogoutUri?: string;
  tokenEndpointAuthMethods: Array<'client_secret_basic' | 'client_secret_post'>;
}

export interface InteropIdp {
  /** For test names and messages, e.g. "Glewlwyd 2.7.5". */
  readonly name: string;
  /** The issuer Portcullis is configured with (discovery is issuer + /.well-known/openid-configuration). */
  readonly issuer: string;
  /** Origin of the IdP's own pages (its login page is served there). */
  readonly origin: string;
  /** Access token lifetime the IdP was started with, seconds. */
  readonly accessTokenLifetimeSec: number;
  /**
   * The users the suite signs in as (an IdP whose users are fixed names its own): `admin` is in the
   * group `admin` (the default routes' admin rule lets them in), `other` is not.
   */
  readonly users: { admin: InteropUser; other: InteropUser };
  /** Whether ending the IdP session (confirmEndSession) sends a logout token to every client of that session. */
  readonly backchannelLogout: boolean;
  /** Registers (or replaces) a confidential client with code + refresh_token (+ client_credentials, when clientCredentialsToken exists) grants. */
  registerClient(client: ClientSettings): Promise<void>;
  /** Fills the IdP's own login form in this page and submits it (and any consent screen); resolves once the browser has left the IdP. */
  signIn(page: Page, who: InteropUser): Promise<void>;
  /**
   * On the IdP's own end-session page (where RP-initiated logout sends the browser): confirm. Resolves
   * once the IdP has ended its session — the browser has left the IdP or the IdP says it is done.
   * Ending the IdP session is also what triggers its back-channel logout to every client of that session.
   */
  confirmEndSession(page: Page): Promise<void>;
  /** A client-credentials access token for this client (for bearer routes). Absent: unsupported. */
  clientCredentialsToken?(client: Pick<ClientSettings, 'clientId' | 'clientSecret'>, scope: string): Promise<string>;
  /** A new signing key at the IdP, the old one kept for verification; no restart. Absent: unsupported. */
  rotateKeys?(): Promise<{ oldKid: string; newKid: string }>;
  /** The IdP's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/** The two users an adapter creates when its user backend can (Glewlwyd's users: { admin: ALICE, other: BOB }). */
export const ALICE: InteropUser = { username: 'alice', password: 'alice-Passw0rd', email: 'alice@example.com', groups: ['admin', 'dev'] };
export const BOB: InteropUser = { username: 'bob', password: 'bob-Passw0rd', email: 'bob@example.com', groups: [] };
