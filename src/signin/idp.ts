// Sign-in stage: the only module that talks to the OpenID Provider (through openid-client 6).
// Discovery with retry/backoff, the authorization URL, the code exchange with every ID-token
// check, userinfo, refresh, revocation and the end-session URL. Foreign errors are wrapped here,
// once, into coded PortcullisErrors.
import * as client from 'openid-client';
import { AsyncLocalStorage } from 'node:async_hooks';
import { hash, randomBytes } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, customFetch as joseFetch, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { coded, errors, PortcullisError } from '../errors.js';
import { withSpan } from '../tracing.js';
import { GroupOverage, type GroupOverageSettings, type GroupsUnavailable } from './group-overage.js';
import { loadClientKeys, type ClientKey } from './client-keys.js';
import { plainDuration, stepUpRequirement, stepUpShortfall } from '../policy/step-up.js';

/** Text an IdP chose, for a message: printable ASCII only, and short. */
const idpText = (s: string, max: number) => s.replace(/[^\x20-\x7e]/g, '').slice(0, max);

export interface IdpSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** private_key_jwt: the keys of oidc.clientKeysFile (the first signs); src/signin/client-keys.ts. */
  clientKeys?: readonly ClientKey[];
  /** private_key_jwt: the assertion's `aud` — the issuer (default) or the token endpoint URL. */
  clientAssertionAudience?: 'issuer' | 'token_endpoint';
  scopes: readonly string[];
  clockToleranceSec: number;
  userinfo: boolean;
  idTokenSigningAlgs: readonly string[];
  timeoutMs: number;
  /** publicUrl + /oauth2/callback — never derived from a request's Host header. */
  redirectUri: string;
  /** `at+jwt`: bearer JWTs must be typed at+jwt (config oidc.bearerTokenType); default `any`. */
  bearerTokenType?: 'any' | 'at+jwt';
  /** Entra ID group overage (oidc.groupOverage): groups fetched from Graph; undefined = off. */
  groupOverage?: Omit<GroupOverageSettings, 'timeoutMs'> | undefined;
  /** Sent as `domain_hint` on the authorization request (config oidc.domainHint). */
  domainHint?: string | undefined;
}

export interface IdpHooks {
  /** Called with each IdP request's duration and a bounded endpoint label. */
  observe?: (endpoint: string, seconds: number, ok: boolean) => void;
  log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  now?: () => number;
  /** How long the signing keys for bearer and logout tokens are cached (default KEY_CACHE_MAX_AGE_MS); tests shorten it. */
  keyCacheMaxAgeMs?: number;
  /** Each group-overage fetch from Microsoft Graph: `ok` or why not (signin/group-overage.ts). */
  countGroupOverage?: (result: 'ok' | GroupsUnavailable) => void;
}

export interface SignInResult {
  claims: Record<string, unknown>;
  idToken: string;
  accessToken: string | undefined;
  refreshToken: string | undefined;
  /** ms since epoch */
  tokenExpiresAt: number | undefined;
  /** The ID token announced group overage and the groups could not be fetched: the claims have no `groups`, and this says why. */
  groupsUnavailable?: GroupsUnavailable | undefined;
}

/**
 * Fresh nonce and PKCE verifier for one sign-in (the state comes from the transaction): 32 random
 * bytes each, base64url — what openid-client's randomNonce and randomPKCECodeVerifier make — from
 * one node:crypto randomBytes call instead of a WebCrypto getRandomValues each (the two were ~7 % of
 * a no-session 302's CPU).
 */
export function randomSignInChecks(): { nonce: string; verifier: string } {
  const b = randomBytes(64);
  return { nonce: b.subarray(0, 32).toString('base64url'), verifier: b.subarray(32).toString('base64url') };
}

/**
 * RFC 7636 §4.2, S256: BASE64URL(SHA-256(ASCII(code_verifier))). node:crypto's SHA-256,
 * synchronous; openid-client's calculatePKCECodeChallenge goes through WebCrypto's promise-based
 * digest, which was ~11 % of a no-session 302's CPU. The same value (test/signin/pkce.test.ts).
 */
export function pkceChallenge(verifier: string): string {
  return hash('sha256', verifier, 'base64url');
}

/** The sign-in's own facts, kept across refreshes when a refreshed ID token omits them. */
const STEP_UP_CLAIMS = ['acr', 'amr', 'auth_time'] as const;

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** The token endpoint's answer within one grant, kept so its ID token can be verified again after a key refresh. */
interface TokenCapture { response?: { status: number; headers: Array<[string, string]>; body: ArrayBuffer } }
const tokenCaptures = new AsyncLocalStorage<TokenCapture>();
/**
 * At most one signing-key refetch for an unknown `kid` in this long — for bearer JWTs and logout
 * tokens (keySet) and for ID tokens (grant). The balance: OIDC Core §10.1 has relying parties
 * refetch the JWKS when a token names a key they lack, so right after the IdP rotates (most sign
 * with the new key at once: Glewlwyd, oidc-provider) a token with the new key is refused until that
 * refetch is allowed. go-oidc (oauth2-proxy's verifier) refetches on every unknown kid, only merging
 * concurrent fetches, so a flood of random kids is a flood of JWKS requests; jose's default, 30 s,
 * refused new-key tokens for up to 30 s (measured against Glewlwyd). 5 s bounds both: a new key is
 * trusted within 5 s of the last fetch, and forged kids cost the IdP at most one JWKS request per
 * 5 s per process (12 a minute). Proven against the dev IdP in
 * test/identity/bearer-key-rotation.test.ts.
 */
export const KEY_REFRESH_COOLDOWN_MS = 5_000;
/** The IdP's signing keys (for bearer and logout tokens) are fetched again once they are this old. */
const KEY_CACHE_MAX_AGE_MS = 10 * 60_000;

export class IdentityProvider {
  private config: client.Configuration | undefined;
  private keys: JWTVerifyGetKey | undefined;
  private discovering: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  /** Ends the current backoff wait early (set while discovery waits to retry). */
  private wake: (() => void) | undefined;
  private lastAttemptAt = 0;
  private keysRefreshedAt = 0;
  /** private_key_jwt: the signing key, imported before the first discovery (clientSetup needs it). */
  private clientKey: { key: CryptoKey; kid: string; cert?: { x5t: string; x5tS256: string } | undefined } | undefined;
  lastError: string | undefined;

  /** Entra ID group overage: groups from Microsoft Graph when an ID token only points at them. */
  private readonly groupOverage: GroupOverage;

  constructor(readonly settings: IdpSettings, private readonly hooks: IdpHooks = {}) {
    const g = settings.groupOverage;
    this.groupOverage = new GroupOverage(g && { ...g, timeoutMs: settings.timeoutMs }, { count: hooks.countGroupOverage, log: hooks.log });
  }

  /**
   * The discovered metadata, read once per discovery: openid-client's serverMetadata() returns a
   * structuredClone on every call, which showed as 5 % of a bearer-token request's CPU (verifyBearer
   * reads the issuer per token).
   */
  private meta: Readonly<client.ServerMetadata> | undefined;

  private setConfig(config: client.Configuration): void {
    this.config = config;
    this.meta = Object.freeze(config.serverMetadata());
  }

  /** True once discovery succeeded and the signing keys could be fetched. */
  get ready(): boolean { return this.config !== undefined; }

  get metadata(): client.ServerMetadata | undefined { return this.meta; }

  /**
   * Starts discovery in the background; retries with capped exponential backoff and jitter. Called
   * again while a retry is pending (a sign-in, a readiness probe), it retries at once — at most
   * once a second — so a recovered IdP is noticed without waiting out a minute of backoff.
   */
  start(): Promise<void> {
    if (!this.discovering) this.discovering = this.discoverLoop();
    else if (this.wake && Date.now() - this.lastAttemptAt >= 1000) this.wake();
    return this.discovering;
  }

  /** Resolves when ready, or rejects after `ms`. */
  async waitReady(ms: number): Promise<void> {
    const t0 = Date.now();
    while (!this.ready) {
      if (Date.now() - t0 > ms) throw new Error(`IdP not ready after ${ms} ms: ${this.lastError ?? 'unknown'}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private async discoverLoop(): Promise<void> {
    while (!this.closed && !this.config) {
      try {
        this.setConfig(await this.discover());
        this.attempt = 0;
        this.lastError = undefined;
        this.hooks.log?.info({ issuer: this.settings.issuer }, 'identity provider discovered');
        return;
      } catch (err) {
        this.attempt++;
        this.lastError = describeError(err);
        const base = Math.min(60_000, 500 * 2 ** Math.min(this.attempt, 7));
        const delay = Math.round(base / 2 + Math.random() * (base / 2));
        this.hooks.log?.warn({ issuer: this.settings.issuer, attempt: this.attempt, retryInMs: delay, err: this.lastError }, 'identity provider discovery failed; retrying');
        this.lastAttemptAt = Date.now();
        await new Promise<void>((r) => {
          this.wake = () => { clearTimeout(this.retryTimer); this.wake = undefined; r(); };
          this.retryTimer = setTimeout(this.wake, delay);
          this.retryTimer.unref?.();
        });
      }
    }
  }

  private endpointLabel(url: string): string {
    const m = this.meta;
    // Before discovery completes only two requests are made: the document, then the JWKS priming.
    if (!m) return url.includes('/.well-known/') ? 'discovery' : 'jwks';
    if (url.startsWith(m.token_endpoint ?? '\0')) return 'token';
    if (url.startsWith(m.userinfo_endpoint ?? '\0')) return 'userinfo';
    if (url.startsWith(m.jwks_uri ?? '\0')) return 'jwks';
    if (url.startsWith(m.revocation_endpoint ?? '\0')) return 'revocation';
    if (url.startsWith(m.introspection_endpoint ?? '\0')) return 'introspection';
    if (url.includes('/.well-known/')) return 'discovery';
    return 'other';
  }

  private clientSetup() {
    const s = this.settings;
    const metadata: Partial<client.ClientMetadata> = {
      ...(s.tokenEndpointAuthMethod === 'private_key_jwt' ? {} : { client_secret: s.clientSecret }),
      // Pin the accepted ID token algorithms (oauth4webapi accepts a list here): "none" and HMAC
      // are refused whatever the IdP advertises.
      id_token_signed_response_alg: [...s.idTokenSigningAlgs] as unknown as string,
      [client.clockTolerance]: s.clockToleranceSec,
    };
    const execute: Array<(c: client.Configuration) => void> = [
      // openid-client does not verify the signature of an ID token received from the token endpoint
      // over TLS unless asked; we always ask.
      client.enableNonRepudiationChecks,
    ];
    // Plain-http issuers are for loopback development (the demo) or in-cluster IdPs; a startup
    // warning says so.
    if (s.issuer.startsWith('http:')) execute.push(client.allowInsecureRequests);
    return { auth: this.clientAuth(), metadata, execute };
  }

  /**
   * The client authentication of every token, refresh, revocation, introspection and exchange
   * request. private_key_jwt: openid-client signs a fresh assertion per request (jti, iat, exp in
   * 60 s, iss = sub = client id) with the first key of oidc.clientKeysFile; `aud` is the issuer
   * (RFC 7523bis: an assertion good only at this IdP) unless oidc.clientAssertionAudience asks for
   * the token endpoint, which some IdPs require.
   */
  private clientAuth(): client.ClientAuth {
    const s = this.settings;
    if (s.tokenEndpointAuthMethod === 'client_secret_post') return client.ClientSecretPost(s.clientSecret);
    if (s.tokenEndpointAuthMethod !== 'private_key_jwt') return client.ClientSecretBasic(s.clientSecret);
    if (!this.clientKey) throw new Error('private_key_jwt: the client key is not loaded yet');
    const toTokenEndpoint = s.clientAssertionAudience === 'token_endpoint';
    const { key, kid, cert } = this.clientKey;
    return client.PrivateKeyJwt({ key, kid }, {
      [client.modifyAssertion]: (header, payload) => {
        if (toTokenEndpoint && this.meta?.token_endpoint) payload.aud = this.meta.token_endpoint;
        // A key with a certificate names it (RFC 7515 §4.1.7–8): Entra ID finds certificate credentials by these.
        if (cert) {
          header.x5t = cert.x5t;
          header['x5t#S256'] = cert.x5tS256;
        }
      },
    });
  }

  /** A client configuration for already discovered metadata (it starts with an empty JWKS cache). */
  private configuration(server: client.ServerMetadata, fetchImpl: (url: string, init?: RequestInit) => Promise<Response>): client.Configuration {
    const { auth, metadata, execute } = this.clientSetup();
    const config = new client.Configuration(server, this.settings.clientId, metadata, auth);
    for (const fn of execute) fn(config);
    config[client.customFetch] = fetchImpl as unknown as client.CustomFetch;
    config.timeout = Math.ceil(this.settings.timeoutMs / 1000);
    return config;
  }

  private async discover(): Promise<client.Configuration> {
    const s = this.settings;
    if (s.tokenEndpointAuthMethod === 'private_key_jwt' && !this.clientKey) this.clientKey = (await loadClientKeys(s.clientKeys ?? [])).signing;
    const { auth, metadata, execute } = this.clientSetup();
    const fetchImpl = this.instrumentedFetch();
    const config = await client.discovery(new URL(s.issuer), s.clientId, metadata, auth, {
      execute,
      timeout: Math.ceil(s.timeoutMs / 1000),
      [client.customFetch]: fetchImpl as unknown as client.CustomFetch,
    });
    config[client.customFetch] = fetchImpl as unknown as client.CustomFetch;
    config.timeout = Math.ceil(s.timeoutMs / 1000);
    // Prime the key set now so readiness means "can verify ID tokens" — and fail discovery if the
    // jwks_uri is unreachable.
    const jwksUri = config.serverMetadata().jwks_uri;
    if (!jwksUri) throw new Error('the IdP advertises no jwks_uri; ID token signatures could not be verified');
    const r = await fetchImpl(jwksUri, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(s.timeoutMs) });
    if (!r.ok) throw new Error(`JWKS fetch failed: HTTP ${r.status}`);
    await r.arrayBuffer();
    return config;
  }

  private instrumentedFetch(): (url: string, init?: RequestInit) => Promise<Response> {
    return async (input: string, init?: RequestInit) => {
      const label = this.endpointLabel(input);
      // A span per IdP call when tracing is on (src/tracing.ts): the endpoint, method and status —
      // never the URL's query or a body.
      return withSpan(`idp ${label}`, { 'portcullis.idp.endpoint': label, 'http.request.method': init?.method ?? 'GET', 'server.address': hostOf(input) }, async (span) => {
        const t0 = performance.now();
        let ok = false;
        try {
          const signal = init?.signal ?? AbortSignal.timeout(this.settings.timeoutMs);
          const res = await fetch(input, { ...init, signal });
          ok = res.status < 500;
          span?.setAttribute('http.response.status_code', res.status);
          const capture = label === 'token' ? tokenCaptures.getStore() : undefined;
          if (capture) capture.response = { status: res.status, headers: [...res.headers], body: await res.clone().arrayBuffer() };
          return res;
        } finally {
          this.hooks.observe?.(label, (performance.now() - t0) / 1000, ok);
        }
      });
    };
  }

  private requireConfig(): client.Configuration {
    if (!this.config) {
      this.start();
      throw errors.idpUnavailable(new Error(this.lastError ?? 'discovery pending'));
    }
    return this.config;
  }

  /**
   * Runs a token grant. When its ID token is signed by a key the cached JWKS lacks (the IdP rotated
   * keys; openid-client refetches its copy only once it is a minute old), the keys are fetched again
   * — at most once per KEY_REFRESH_COOLDOWN_MS — and the same token response is verified once
   * more, in full, against them: the code or refresh token is never sent twice. Later grants then
   * use the new keys.
   */
  private async grant<T>(run: (config: client.Configuration) => Promise<T>): Promise<T> {
    const config = this.requireConfig();
    const capture: TokenCapture = {};
    try {
      return await tokenCaptures.run(capture, () => run(config));
    } catch (err) {
      const saved = capture.response;
      if ((err as { code?: string }).code !== 'OAUTH_KEY_SELECTION_FAILED' || !saved || Date.now() - this.keysRefreshedAt < KEY_REFRESH_COOLDOWN_MS) throw err;
      this.keysRefreshedAt = Date.now();
      const live = this.instrumentedFetch();
      const replay = this.configuration(config.serverMetadata(), async (url, init) =>
        (this.endpointLabel(url) === 'token' ? new Response(saved.body, { status: saved.status, headers: saved.headers }) : live(url, init)));
      const result = await run(replay);
      const next = this.configuration(config.serverMetadata(), live);
      const jwks = client.getJwksCache(replay);
      if (jwks) client.setJwksCache(next, jwks);
      this.setConfig(next);
      this.hooks.log?.info({ issuer: this.settings.issuer }, 'ID token signed by a key not in the cached set: signing keys fetched again');
      return result;
    }
  }

  /**
   * Builds the authorization request: code flow, PKCE S256, state and nonce, `openid` scope. A
   * step-up adds `acr_values` (space-separated, in the route's order) and `max_age` (seconds); when
   * the IdP supports the `claims` parameter, the acr is also requested as an essential claim
   * (OIDC Core §5.5.1.1) — `acr_values` alone is a voluntary request an IdP may satisfy from an
   * earlier, weaker sign-in (oidc-provider and others do), which the callback would then refuse.
   */
  async authorizationUrl(p: { state: string; nonce: string; verifier: string; prompt?: string | undefined; acrValues?: readonly string[] | undefined; maxAge?: number | undefined }): Promise<string> {
    const config = this.requireConfig();
    const params: Record<string, string> = {
      redirect_uri: this.settings.redirectUri,
      scope: this.settings.scopes.join(' '),
      state: p.state,
      nonce: p.nonce,
      code_challenge: pkceChallenge(p.verifier),
      code_challenge_method: 'S256',
    };
    if (p.prompt) params.prompt = p.prompt;
    if (p.acrValues?.length) {
      params.acr_values = p.acrValues.join(' ');
      if (this.meta?.claims_parameter_supported === true) params.claims = JSON.stringify({ id_token: { acr: { essential: true, values: p.acrValues } } });
    }
    if (p.maxAge !== undefined) params.max_age = String(p.maxAge);
    if (this.settings.domainHint) params.domain_hint = this.settings.domainHint;
    return client.buildAuthorizationUrl(config, params).href;
  }

  /**
   * Checks the authorization response and redeems the code. Throws coded errors. A step-up sign-in
   * (`acr`, `maxAge` from its transaction) is held to what was asked: openid-client checks `auth_time`
   * is present and within `max_age` (+ clock tolerance) of its clock, nothing about `acr`; the rest
   * is checkStepUp's, on this runtime's clock.
   */
  async completeSignIn(query: string, checks: { state: string; nonce: string; verifier: string; acr?: readonly string[] | undefined; maxAge?: number | undefined }): Promise<SignInResult> {
    const currentUrl = new URL(this.settings.redirectUri);
    currentUrl.search = query;
    let tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
    try {
      tokens = await this.grant((config) => client.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: checks.verifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
        ...(checks.maxAge === undefined ? {} : { maxAge: checks.maxAge }),
      }));
    } catch (err) {
      // openid-client's auth_time checks (missing, too old) get the step-up's own code and page.
      // (openid-client wraps oauth4webapi's error, which names the claim, as "invalid response encountered".)
      const said = err instanceof Error ? `${err.message} ${err.cause instanceof Error ? err.cause.message : ''}` : '';
      if (checks.maxAge !== undefined && /"auth_time"|last End-User authentication/.test(said)) {
        throw coded('ERR_CALLBACK_AUTH_TIME_INVALID', { detail: /missing/.test(said) ? 'it did not say when you signed in' : `you signed in more than ${plainDuration(checks.maxAge)} ago`, cause: err });
      }
      throw wrapIdpError(err, 'code');
    }
    const config = this.requireConfig();
    const claims = tokens.claims() as Record<string, unknown> | undefined;
    if (!claims || !tokens.id_token) throw errors.idTokenInvalid(new Error('no ID token in the token response'));
    this.checkIssuedAt(claims);
    if (checks.acr !== undefined || checks.maxAge !== undefined) this.checkStepUp(claims, checks.acr, checks.maxAge);
    let merged: Record<string, unknown> = { ...claims };
    if (this.settings.userinfo && tokens.access_token) {
      try {
        const info = await client.fetchUserInfo(config, tokens.access_token, String(claims.sub));
        // ID token claims win: they are signed; userinfo only fills in what is missing.
        merged = { ...info, ...claims };
      } catch (err) {
        if (err instanceof client.ClientError && err.code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') throw errors.userinfoMismatch(err);
        throw wrapIdpError(err, 'userinfo');
      }
    }
    const groups = await this.groupOverage.resolve(merged, tokens.access_token);
    return {
      claims: groups.claims,
      groupsUnavailable: groups.groupsUnavailable,
      idToken: tokens.id_token,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      tokenExpiresAt: this.expiry(tokens, claims),
    };
  }

  /**
   * Refresh grant. The new ID token (when one is returned) must name the same issuer, subject and
   * audience, with no new authorized party — openid-client does not compare them with the first.
   *
   * The session's claims are then replaced by what the IdP says now — never merged over the old
   * ones, so a claim the IdP no longer sends (an emptied `groups` many IdPs omit) is gone: the new
   * ID token's claims (or, when none is returned, those of the session's current ID token), plus
   * userinfo when `oidc.userinfo` is on (ID token claims win, as at sign-in). The IdP session id
   * (`sid`) is kept when a refreshed ID token omits it: back-channel logout still finds the session;
   * so are `acr`, `amr` and `auth_time` (step-up routes).
   * Should userinfo fail after the grant (the new tokens are already issued), the previous claims
   * fill in what the ID token lacks until the next refresh, and a warning is logged.
   */
  async refresh(refreshToken: string, original: Record<string, unknown>, currentIdToken?: string): Promise<SignInResult & { idTokenReturned: boolean }> {
    let tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
    try {
      tokens = await this.grant((config) => client.refreshTokenGrant(config, refreshToken));
    } catch (err) {
      throw wrapIdpError(err, 'refresh');
    }
    const mismatch = (why: string, cause?: unknown) => coded('ERR_REFRESH_CLAIMS_MISMATCH', { cause: cause ?? new Error(why) });
    const claims = tokens.claims() as Record<string, unknown> | undefined;
    if (claims) {
      this.checkIssuedAt(claims);
      const sameAud = JSON.stringify([original.aud].flat().sort()) === JSON.stringify([claims.aud].flat().sort());
      if (claims.iss !== original.iss || claims.sub !== original.sub || !sameAud || (claims.azp !== undefined && claims.azp !== original.azp)) {
        throw mismatch('refreshed ID token has a different iss/sub/aud/azp');
      }
    }
    let idClaims: Record<string, unknown> = claims ? { ...claims } : (currentIdToken && idTokenPayload(currentIdToken, original)) || original;
    if (idClaims.sid === undefined && original.sid !== undefined) idClaims = { ...idClaims, sid: original.sid };
    // How and when the user signed in does not change with a refresh (OIDC Core §12.2: `auth_time`
    // is the original authentication's): kept when a refreshed ID token omits them, so a step-up
    // route (policy/step-up.ts) does not ask the user to sign in again after every refresh.
    for (const k of STEP_UP_CLAIMS) if (idClaims[k] === undefined && original[k] !== undefined) idClaims = { ...idClaims, [k]: original[k] };
    let now: Record<string, unknown> = idClaims;
    if (this.settings.userinfo && tokens.access_token) {
      try {
        const info = await client.fetchUserInfo(this.requireConfig(), tokens.access_token, String(original.sub));
        now = { ...info, ...idClaims };
      } catch (err) {
        if (err instanceof client.ClientError && err.code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') throw mismatch('userinfo for another subject', err);
        this.hooks.log?.warn({ sub: original.sub, err: describeError(err) }, 'userinfo failed after a refresh: keeping the previous claims the ID token lacks until the next refresh');
        now = { ...original, ...idClaims };
      }
    }
    // Group overage: fetched again with the new access token; on failure no `groups` (fail closed,
    // never the previous list).
    const groups = await this.groupOverage.resolve(now, tokens.access_token);
    return {
      claims: groups.claims,
      groupsUnavailable: groups.groupsUnavailable,
      idToken: tokens.id_token ?? '',
      idTokenReturned: !!tokens.id_token,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token ?? refreshToken,
      tokenExpiresAt: this.expiry(tokens, claims),
    };
  }

  /** Revokes a refresh token when the IdP offers revocation; failures are logged, not fatal. */
  async revoke(token: string): Promise<boolean> {
    const config = this.config;
    if (!config || !this.meta?.revocation_endpoint) return false;
    try {
      await client.tokenRevocation(config, token, { token_type_hint: 'refresh_token' });
      return true;
    } catch (err) {
      this.hooks.log?.warn({ err: describeError(err) }, 'token revocation failed');
      return false;
    }
  }

  /**
   * The IdP's signing keys for tokens Portcullis verifies itself (logout tokens, bearer JWTs):
   * cached for KEY_CACHE_MAX_AGE_MS; an unknown `kid` triggers a refetch unless one succeeded less
   * than KEY_REFRESH_COOLDOWN_MS ago (why 5 s: see there), and concurrent refetches are one request.
   *
   * When a refetch fails (the IdP is unreachable) the last good set goes on verifying — also once it
   * is older than the cache age, which jose alone would not do: there, every token, even one with a
   * known key, fails while the JWKS cannot be fetched, so an IdP outage of more than 10 minutes would
   * refuse every API client although sessions go on. A key the IdP revoked meanwhile stays trusted
   * until the IdP can be reached again, as with any cached verifier (go-oidc keeps its keys with no
   * age at all). While the set is stale and the IdP down, it is asked again at most once per
   * KEY_REFRESH_COOLDOWN_MS, not on every request.
   */
  keySet(): JWTVerifyGetKey {
    const config = this.requireConfig();
    if (!this.keys) {
      const uri = config.serverMetadata().jwks_uri!;
      const fetchImpl = this.instrumentedFetch();
      const remote = createRemoteJWKSet(new URL(uri), {
        cooldownDuration: KEY_REFRESH_COOLDOWN_MS,
        cacheMaxAge: this.hooks.keyCacheMaxAgeMs ?? KEY_CACHE_MAX_AGE_MS,
        timeoutDuration: this.settings.timeoutMs,
        [joseFetch]: fetchImpl as never,
      });
      let failedAt = -Infinity;
      let lastGood: { jwks: JSONWebKeySet; keys: JWTVerifyGetKey } | undefined;
      const fromLastGood = (jwks: JSONWebKeySet): JWTVerifyGetKey => {
        if (lastGood?.jwks !== jwks) lastGood = { jwks, keys: createLocalJWKSet(jwks) };
        return lastGood.keys;
      };
      this.keys = async (protectedHeader, token) => {
        const jwks = remote.jwks();
        if (jwks && !remote.fresh && Date.now() - failedAt < KEY_REFRESH_COOLDOWN_MS) return fromLastGood(jwks)(protectedHeader, token);
        try {
          return await remote(protectedHeader, token);
        } catch (err) {
          // Fresh means the set was fetched (now or lately): the token itself is the problem.
          if (!jwks || remote.fresh) throw err;
          failedAt = Date.now();
          this.hooks.log?.warn({ err: describeError(err) }, 'the IdP\'s signing keys could not be fetched again: verifying with the last good set');
          return fromLastGood(jwks)(protectedHeader, token);
        }
      };
    }
    return this.keys;
  }

  /**
   * OIDC Back-Channel Logout 1.0 §2.6: signature (pinned algorithms), iss, aud, iat (fresh: at most
   * 5 minutes old), the `events` member, no `nonce`, `sid` and/or `sub`, a `jti`. Replay of the
   * `jti` is the caller's to check (it may be shared across replicas).
   */
  async verifyLogoutToken(token: string): Promise<{ sid?: string; sub?: string; jti: string; exp: number }> {
    const keys = this.keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.meta!.issuer,
        audience: this.settings.clientId,
        algorithms: [...this.settings.idTokenSigningAlgs],
        clockTolerance: this.settings.clockToleranceSec,
        maxTokenAge: 300 + this.settings.clockToleranceSec,
        requiredClaims: ['iat', 'jti'],
      }));
    } catch (err) {
      throw coded('ERR_LOGOUT_TOKEN_INVALID', { cause: err });
    }
    const fail = (why: string) => coded('ERR_LOGOUT_TOKEN_INVALID', { cause: new Error(why) });
    const events = payload.events as Record<string, unknown> | undefined;
    if (!events || typeof events !== 'object' || Array.isArray(events) || typeof events[BACKCHANNEL_EVENT] !== 'object' || events[BACKCHANNEL_EVENT] === null) throw fail('events claim lacks the back-channel logout event');
    if (payload.nonce !== undefined) throw fail('a logout token must not contain a nonce');
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    if (!sid && !sub) throw fail('neither sid nor sub');
    if (typeof payload.jti !== 'string') throw fail('jti missing');
    const exp = typeof payload.exp === 'number' ? payload.exp : Math.floor(Date.now() / 1000) + 600;
    return { sid, sub, jti: payload.jti, exp };
  }

  /**
   * A bearer JWT from an API client (routes with bearer: true): issued by our IdP (signature via its
   * JWKS, pinned algorithms — never `none`, never HMAC, so a token "signed" with the public key as
   * an HMAC secret fails), `iss`, `exp`/`nbf` with tolerance, and `aud` one of bearerAudiences —
   * and an access token, not an ID token or logout token of the same IdP (see notAnAccessToken).
   */
  async verifyBearer(token: string, audiences: readonly string[]): Promise<Record<string, unknown>> {
    const keys = this.keySet();
    let verified: { payload: JWTPayload; protectedHeader: { typ?: string } };
    try {
      verified = await jwtVerify(token, keys, {
        issuer: this.meta!.issuer,
        audience: [...audiences],
        algorithms: [...this.settings.idTokenSigningAlgs],
        clockTolerance: this.settings.clockToleranceSec,
        requiredClaims: ['exp', 'sub'],
      });
    } catch (err) {
      throw coded('invalid_token', { cause: err });
    }
    const payload = verified.payload as Record<string, unknown>;
    const typ = verified.protectedHeader.typ;
    const why = this.settings.bearerTokenType === 'at+jwt' && String(typ ?? '').toLowerCase().replace(/^application\//, '') !== 'at+jwt'
      ? `typ ${JSON.stringify(String(typ ?? '(none)')).slice(0, 40)}, and oidc.bearerTokenType requires at+jwt`
      : notAnAccessToken(typ, payload);
    if (why) throw coded('invalid_token', { cause: new Error(`not an access token: ${why}`) });
    return payload;
  }

  /**
   * RFC 7662 introspection of an API client's token (src/signin/introspection.ts judges the answer),
   * with the client authentication of the token endpoint (`oidc.tokenEndpointAuthMethod`). Rejects
   * with a coded error when the IdP cannot answer: unreachable 503, too slow 504, anything but an
   * introspection answer 502, no introspection endpoint 503 — never with a verdict on the token.
   */
  async introspect(token: string): Promise<Record<string, unknown>> {
    const config = this.requireConfig();
    if (!this.meta?.introspection_endpoint) throw coded('ERR_IDP_NO_INTROSPECTION');
    try {
      return { ...(await client.tokenIntrospection(config, token, { token_type_hint: 'access_token' })) } as Record<string, unknown>;
    } catch (err) {
      const name = (err as Error)?.name;
      const code = (err as { code?: string })?.code;
      if (name === 'TimeoutError' || name === 'AbortError' || code === 'OAUTH_TIMEOUT' || code === 'OAUTH_ABORT') throw errors.idpTimeout(err);
      if (err instanceof TypeError) throw errors.idpUnavailable(err);
      throw errors.idpBadResponse(err instanceof client.ResponseBodyError ? idpSaid(err, 'introspection') : err);
    }
  }

  /**
   * RFC 8693 token exchange at the token endpoint (with this client's authentication): the user's
   * access token for one meant for `audience`. Rejects with ERR_TOKEN_EXCHANGE_REFUSED when the IdP
   * says no, or a coded IdP error when it cannot answer.
   */
  async exchange(subjectToken: string, audience: string, scope: string | undefined): Promise<{ token: string; expiresInSec: number | undefined }> {
    const config = this.requireConfig();
    const params: Record<string, string> = {
      subject_token: subjectToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience,
    };
    if (scope) params.scope = scope;
    try {
      const r = await client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', params);
      return { token: r.access_token, expiresInSec: r.expiresIn() };
    } catch (err) {
      if (err instanceof client.ResponseBodyError && err.status < 500) throw coded('ERR_TOKEN_EXCHANGE_REFUSED', { detail: String(err.error).replace(/[^\x20-\x7e]/g, '').slice(0, 60), cause: idpSaid(err, 'exchange') });
      const name = (err as Error)?.name;
      const code = (err as { code?: string })?.code;
      if (name === 'TimeoutError' || name === 'AbortError' || code === 'OAUTH_TIMEOUT' || code === 'OAUTH_ABORT') throw errors.idpTimeout(err);
      if (err instanceof TypeError) throw errors.idpUnavailable(err);
      throw errors.idpBadResponse(err instanceof client.ResponseBodyError ? idpSaid(err, 'exchange') : err);
    }
  }

  /** True when the IdP offers RP-initiated logout (an end_session_endpoint). */
  get hasEndSession(): boolean { return !!this.meta?.end_session_endpoint; }

  /**
   * RP-initiated logout URL, when the IdP offers an end_session_endpoint. `state` (RP-Initiated
   * Logout 1.0 §2) is echoed back to the post-logout URI; some IdPs only redirect back with one.
   */
  endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string, state?: string): string | undefined {
    const config = this.config;
    if (!config || !this.meta?.end_session_endpoint) return undefined;
    const params: Record<string, string> = { post_logout_redirect_uri: postLogoutRedirectUri, client_id: this.settings.clientId };
    if (idTokenHint) params.id_token_hint = idTokenHint;
    if (state) params.state = state;
    return client.buildEndSessionUrl(config, params).href;
  }

  /**
   * A step-up sign-in's ID token against what was asked for, with the same check the door applies
   * to routes (policy/step-up.ts), so a sign-in a route would refuse is never accepted: `acr` one
   * of the values sent in `acr_values` (an IdP may ignore them, or answer from an earlier, weaker
   * SSO session); `auth_time` present (OIDC Core §3.1.2.1 requires it whenever `max_age` is sent),
   * within `max_age` plus the clock tolerance, and not in the future.
   */
  private checkStepUp(claims: Record<string, unknown>, acr: readonly string[] | undefined, maxAge: number | undefined): void {
    const tolerance = this.settings.clockToleranceSec;
    const now = this.hooks.now?.() ?? Date.now();
    const shortfall = stepUpShortfall(stepUpRequirement(acr, maxAge, tolerance * 1000), claims, now);
    const at = claims.auth_time;
    if (shortfall === 'acr') {
      const got = typeof claims.acr === 'string' ? `"${idpText(claims.acr, 80)}"` : 'none';
      throw coded('ERR_CALLBACK_ACR_NOT_REQUESTED', {
        detail: `you were signed in with authentication level ${got}, and ${acr!.length === 1 ? '' : 'one of '}${acr!.map((a) => `"${a}"`).join(', ')} is needed`,
        cause: new Error(`ID token acr ${got} is not one of the requested acr_values ${acr!.join(' ')}`),
      });
    }
    if (shortfall === 'max-age') {
      throw coded('ERR_CALLBACK_AUTH_TIME_INVALID', {
        detail: typeof at !== 'number' ? 'it did not say when you signed in' : `you signed in more than ${plainDuration(maxAge!)} ago`,
        cause: new Error(`ID token auth_time ${JSON.stringify(at)?.slice(0, 40)} is missing or older than max_age ${maxAge} s (+${tolerance} s) at ${Math.floor(now / 1000)}`),
      });
    }
    if (maxAge !== undefined && typeof at === 'number' && at * 1000 > now + tolerance * 1000) {
      throw coded('ERR_CALLBACK_AUTH_TIME_INVALID', { detail: 'the sign-in time it gave is in the future', cause: new Error(`ID token auth_time ${at} is in the future (now ${Math.floor(now / 1000)})`) });
    }
  }

  private checkIssuedAt(claims: Record<string, unknown>): void {
    const now = Math.floor((this.hooks.now?.() ?? Date.now()) / 1000);
    if (typeof claims.iat === 'number' && claims.iat > now + this.settings.clockToleranceSec) {
      throw errors.idTokenInvalid(new Error(`ID token iat ${claims.iat} is in the future (now ${now})`));
    }
  }

  private expiry(tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers, claims: Record<string, unknown> | undefined): number | undefined {
    const expiresIn = tokens.expiresIn();
    const now = this.hooks.now?.() ?? Date.now();
    const candidates: number[] = [];
    if (typeof expiresIn === 'number') candidates.push(now + expiresIn * 1000);
    if (claims && typeof claims.exp === 'number') candidates.push(claims.exp * 1000);
    return candidates.length ? Math.min(...candidates) : undefined;
  }
}

/**
 * Why a verified JWT is not an access token, or undefined when it may be one. An ID token or a
 * back-channel logout token is signed by the same keys and may name a listed audience (the client
 * id), so its type decides: the `typ` header must be absent, `JWT` or `at+jwt` (RFC 9068; with or
 * without `application/`) — `logout+jwt` (Back-Channel Logout §2.4) and any other type are refused
 * — and claims only those tokens carry are refused: `nonce`, `at_hash`, `c_hash` (ID tokens, OIDC
 * Core §2/§3.3.2.11), `events` (logout and other security-event tokens), and Keycloak's own payload
 * `typ` when it is not `Bearer` (`ID`, `Logout`, `Refresh`…).
 */
export function notAnAccessToken(typ: unknown, claims: Record<string, unknown>): string | undefined {
  if (typ !== undefined) {
    const t = String(typ).toLowerCase().replace(/^application\//, '');
    if (t !== 'jwt' && t !== 'at+jwt') return `typ header ${JSON.stringify(String(typ)).slice(0, 40)}`;
  }
  for (const claim of ['nonce', 'at_hash', 'c_hash', 'events'] as const) {
    if (claims[claim] !== undefined) return `${claim} claim (${claim === 'events' ? 'a logout token' : 'an ID token'})`;
  }
  if (typeof claims.typ === 'string' && claims.typ.toLowerCase() !== 'bearer') return `typ claim ${JSON.stringify(claims.typ).slice(0, 40)}`;
  return undefined;
}

/**
 * `error` values meaning the code or refresh token itself was refused (unknown, used, expired,
 * PKCE failed): RFC 6749 §5.2's invalid_grant, and Glewlwyd 2.7's own `invalid_code` (HTTP 403)
 * for an authorization code. Not the client's registration: the user just signs in again.
 */
const GRANT_REFUSED = new Set(['invalid_grant', 'invalid_code']);

/** Said after an `unauthorized_client`, whose meaning differs between IdPs. */
const UNAUTHORIZED_CLIENT_HINT = ' (RFC 6749: this client may not use this grant type. Glewlwyd answers it as well for a redirect URI not registered for the client, a grant type not enabled on it, and wrong client credentials: check oidc.clientSecret and oidc.tokenEndpointAuthMethod too)';

/** The code or refresh token was refused: the sign-in is retried, the session ends. */
function grantRefused(step: 'code' | 'userinfo' | 'refresh', said: Error): PortcullisError {
  return step === 'refresh'
    ? coded('ERR_REFRESH_INVALID_GRANT', { cause: said })
    : errors.callbackCodeRejected(said);
}

/** openid-client / network errors → coded Portcullis errors (operator detail kept in `cause`). */
export function wrapIdpError(err: unknown, step: 'code' | 'userinfo' | 'refresh'): PortcullisError {
  if (err instanceof PortcullisError) return err;
  if (err instanceof client.AuthorizationResponseError) {
    return errors.callbackIdpError(String(err.error), err.error_description ?? undefined);
  }
  if (err instanceof client.ResponseBodyError) {
    // The operator's detail: the IdP's own `error` and `error_description` (never the code, the
    // refresh token or the secret, which are in the request, not in this answer).
    const said = idpSaid(err, step);
    if (GRANT_REFUSED.has(err.error)) return grantRefused(step, said);
    if (err.status >= 500) return errors.idpBadResponse(said);
    // RFC 6749 §5.2: invalid_client (HTTP 401) is our client authentication — a wrong
    // oidc.clientSecret, or an auth method the IdP does not accept or decode the same way.
    if (err.error === 'invalid_client' || err.status === 401) return errors.callbackClientAuth(said);
    // unauthorized_client, unsupported_grant_type, invalid_scope, invalid_request…: the client's
    // registration or Portcullis's request, not the user's sign-in code. Glewlwyd also answers
    // unauthorized_client for wrong client credentials: the operator's detail says so.
    if (err.error === 'unauthorized_client') said.message += UNAUTHORIZED_CLIENT_HINT;
    return errors.callbackTokenRefused(String(err.error), said);
  }
  // A token endpoint's bare 400 (no OAuth error body) to a grant: Glewlwyd's answer to a refresh
  // token it no longer accepts (revoked, expired, its session ended). A refusal, not an outage —
  // treated as one would keep the session alive, retrying, until its idle or absolute timeout.
  if (step !== 'userinfo' && err instanceof client.ClientError && err.code === 'OAUTH_RESPONSE_IS_NOT_JSON' && err.cause instanceof Response && err.cause.status === 400) {
    return grantRefused(step, new Error(`the identity provider's token endpoint (${step === 'code' ? 'authorization_code' : 'refresh_token'} grant) answered HTTP 400 with no OAuth error body`, { cause: err }));
  }
  // A 401 with a WWW-Authenticate challenge from the token endpoint (some IdPs answer a failed
  // client_secret_basic this way): our client authentication failed.
  if (err instanceof client.WWWAuthenticateChallengeError && step !== 'userinfo' && err.status === 401) {
    const p = err.cause[0]?.parameters ?? {};
    const clean = (v: unknown, n: number) => String(v).replace(/[^\x20-\x7e]/g, '?').slice(0, n);
    return errors.callbackClientAuth(new Error(`the identity provider's token endpoint (${step === 'code' ? 'authorization_code' : 'refresh_token'} grant) answered HTTP 401 ${clean(p.error ?? 'with a WWW-Authenticate challenge', 60)}${p.error_description ? `: ${clean(p.error_description, 300)}` : ''}`, { cause: err }));
  }
  const name = (err as Error)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return errors.idpTimeout(err);
  const code = (err as { code?: string })?.code;
  // openid-client's wrapping of a DOMException TimeoutError/AbortError (the per-request timeout).
  if (code === 'OAUTH_TIMEOUT' || code === 'OAUTH_ABORT') return errors.idpTimeout(err);
  if (code === 'OAUTH_RESPONSE_IS_NOT_JSON' || code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') return errors.idpBadResponse(err);
  if (err instanceof client.ClientError || (typeof code === 'string' && code.startsWith('OAUTH_'))) {
    if (code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED' && step === 'userinfo') return errors.userinfoMismatch(err);
    if (code === 'OAUTH_INVALID_RESPONSE' && /state/i.test((err as Error).message)) return errors.callbackUnknownState(err);
    // RFC 9207's `iss` response parameter (oauth4webapi: missing, or not this provider's issuer): the
    // browser came back from another IdP than the one this sign-in started at — not an ID token problem.
    // (openid-client wraps oauth4webapi's error, which says it, as "invalid response encountered".)
    const cause = (err as Error).cause;
    if (step === 'code' && /"iss" \(issuer\) (response parameter|missing)/.test(`${(err as Error).message} ${cause instanceof Error ? cause.message : ''}`)) return coded('ERR_CALLBACK_ISSUER_MISMATCH', { cause: err });
    return errors.idTokenInvalid(err);
  }
  if (err instanceof TypeError) return errors.idpUnavailable(err); // fetch failed: connection refused/reset
  return errors.idpBadResponse(err);
}

/** The IdP's error answer in words for the log: endpoint, HTTP status, `error` and `error_description` (bounded, printable). */
function idpSaid(err: client.ResponseBodyError, step: 'code' | 'userinfo' | 'refresh' | 'introspection' | 'exchange'): Error {
  const clean = (v: unknown, n: number) => String(v).replace(/[^\x20-\x7e]/g, '?').slice(0, n);
  const endpoint = step === 'userinfo' ? 'userinfo endpoint' : step === 'introspection' ? 'introspection endpoint'
    : `token endpoint (${step === 'code' ? 'authorization_code' : step === 'exchange' ? 'token-exchange' : 'refresh_token'} grant)`;
  const description = err.error_description ? `: ${clean(err.error_description, 300)}` : '';
  return new Error(`the identity provider's ${endpoint} answered HTTP ${err.status} ${clean(err.error, 60)}${description}`, { cause: err });
}

/**
 * The claims of an ID token this session already verified (at sign-in or an earlier refresh),
 * when it is still the session's latest one; undefined when it cannot be read or names another subject.
 */
function idTokenPayload(idToken: string, original: Record<string, unknown>): Record<string, unknown> | undefined {
  try {
    const payload = decodeJwt(idToken) as Record<string, unknown>;
    return payload.sub === original.sub && payload.iss === original.iss ? payload : undefined;
  } catch {
    return undefined;
  }
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const c = cause instanceof Error ? `: ${cause.message}` : '';
  return `${(err as { code?: string }).code ? `${(err as { code?: string }).code} ` : ''}${err.message}${c}`;
}

/** The host of an IdP URL, for a span attribute (never the path's query). */
function hostOf(url: string): string {
  try { return new URL(url).host; } catch { return ''; }
}
