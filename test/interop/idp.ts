// Interop suite: the one interface every real IdP adapter implements (Glewlwyd today; a second IdP
// such as LemonLDAP::NG goes next to it). The suite only talks to an IdP through this.
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
  /** Registers (or replaces) a confidential client with code + refresh_token + client_credentials grants. */
  registerClient(client: ClientSettings): Promise<void>;
  /** Fills the IdP's own login form in this page and submits it (and any consent screen); resolves once the browser has left the IdP. */
  signIn(page: Page, who: InteropUser): Promise<void>;
  /**
   * On the IdP's own end-session page (where RP-initiated logout sends the browser): confirm. Resolves
   * once the IdP has ended its session — the browser has left the IdP or the IdP says it is done.
   * Ending the IdP session is also what triggers its back-channel logout to every client of that session.
   */
  confirmEndSession(page: Page): Promise<void>;
  /** A client-credentials access token for this client (for bearer routes). */
  clientCredentialsToken(client: Pick<ClientSettings, 'clientId' | 'clientSecret'>, scope: string): Promise<string>;
  /** A new signing key at the IdP, the old one kept for verification; no restart. */
  rotateKeys(): Promise<{ oldKid: string; newKid: string }>;
  /** The IdP's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/** The two users every adapter creates. */
export const ALICE: InteropUser = { username: 'alice', password: 'alice-Passw0rd', email: 'alice@example.com', groups: ['admin', 'dev'] };
export const BOB: InteropUser = { username: 'bob', password: 'bob-Passw0rd', email: 'bob@example.com', groups: [] };
