// Config, boot stage 3 of 3: the checked plain-data ConfigInput compiled into the runtime Config
// the stages use — claim rules into closures, route matches into specs, header templates into
// renderers, durations into milliseconds, secrets read from their files — then frozen. Requests
// only ever run what was compiled here.
//
// Rules, matches and templates are checked by the same code that compiles them (policy/rules.ts,
// routing/match.ts, identity/templates.ts), so their problems surface here, with key paths.
import { readFileSync } from 'node:fs';
import { compileRule, type CompiledRule } from '../policy/rules.js';
import { validateMatchSpec, type RouteMatchSpec } from '../routing/match.js';
import { compileHeaderTemplate, isValidHeaderName, type HeaderTemplate } from '../identity/templates.js';
import { parseDuration } from './durations.js';
import { childPath, type Issues } from './issues.js';
import { readOrigin, readUrl } from './semantic.js';
import { Value } from '@sinclair/typebox/value';
import type { Static } from '@sinclair/typebox';
import { AssertionSchema, type ConfigInput, type RouteInput } from './schema.js';


export interface RouteConfig {
  /** Stable name: used in logs, metrics labels and the 403 page. Unique. */
  name: string;
  match: RouteMatchSpec;
  /** Origin (and optional base path) of the upstream, http or https. */
  upstream: string;
  /** Proxy WebSocket upgrades on this route (default false: upgrades get 404). */
  websocket: boolean;
  /** `required` (default): a session is needed; `public`: proxied to anyone. */
  auth: 'required' | 'public';
  /** Also accept `Authorization: Bearer <JWT from the issuer>` (API clients). Default false. */
  bearer: boolean;
  /** Compiled claim rule; undefined = any signed-in user. */
  allow: CompiledRule | undefined;
  /** Extra identity headers from claim templates, in config order. */
  headers: ReadonlyArray<{ name: string; template: HeaderTemplate }>;
  /** X-Portcullis-Assertion, a short-lived signed JWT: undefined = off. `audience` defaults to the upstream's origin. */
  assertion: { audience: string; ttlSec: number } | undefined;
  /** `grafana`: Grafana auth.proxy headers (X-WEBAUTH-USER/-EMAIL/-NAME/-ROLE). */
  preset: 'grafana' | undefined;
  /** With preset grafana: Grafana role → rule; the first passing of Admin, Editor, Viewer is sent as X-WEBAUTH-ROLE. */
  grafanaRoles: ReadonlyArray<{ role: string; rule: CompiledRule }>;
  /** Send the session's access token as X-Forwarded-Access-Token. Default false. */
  passAccessToken: boolean;
  /** Send the session's access token as `Authorization: Bearer …` (replacing the client's). Default false. */
  passAuthorization: boolean;
  /** Remove the route's path prefix before forwarding (`/app/x` → `/x`). Default false. */
  stripPrefix: boolean;
  /** Upstream response timeout, ms. Default 30s. */
  timeoutMs: number;
}

export interface Config {
  listen: { host: string; port: number };
  /**
   * Honour X-Forwarded-* / X-Request-Id (and forward-auth's X-Forwarded-Uri) from the peer.
   * Default false: a client could forge them. `true` trusts every peer; a list of addresses/CIDRs
   * trusts only those (e.g. the ingress controller's pod range).
   */
  trustProxy: boolean | string[];
  workers: number | 'auto';
  /** External base URL, origin only, no trailing slash. The callback is publicUrl + /oauth2/callback. */
  publicUrl: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Audit lines (info level): `all` decisions (default), only `denials` (deny + unauthenticated), or `off`. */
  auditLog: 'all' | 'denials' | 'off';
  shutdownGracePeriodMs: number;
  /** Metrics listener; `metrics: false` disables it. Never on the public port. */
  metrics: { host: string; port: number } | null;
  /** Admin endpoints (/admin/sessions) on the metrics listener, behind a bearer token read from `tokenFile` at start; no file → no endpoints (404). */
  admin: { tokenFile: string | undefined; token: string | undefined };
  oidc: {
    issuer: string;
    clientId: string;
    clientSecret: string;
    tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post';
    /** Always contains `openid`. */
    scopes: string[];
    clockToleranceSec: number;
    /** Fetch userinfo at sign-in and merge its claims (its `sub` must equal the ID token's). */
    userinfo: boolean;
    /** ID token signature algorithms accepted; `none` and HMAC are never allowed. */
    idTokenSigningAlgs: string[];
    /** Timeout for each request to the IdP, ms. */
    timeoutMs: number;
    /** Accepted `aud` values of bearer JWTs (routes with bearer: true). Never "any audience". */
    bearerAudiences: string[];
    /**
     * `at+jwt`: a bearer JWT must be typed `at+jwt` (RFC 9068) — for IdPs that type their access
     * tokens, so nothing else they sign can pass. `any` (default): `JWT`, `at+jwt` or no typ, with the
     * claim checks that refuse ID and logout tokens (signin/idp.ts notAnAccessToken).
     */
    bearerTokenType: 'any' | 'at+jwt';
  };
  /** All identity headers of one request together stay under this many bytes (a huge groups claim is trimmed, visibly). */
  identityHeaderBudget: number;
  /** Non-ASCII in identity headers: `percent` (UTF-8 percent-encoding, default) or `rfc2047` encoded words. */
  identityHeaderEncoding: 'percent' | 'rfc2047';
  /** Signing of X-Portcullis-Assertion. */
  assertionSigning: { keysFile: string | undefined; algorithm: 'ES256' | 'RS256' | 'EdDSA' };
  session: {
    /** >= 32 bytes each. The first seals, all open (rotation). */
    secrets: string[];
    store: 'cookie' | 'redis';
    /** `configured`: a URL was given — with the cookie store, Redis then shares back-channel revocations between replicas. */
    redis: { url: string; keyPrefix: string; configured: boolean };
    idleTimeoutMs: number;
    absoluteTimeoutMs: number;
    cookieDomain: string | undefined;
    cookieName: string;
    /** Verified sessions kept in memory (LRU), so most requests neither decrypt nor call Redis. */
    cacheMaxEntries: number;
  };
  redirects: { allowedDomains: string[] };
  /** Origins (scheme://host[:port], normalised) whose pages may open WebSockets here besides the request's own and publicUrl's. */
  websocketOrigins: string[];
  /**
   * Cookies (besides Portcullis's own) never passed to upstreams — e.g. the IdP's session cookie
   * when IdP and apps share a host name. Exact names; a trailing `*` matches a prefix.
   */
  stripCookies: string[];
  /** Per client IP and minute, on /oauth2/start and on /oauth2/callback (each); 0 = off. Default 30. */
  rateLimit: { signIn: number };
  routes: RouteConfig[];
}

export interface CompileOptions {
  /** Reads `*File` secrets. Default: fs.readFileSync. */
  readFile?: (path: string) => string;
  /** Key paths already reported by the earlier checks (`within`: or below): not compiled, not reported again. */
  failed?: (path: string, within?: boolean) => boolean;
}

/** ConfigInput → frozen runtime Config, or the problems found while compiling. */
export function compileConfig(input: ConfigInput, opts: CompileOptions = {}): { config?: Config; issues: Issues } {
  const issues: Issues = [];
  const failed = opts.failed ?? (() => false);
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const issue = (path: string, message: string) => { if (!failed(path)) issues.push({ path, message }); };
  const urlOf = (s: string, o: { originOnly?: boolean } = {}) => { const r = readUrl(s, o); return 'url' in r ? r.url : s; };

  /** A secret file's text, or undefined with an issue. */
  const readSecretFile = (file: string, path: string): string | undefined => {
    if (failed(path)) return undefined;
    try { return readFile(file); } catch (err) {
      issue(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  /** A file holds one secret on its first non-empty line, as Kubernetes mounts it. */
  const firstLine = (file: string, path: string): string | undefined => {
    const text = readSecretFile(file, path);
    const first = text?.split(/\r?\n/).find((l) => l.trim() !== '')?.trim();
    if (text !== undefined && !first) issue(path, `${file} is empty`);
    return first;
  };

  const o = input.oidc;
  const clientSecret = o.clientSecretFile !== undefined ? firstLine(o.clientSecretFile, 'oidc.clientSecretFile') : o.clientSecret;

  const s = input.session;
  let secretsPath = 'session.secrets';
  let secrets = s.secrets ?? [];
  if (s.secretsFile !== undefined && s.secrets === undefined) {
    secretsPath = 'session.secretsFile';
    secrets = (readSecretFile(s.secretsFile, secretsPath) ?? '').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    if (secrets.length === 0) issue(secretsPath, 'at least one secret of 32 bytes or more is required (e.g. `openssl rand -base64 48`)');
  }
  secrets.forEach((secret, i) => {
    const bytes = Buffer.byteLength(secret);
    if (bytes < 32) issue(childPath(secretsPath, i), `is ${bytes} bytes; session secrets must be at least 32 bytes`);
  });

  let adminToken: string | undefined;
  if (input.admin.tokenFile !== undefined) {
    adminToken = firstLine(input.admin.tokenFile, 'admin.tokenFile');
    if (adminToken !== undefined && adminToken.length < 16) issue('admin.tokenFile', 'the admin token must be at least 16 characters (e.g. openssl rand -base64 32)');
  }

  const routes = input.routes.map((r, i) => compileRoute(r, childPath('routes', i), issues, failed));

  const config: Config = {
    listen: { ...input.listen },
    trustProxy: input.trustProxy,
    workers: input.workers,
    publicUrl: urlOf(input.publicUrl, { originOnly: true }),
    logLevel: input.logLevel as Config['logLevel'],
    auditLog: input.auditLog,
    shutdownGracePeriodMs: durationMs(input.shutdownGracePeriod),
    metrics: input.metrics === false ? null : { ...input.metrics },
    admin: { tokenFile: input.admin.tokenFile, token: adminToken },
    oidc: {
      issuer: urlOf(o.issuer),
      clientId: o.clientId,
      clientSecret: clientSecret ?? '',
      tokenEndpointAuthMethod: o.tokenEndpointAuthMethod,
      scopes: o.scopes.includes('openid') ? [...o.scopes] : ['openid', ...o.scopes],
      clockToleranceSec: Math.round(durationMs(o.clockTolerance) / 1000),
      userinfo: o.userinfo,
      idTokenSigningAlgs: [...o.idTokenSigningAlgs],
      timeoutMs: durationMs(o.timeout),
      bearerAudiences: [...o.bearerAudiences],
      bearerTokenType: o.bearerTokenType,
    },
    identityHeaderBudget: input.identityHeaderBudget,
    identityHeaderEncoding: input.identityHeaderEncoding,
    assertionSigning: { keysFile: input.assertionSigning.keysFile, algorithm: input.assertionSigning.algorithm },
    session: {
      secrets,
      store: s.store,
      // The URL is only used when given; the default names the usual local Redis for messages.
      redis: { url: s.redis.url ?? 'redis://127.0.0.1:6379', keyPrefix: s.redis.keyPrefix, configured: s.redis.url !== undefined },
      idleTimeoutMs: durationMs(s.idleTimeout),
      absoluteTimeoutMs: durationMs(s.absoluteTimeout),
      cookieDomain: s.cookieDomain,
      cookieName: s.cookieName,
      cacheMaxEntries: s.cacheMaxEntries,
    },
    redirects: { allowedDomains: [...input.redirects.allowedDomains] },
    websocketOrigins: input.websocketOrigins.map((w) => readOrigin(w) ?? w),
    stripCookies: [...input.stripCookies],
    rateLimit: { signIn: input.rateLimit.signIn },
    routes,
  };
  if (issues.length > 0) return { issues };
  return { config: deepFreeze(config), issues };
}

function compileRoute(r: RouteInput, path: string, issues: Issues, failed: (path: string, within?: boolean) => boolean): RouteConfig {
  const skip = failed(path);
  const issuesHere: Issues = skip ? [] : issues;
  const at = (key: string) => childPath(path, key);
  const rule = (raw: unknown, p: string): CompiledRule | undefined => (failed(p) ? undefined : compileRule(raw, p, issuesHere));
  const match = failed(at('match'), true) ? undefined : validateMatchSpec(r.match, at('match'), issuesHere);
  const headers: Array<{ name: string; template: HeaderTemplate }> = [];
  for (const [name, template] of Object.entries(r.headers ?? {})) {
    const hp = childPath(at('headers'), name);
    if (failed(hp)) continue;
    if (!isValidHeaderName(name)) { issuesHere.push({ path: hp, message: 'is not a valid HTTP header name' }); continue; }
    const t = compileHeaderTemplate(template, hp, issuesHere);
    if (t) headers.push({ name, template: t });
  }
  const grafanaRoles: Array<{ role: string; rule: CompiledRule }> = [];
  for (const role of ['Admin', 'Editor', 'Viewer'] as const) {
    const raw = r.grafanaRoles?.[role];
    const compiled = raw === undefined ? undefined : rule(raw, childPath(at('grafanaRoles'), role));
    if (compiled) grafanaRoles.push({ role, rule: compiled });
  }
  const upstream = readUrl(r.upstream);
  const a = r.assertion === true ? Value.Default(AssertionSchema, {}) as Static<typeof AssertionSchema> : r.assertion === false ? undefined : r.assertion;
  return {
    name: r.name,
    match: match ?? { path: '/' },
    upstream: 'url' in upstream ? upstream.url : r.upstream,
    websocket: r.websocket,
    auth: r.auth,
    bearer: r.bearer,
    allow: r.allow === undefined ? undefined : rule(r.allow, at('allow')),
    headers,
    assertion: a && {
      audience: a.audience ?? ('url' in upstream ? new URL(upstream.url).origin : ''),
      ttlSec: Math.round(durationMs(a.ttl) / 1000),
    },
    preset: r.preset,
    grafanaRoles,
    passAccessToken: r.passAccessToken,
    passAuthorization: r.passAuthorization,
    stripPrefix: r.stripPrefix,
    timeoutMs: durationMs(r.timeout),
  };
}

/** The schema let only well-formed durations through (and supplied the defaults). */
function durationMs(d: string): number {
  return parseDuration(d) ?? 0;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) if (typeof v !== 'function') deepFreeze(v);
  }
  return o;
}
