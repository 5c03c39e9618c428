// Development OpenID Provider (oidc-provider 8) for `npm run demo` and the integration tests; never the production path.
import { listenOn } from './net.js';
import { createHash, generateKeyPair, timingSafeEqual, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import Provider, { errors, type Grant, type InteractionDetails } from 'oidc-provider';

export interface DevUser {
  password: string;
  /**
   * Claims released for this account: email, email_verified, name, preferred_username, groups ... (`sub` is the user name).
   * `_claim_names` + `_claim_sources` instead of `groups` make a distributed `groups` claim, as Entra ID
   * sends past 200 groups (group overage): oidc-provider releases them with the `groups` scope.
   */
  claims: Record<string, unknown>;
}

export interface DevClient {
  client_id: string;
  /** Not used (and not registered) with private_key_jwt. */
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  backchannel_logout_uri?: string;
  /**
   * Default: true when `backchannel_logout_uri` is set (the spec default is false). oidc-provider puts
   * `sid` into ID tokens and logout tokens only when this is true, and a proxy wants `sid`.
   */
  backchannel_logout_session_required?: boolean;
  /** Default `client_secret_basic` (the registration spec's default); oidc-provider rejects any other method for the client. */
  token_endpoint_auth_method?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** private_key_jwt: where the client's public keys are fetched (Portcullis: publicUrl + /oauth2/client-jwks.json) … */
  jwks_uri?: string;
  /** … or the public keys themselves (not both). */
  jwks?: { keys: object[] };
  /** private_key_jwt: the one algorithm its assertions must use (default: any of RS256, PS256, ES256, EdDSA). */
  token_endpoint_auth_signing_alg?: string;
}

export interface DevIdpOptions {
  /** Default 127.0.0.1. The issuer is `http://HOST:PORT`. */
  host?: string;
  /** Default 0: a free port. */
  port?: number;
  clients: DevClient[];
  /** Default DEMO_USERS. */
  users?: Record<string, DevUser>;
  /** Lifetimes in seconds. Defaults: AccessToken 3600, IdToken 3600, RefreshToken 86400, Session 86400. */
  ttl?: { AccessToken?: number; IdToken?: number; RefreshToken?: number; Session?: number };
  /** Private signing JWKS. Default: a fresh RS256 and ES256 key, kid = RFC 7638 thumbprint. */
  keys?: { keys: object[] };
  /** Default true: log nothing. false: one line per server error, failed grant or back-channel logout. */
  quiet?: boolean;
  /**
   * Authentication Context Class References this IdP offers (`acr_values_supported`), weakest
   * first, e.g. `['pwd', 'mfa', 'phr']`. Set: the login form offers them ("Sign in with…", the
   * strongest one requested preselected; the first otherwise), the chosen one becomes the ID
   * token's `acr`, and the `claims` parameter is supported, so an essential acr the current IdP
   * session lacks makes it ask to sign in again (step-up). Unset: no `acr` at all.
   */
  acrValues?: string[];
  /**
   * Default true with `acrValues`: the `claims` parameter is supported (an essential acr is
   * enforced). false: `acr_values` are a wish only, as OIDC allows — the IdP answers from its SSO
   * session whatever acr it holds (for tests of a relying party that must refuse such an answer).
   */
  claimsParameter?: boolean;
}

export interface DevIdp {
  issuer: string;
  port: number;
  provider: Provider;
  /** Adds or replaces a client after start, e.g. once the proxy under test knows its port (redirect_uris). */
  registerClient(client: DevClient): Promise<void>;
  /** Adds a Koa middleware in front of oidc-provider's own (tests record what reached an endpoint). */
  use(middleware: (ctx: any, next: () => Promise<void>) => Promise<void>): void;
  close(): Promise<void>;
}

export const DEMO_USERS: Record<string, DevUser> = Object.freeze({
  alice: {
    password: 'alice-password',
    claims: {
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice Example',
      preferred_username: 'alice',
      groups: ['admin', 'dev'],
    },
  },
  bob: {
    password: 'bob-password',
    claims: {
      email: 'bob@example.com',
      email_verified: true,
      name: 'Bob Example',
      preferred_username: 'bob',
      groups: [],
    },
  },
});

// The signing of IdP cookies is not what is under test; a fixed key keeps the config simple.
const COOKIE_KEYS = ['portcullis-dev-idp-cookie-key-not-a-secret'];
const MAX_FORM_BYTES = 16 * 1024;

/** The slice of oidc-provider's Koa context our configuration callbacks touch. */
interface OidcContext {
  type: string;
  body: unknown;
  host: string;
  oidc: {
    provider: Provider;
    client: { clientId: string };
    account?: { accountId: string };
    session: { accountId?: string; grantIdFor(clientId: string): string | undefined };
    result?: { consent?: { grantId?: string } };
    requestParamOIDCScopes: Set<string>;
    requestParamClaims: Set<string>;
  };
}

export async function startDevIdp(opts: DevIdpOptions): Promise<DevIdp> {
  const host = opts.host ?? '127.0.0.1';
  const users = opts.users ?? DEMO_USERS;
  const quiet = opts.quiet ?? true;
  const log = quiet ? () => {} : (...args: unknown[]) => console.error('[dev-idp]', ...args);
  const store = new MemoryStore();
  // Set once the Provider exists; until then nobody knows our port, so nobody should be calling.
  let provider: Provider | undefined;
  let providerCallback: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  // Listen first: the issuer must carry the real port, and port 0 is only resolved by listening.
  const server = createServer((req, res) => {
    if (!provider || !providerCallback) {
      res.writeHead(503).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (path.startsWith('/interaction/')) {
      handleInteraction(provider, users, req, res, path, opts.acrValues ?? []).catch((err: unknown) => {
        log('interaction error', err);
        if (!res.headersSent) sendPage(res, 500, 'Error', '<p>Internal error in the dev IdP.</p>');
        else res.destroy();
      });
      return;
    }
    providerCallback(req, res);
  });
  await listenOn(server, host, opts.port ?? 0);
  const { port } = server.address() as AddressInfo;
  const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  try {
    const ttl = {
      AccessToken: opts.ttl?.AccessToken ?? 3600,
      IdToken: opts.ttl?.IdToken ?? 3600,
      RefreshToken: opts.ttl?.RefreshToken ?? 86_400,
      Session: opts.ttl?.Session ?? 86_400,
    };
    provider = new Provider(issuer, {
      // Our own per-instance store: the built-in MemoryAdapter is one LRU of 1000 entries shared by every
      // Provider in the process, so parallel test IdPs would evict each other's sessions.
      adapter: (model: string) => store.adapter(model),
      jwks: opts.keys ?? (await freshSigningKeys()),
      findAccount: async (_ctx: unknown, id: string) => {
        if (!Object.hasOwn(users, id)) return undefined;
        const claims = users[id]!.claims;
        return { accountId: id, claims: async () => ({ ...claims, sub: id }) };
      },
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name', 'preferred_username'],
        groups: ['groups'],
      },
      // Scope-granted claims go into the ID token too, so a proxy needs no userinfo call to see groups.
      conformIdTokenClaims: false,
      responseTypes: ['code'],
      // PKCE with S256 on every request: a proxy that forgets it must fail here, not in production.
      pkce: { required: () => true, methods: ['S256'] },
      // Refresh tokens without offline_access; they still end with the IdP session (expiresWithSession).
      issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) =>
        client.grantTypeAllowed('refresh_token'),
      loadExistingGrant,
      interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
      cookies: {
        // op_* names: browsers share cookies across ports of 127.0.0.1, so these must not look like the proxy's.
        names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_resume' },
        keys: COOKIE_KEYS,
        // oidc-provider 8 defaults the session cookie to SameSite=None, which browsers drop on plain http.
        long: { httpOnly: true, sameSite: 'lax' },
        short: { httpOnly: true, sameSite: 'lax' },
      },
      // The library defaults behave the same but print a one-time console notice; quiet means quiet.
      clientBasedCORS: () => false,
      ...(opts.acrValues?.length ? { acrValues: opts.acrValues } : {}),
      features: {
        devInteractions: { enabled: false },
        claimsParameter: { enabled: !!opts.acrValues?.length && opts.claimsParameter !== false },
        rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
        revocation: { enabled: true },
        introspection: {
          enabled: true,
          // Any authenticated client may introspect (the default, minus its console notice).
          allowedPolicy: async () => true,
        },
        backchannelLogout: { enabled: true },
      },
      ttl: {
        ...ttl,
        AuthorizationCode: 60,
        Interaction: 600,
        Grant: Math.max(ttl.Session, ttl.RefreshToken),
      },
      renderError,
    });
  } catch (err) {
    server.close();
    throw err;
  }
  // RFC 8693 token exchange, which oidc-provider 8 does not ship: a small conformant grant (see
  // registerTokenExchange) so Portcullis's per-upstream tokens are tested against this IdP.
  registerTokenExchange(provider);
  providerCallback = provider.callback();

  provider.on('server_error', (_ctx: unknown, err: Error) => log('server_error', err));
  provider.on('grant.error', (_ctx: unknown, err: Error & { error_description?: string }) =>
    log('grant.error', err.message, err.error_description ?? ''));
  provider.on('backchannel.error', (_ctx: unknown, err: Error, client: { clientId: string }) =>
    log('backchannel.error', client.clientId, err.message));

  const op = provider; // narrowed to Provider for the closure below
  async function registerClient(client: DevClient): Promise<void> {
    const metadata = clientMetadata(client, opts.acrValues);
    // Clients live in the adapter, not in the static `clients` list, so they can change after start.
    await op.Client.validate(metadata);
    store.set('Client', client.client_id, metadata);
  }
  try {
    for (const client of opts.clients) await registerClient(client);
  } catch (err) {
    server.close();
    throw err;
  }

  log(`listening, issuer ${issuer}`);
  return {
    issuer,
    port,
    provider,
    registerClient,
    use: (middleware) => {
      // Koa composes its middleware when the request handler is made: make it again.
      op.use(middleware);
      providerCallback = op.callback();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function clientMetadata(client: DevClient, acrValues: readonly string[] | undefined): Record<string, unknown> {
  const privateKeyJwt = client.token_endpoint_auth_method === 'private_key_jwt';
  const metadata: Record<string, unknown> = {
    // With acrValues: oidc-provider releases `acr` only when it was asked for, so every acr it offers
    // is the client's default (a voluntary request): every ID token says how the user signed in, as
    // most IdPs' do.
    // And `auth_time` in every ID token (require_auth_time), as Keycloak and Entra always send it.
    ...(acrValues?.length ? { default_acr_values: [...acrValues], require_auth_time: true } : {}),
    client_id: client.client_id,
    ...(privateKeyJwt ? {} : { client_secret: client.client_secret }),
    redirect_uris: client.redirect_uris,
    post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
    token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
  };
  if (client.jwks_uri) metadata.jwks_uri = client.jwks_uri;
  if (client.jwks) metadata.jwks = client.jwks;
  if (client.token_endpoint_auth_signing_alg) metadata.token_endpoint_auth_signing_alg = client.token_endpoint_auth_signing_alg;
  if (client.backchannel_logout_uri) {
    metadata.backchannel_logout_uri = client.backchannel_logout_uri;
    metadata.backchannel_logout_session_required = client.backchannel_logout_session_required ?? true;
  }
  return metadata;
}

/**
 * Skips the consent screen: every client of the dev IdP is first-party. This is oidc-provider's
 * documented recipe, extended so that an existing grant also gains scopes requested later
 * (otherwise a second sign-in asking for more scopes would stop at a consent prompt).
 */
async function loadExistingGrant(ctx: OidcContext): Promise<Grant | undefined> {
  const { oidc } = ctx;
  const accountId = oidc.account?.accountId;
  if (!accountId) return undefined;
  const grantId = oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  // A grant from another account or client makes oidc-provider throw; start over instead.
  if (!grant || grant.accountId !== accountId || grant.clientId !== oidc.client.clientId) {
    grant = new oidc.provider.Grant({ accountId, clientId: oidc.client.clientId });
  }
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

async function handleInteraction(
  provider: Provider,
  users: Record<string, DevUser>,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  acrValues: readonly string[],
): Promise<void> {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/.exec(path);
  if (!match) {
    sendPage(res, 404, 'Not found', '<p>No such page.</p>');
    return;
  }
  const [, uid, action] = match;
  let details: InteractionDetails;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      sendPage(res, 400, 'Sign-in expired', '<p>This sign-in attempt has expired or was already used. Go back to the application and start again.</p>');
      return;
    }
    throw err;
  }
  // The interaction cookie is path-scoped to /interaction/<uid>; a mismatch means a stale or forged URL.
  if (details.uid !== uid) {
    sendPage(res, 400, 'Sign-in mismatch', '<p>This sign-in page does not belong to your current sign-in attempt. Start again.</p>');
    return;
  }

  if (action === undefined && req.method === 'GET') {
    if (details.prompt.name === 'consent') {
      // Only reached with prompt=consent (loadExistingGrant covers the rest): grant what was asked.
      await finishConsent(provider, details, req, res);
      return;
    }
    if (details.prompt.name !== 'login') {
      sendPage(res, 400, 'Unsupported', `<p>Unsupported interaction prompt ${esc(details.prompt.name)}.</p>`);
      return;
    }
    sendLoginForm(res, details, users, {}, acrValues);
    return;
  }
  if (req.method === 'GET' && action === '/login') {
    // A reload after a failed attempt: back to the form instead of a bare 405.
    res.writeHead(303, { location: `/interaction/${uid}` }).end();
    return;
  }
  if (req.method !== 'POST' || action === undefined) {
    res.writeHead(405, { allow: action === undefined ? 'GET' : 'POST' }).end();
    return;
  }
  const form = await readForm(req);
  if (action === '/abort') {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
    return;
  }
  if (details.prompt.name !== 'login') {
    sendPage(res, 400, 'Unexpected', '<p>This sign-in attempt does not expect a password. Start again.</p>');
    return;
  }
  const login = form.get('login') ?? '';
  const password = form.get('password') ?? '';
  if (!Object.hasOwn(users, login) || !passwordsEqual(users[login]!.password, password)) {
    sendLoginForm(res, details, users, { login, error: 'Invalid username or password' }, acrValues);
    return;
  }
  // The method chosen is the sign-in's acr (a test may choose one that was not asked for).
  const acr = form.get('acr') ?? undefined;
  if (acr !== undefined && !acrValues.includes(acr)) {
    sendLoginForm(res, details, users, { login, error: 'Unknown sign-in method' }, acrValues);
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: login, ...(acr === undefined ? {} : { acr }) } }, { mergeWithLastSubmission: false });
}

async function finishConsent(provider: Provider, details: InteractionDetails, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const accountId = details.session?.accountId;
  const clientId = details.params.client_id;
  if (!accountId || !clientId) {
    sendPage(res, 400, 'Unexpected', '<p>Consent without a signed-in user. Start again.</p>');
    return;
  }
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant = existing ?? new provider.Grant({ accountId, clientId });
  const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function sendLoginForm(
  res: ServerResponse,
  details: InteractionDetails,
  users: Record<string, DevUser>,
  state: { login?: string; error?: string },
  acrValues: readonly string[],
): void {
  const uid = esc(details.uid);
  // Preselected: the strongest this IdP offers of the acr values requested as essential (the
  // claims parameter: a step-up), else the weakest it offers. Plain acr_values are not looked at:
  // the client's default_acr_values (all of them) fill them in on every request.
  const essential = (details.params.claims ? safeJson(String(details.params.claims)) : undefined) as { id_token?: { acr?: { values?: unknown } } } | undefined;
  const requested = (Array.isArray(essential?.id_token?.acr?.values) ? essential.id_token.acr.values.map(String) : []).filter((a) => acrValues.includes(a));
  const preselected = requested.length ? acrValues.filter((a) => requested.includes(a)).at(-1) : acrValues[0];
  const acrSelect = acrValues.length
    ? `<label>Sign in with <select name="acr">${acrValues.map((a) => `<option value="${esc(a)}"${a === preselected ? ' selected' : ''}>${esc(a)}</option>`).join('')}</select></label>`
    : '';
  const demo = users === DEMO_USERS
    ? `<p class="hint">Demo users: ${Object.entries(DEMO_USERS).map(([name, u]) => `<code>${esc(name)}</code> / <code>${esc(u.password)}</code>`).join(', ')}</p>`
    : '';
  const body = `
<p>Application <code>${esc(String(details.params.client_id ?? ''))}</code> asks you to sign in.</p>
${state.error ? `<p class="error" role="alert">${esc(state.error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login" autocomplete="off">
  <label>Username <input name="login" value="${esc(state.login ?? '')}" autofocus required></label>
  <label>Password <input type="password" name="password" required></label>
  ${acrSelect}
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${uid}/abort"><button type="submit" class="link">Cancel</button></form>
${demo}`;
  sendPage(res, 200, 'Sign in', body);
}

function sendPage(res: ServerResponse, status: number, heading: string, body: string): void {
  const html = page(heading, body);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    // No form-action: browsers apply it to the redirects after the login POST, which leave this origin.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(html);
}

function page(heading: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(heading)} · Portcullis dev IdP</title>
<style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}
label{display:block;margin:.6rem 0}input{display:block;width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:.8rem;padding:.5rem 1rem}.error{color:#b00020}.hint{color:#555;font-size:.9rem}
button.link{background:none;border:none;color:#06c;padding:0;cursor:pointer}</style></head>
<body><h1>${esc(heading)}</h1><p class="hint">Portcullis development identity provider — not for production.</p>
${body}</body></html>`;
}

async function renderError(ctx: OidcContext, out: Record<string, unknown>): Promise<void> {
  const rows = Object.entries(out).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(String(v))}</dd>`).join('');
  ctx.type = 'html';
  ctx.body = page('Error', `<dl id="error">${rows}</dl>`);
}

async function logoutSource(ctx: OidcContext, form: string): Promise<void> {
  // The confirm control goes inside oidc-provider's form (which carries the xsrf field), so a plain
  // form submit — by a browser or by a test parsing the HTML — signs out of the whole IdP session.
  const inner = form.replace('</form>', '<input type="hidden" name="logout" value="yes"><button type="submit">Sign out</button></form>');
  ctx.type = 'html';
  ctx.body = page('Sign out', `<p>Sign out of the Portcullis dev IdP at ${esc(ctx.host)}?</p>${inner}`);
}

async function postLogoutSuccessSource(ctx: OidcContext): Promise<void> {
  ctx.type = 'html';
  ctx.body = page('Signed out', '<p>You are signed out of the Portcullis dev IdP.</p>');
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function safeJson(text: string): unknown {
  try { return JSON.parse(text); } catch { return undefined; }
}

function passwordsEqual(expected: string, given: string): boolean {
  // Hash first so lengths match; timing-safe out of habit, even in a dev IdP.
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

function esc(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function freshSigningKeys(): Promise<{ keys: object[] }> {
  const generate = promisify(generateKeyPair) as (type: string, options: object) => Promise<{ privateKey: KeyObject }>;
  const [rsa, ec] = await Promise.all([
    generate('rsa', { modulusLength: 2048 }),
    generate('ec', { namedCurve: 'P-256' }),
  ]);
  const rsaJwk = rsa.privateKey.export({ format: 'jwk' });
  const ecJwk = ec.privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsaJwk, kid: jwkThumbprint(rsaJwk), use: 'sig', alg: 'RS256' },
      { ...ecJwk, kid: jwkThumbprint(ecJwk), use: 'sig', alg: 'ES256' },
    ],
  };
}

/** RFC 7638: SHA-256 over the required members in lexicographic order; a new key therefore gets a new kid. */
function jwkThumbprint(jwk: { kty?: string; e?: string; n?: string; crv?: string; x?: string; y?: string }): string {
  const required = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: 'RSA', n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(required)).digest('base64url');
}

interface StoredEntry {
  payload: Record<string, unknown>;
  expiresAt: number | undefined;
}

/** oidc-provider's adapter contract over Maps private to one dev IdP; entries expire lazily on read. */
class MemoryStore {
  private readonly entries = new Map<string, StoredEntry>();
  private readonly grantMembers = new Map<string, Set<string>>();
  private writes = 0;

  set(model: string, id: string, payload: Record<string, unknown>, expiresIn?: number): void {
    this.put(`${model}:${id}`, payload, expiresIn);
  }

  adapter(model: string) {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id: string, payload: Record<string, unknown>, expiresIn?: number) => {
        this.put(key(id), payload, expiresIn);
        if (model === 'Session' && typeof payload.uid === 'string') this.put(`sessionUid:${payload.uid}`, { id }, expiresIn);
        if (typeof payload.userCode === 'string') this.put(`userCode:${payload.userCode}`, { id }, expiresIn);
        if (typeof payload.grantId === 'string') {
          const members = this.grantMembers.get(payload.grantId) ?? new Set<string>();
          members.add(key(id));
          this.grantMembers.set(payload.grantId, members);
        }
      },
      find: async (id: string) => this.get(key(id)),
      findByUid: async (uid: string) => {
        const ref = this.get(`sessionUid:${uid}`);
        return typeof ref?.id === 'string' ? this.get(key(ref.id)) : undefined;
      },
      findByUserCode: async (userCode: string) => {
        const ref = this.get(`userCode:${userCode}`);
        return typeof ref?.id === 'string' ? this.get(key(ref.id)) : undefined;
      },
      consume: async (id: string) => {
        const entry = this.get(key(id));
        if (entry) entry.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id: string) => {
        this.entries.delete(key(id));
      },
      revokeByGrantId: async (grantId: string) => {
        for (const member of this.grantMembers.get(grantId) ?? []) this.entries.delete(member);
        this.grantMembers.delete(grantId);
      },
    };
  }

  private put(key: string, payload: Record<string, unknown>, expiresIn?: number): void {
    this.entries.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
    if (++this.writes % 1000 === 0) this.sweep();
  }

  private get(key: string): Record<string, unknown> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.entries.delete(key);
    }
    for (const [grantId, members] of this.grantMembers) {
      for (const member of members) if (!this.entries.has(member)) members.delete(member);
      if (members.size === 0) this.grantMembers.delete(grantId);
    }
  }
}

/** RFC 8693's grant type. */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * RFC 8693 token exchange for the development IdP (oidc-provider 8.8.1 has none): an authenticated
 * client trades an access token this IdP issued to it (`subject_token`, type access_token) for a new
 * access token for `audience` (required here; one value) with at most the subject token's scopes.
 * Refusals are RFC 6749 errors: invalid_request (missing or other token types), invalid_grant (an
 * unknown, expired or another client's subject token), invalid_target (an audience starting with
 * `https://refused.`, so tests can make the IdP say no). The new token is opaque; its `aud` (the
 * audience) shows in introspection and, in-process, through AccessToken.find.
 */
function registerTokenExchange(provider: Provider): void {
  const params = ['subject_token', 'subject_token_type', 'audience', 'scope', 'requested_token_type', 'resource', 'actor_token', 'actor_token_type'];
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx: any, next: () => Promise<void>) => {
    const { client, params: p } = ctx.oidc;
    const fail = (error: string, description: string, status = 400) => {
      ctx.status = status;
      ctx.body = { error, error_description: description };
    };
    if (!p.subject_token || p.subject_token_type !== ACCESS_TOKEN_TYPE) return fail('invalid_request', 'subject_token of type access_token is required');
    if (p.requested_token_type && p.requested_token_type !== ACCESS_TOKEN_TYPE) return fail('invalid_request', 'only access tokens are issued');
    if (!p.audience) return fail('invalid_request', 'audience is required');
    if (String(p.audience).startsWith('https://refused.')) return fail('invalid_target', 'this audience is not served');
    const subject = await ctx.oidc.provider.AccessToken.find(p.subject_token);
    if (!subject || subject.isExpired || subject.clientId !== client.clientId) return fail('invalid_grant', 'subject_token is not an active access token of this client');
    const granted = new Set(String(subject.scope ?? '').split(' ').filter(Boolean));
    const scope = p.scope ? String(p.scope).split(' ').filter((s: string) => granted.has(s)).join(' ') : subject.scope;
    const token = new ctx.oidc.provider.AccessToken({
      accountId: subject.accountId,
      client,
      grantId: subject.grantId,
      scope: scope || undefined,
      gty: 'token-exchange',
      expiresWithSession: false,
    });
    token.setAudience(String(p.audience));
    const value = await token.save();
    ctx.body = { access_token: value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: token.expiration, scope: scope || undefined };
    await next();
  }, params);
}
