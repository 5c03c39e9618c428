// Boot stage 2: check the parsed YAML against the schema, gather EVERY problem with its key path,
// and produce the typed, defaulted, frozen Config the rest of Portcullis compiles from.
//
// Every key is documented here, where it is defined (and in the README's configuration reference).
import { compileRule, type CompiledRule } from '../policy/rules.js';
import { validateMatchSpec, type RouteMatchSpec } from '../routing/match.js';
import { compileHeaderTemplate, isValidHeaderName, type HeaderTemplate } from '../identity/templates.js';
import { parseDuration } from './durations.js';
import { isAddressOrCidr } from '../routing/trust.js';
import { parseRedisUrl } from '../session/redis-store.js';
import { childPath, suggest, type Issues } from './issues.js';

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

export const OIDC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const DEFAULT_ID_TOKEN_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The keys each section accepts (anything else is an "unknown key" error). The Helm chart's schema is checked against these. */
export const CONFIG_KEYS = {
  root: [
    'listen', 'trustProxy', 'workers', 'publicUrl', 'logLevel', 'shutdownGracePeriod', 'metrics',
    'oidc', 'session', 'redirects', 'routes', 'identityHeaderBudget', 'assertionSigning', 'rateLimit', 'auditLog', 'identityHeaderEncoding',
    'websocketOrigins', 'admin', 'stripCookies',
  ],
  oidc: [
    'issuer', 'clientId', 'clientSecret', 'clientSecretFile', 'tokenEndpointAuthMethod', 'scopes',
    'clockTolerance', 'userinfo', 'idTokenSigningAlgs', 'timeout', 'bearerAudiences', 'bearerTokenType',
  ],
  session: [
    'secrets', 'secretsFile', 'store', 'redis', 'idleTimeout', 'absoluteTimeout', 'cookieDomain', 'cookieName', 'cacheMaxEntries',
  ],
} as const satisfies Record<string, readonly string[]>;

export interface ValidateOptions {
  /** Reads `*File` secrets; defaults to fs.readFileSync in loadConfigFile. */
  readFile?: (path: string) => string;
}

type Obj = Record<string, unknown>;

/** The whole schema walk. Returns the frozen Config, or every issue found. */
export function validateConfig(raw: unknown, opts: ValidateOptions = {}): { config?: Config; issues: Issues } {
  const issues: Issues = [];
  const v = new Reader(issues, opts);
  const root = v.object(raw ?? {}, '', CONFIG_KEYS.root);
  if (!root) return { issues };

  const listen = v.object(root.listen ?? {}, 'listen', ['host', 'port']) ?? {};
  const publicUrl = v.url(root.publicUrl, 'publicUrl', { required: true, originOnly: true }) ?? 'http://localhost';
  const metricsRaw = root.metrics;
  let metrics: Config['metrics'] = { host: '0.0.0.0', port: 9090 };
  if (metricsRaw === false) metrics = null;
  else {
    const m = v.object(metricsRaw ?? {}, 'metrics', ['host', 'port']) ?? {};
    metrics = { host: v.string(m.host, 'metrics.host') ?? '0.0.0.0', port: v.port(m.port, 'metrics.port') ?? 9090 };
  }

  const oidcRaw = v.object(root.oidc, 'oidc', CONFIG_KEYS.oidc, true) ?? {};
  const clientSecret = v.secret(oidcRaw, 'oidc', 'clientSecret', 'clientSecretFile');
  const scopes = v.stringList(oidcRaw.scopes, 'oidc.scopes') ?? ['openid', 'email', 'profile'];
  if (!scopes.includes('openid')) scopes.unshift('openid');
  const algs = v.stringList(oidcRaw.idTokenSigningAlgs, 'oidc.idTokenSigningAlgs') ?? DEFAULT_ID_TOKEN_ALGS;
  algs.forEach((a, i) => {
    if (!OIDC_ALGS.includes(a)) v.issue(childPath('oidc.idTokenSigningAlgs', i), `"${a}" is not an accepted signature algorithm (${OIDC_ALGS.join(', ')}; "none" and HMAC are never accepted)${suggest(a, OIDC_ALGS)}`);
  });

  const sessionRaw = v.object(root.session, 'session', CONFIG_KEYS.session, true) ?? {};
  const secrets = v.secretList(sessionRaw, 'session');
  const store = v.enumOf(sessionRaw.store, 'session.store', ['cookie', 'redis'] as const) ?? 'cookie';
  const redisRaw = v.object(sessionRaw.redis ?? {}, 'session.redis', ['url', 'keyPrefix']) ?? {};
  const redisUrl = v.string(redisRaw.url, 'session.redis.url');
  if (store === 'redis' && !redisUrl) v.issue('session.redis.url', 'required when session.store is redis');
  if (redisUrl && !/^rediss?:\/\//.test(redisUrl)) v.issue('session.redis.url', 'must start with redis:// or rediss://');
  else if (redisUrl) {
    try { parseRedisUrl(redisUrl); } catch (err) { v.issue('session.redis.url', (err as Error).message); }
  }
  const idle = v.duration(sessionRaw.idleTimeout, 'session.idleTimeout') ?? 8 * 3600_000;
  const absolute = v.duration(sessionRaw.absoluteTimeout, 'session.absoluteTimeout') ?? 24 * 3600_000;
  if (idle > absolute) v.issue('session.idleTimeout', 'must not be longer than session.absoluteTimeout');
  const cookieDomain = v.string(sessionRaw.cookieDomain, 'session.cookieDomain');
  if (cookieDomain !== undefined && !/^\.?[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(cookieDomain)) v.issue('session.cookieDomain', `"${cookieDomain}" is not a domain like .example.com`);
  if (cookieDomain !== undefined) {
    const host = new URL(publicUrl).hostname;
    const bare = cookieDomain.replace(/^\./, '').toLowerCase();
    if (host !== bare && !host.endsWith(`.${bare}`)) v.issue('session.cookieDomain', `publicUrl's host ${host} is not under ${cookieDomain}; browsers would refuse the cookie`);
  }
  const cookieName = v.string(sessionRaw.cookieName, 'session.cookieName') ?? 'portcullis';
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(cookieName)) v.issue('session.cookieName', 'letters, digits, _ and - only (at most 40)');

  const redirectsRaw = v.object(root.redirects ?? {}, 'redirects', ['allowedDomains']) ?? {};
  const allowedDomains = v.stringList(redirectsRaw.allowedDomains, 'redirects.allowedDomains') ?? [];
  allowedDomains.forEach((d, i) => {
    if (!/^\.?[a-z0-9-]+(\.[a-z0-9-]+)*$/i.test(d)) v.issue(childPath('redirects.allowedDomains', i), `"${d}" is not a host name (use .example.com for a domain and its subdomains)`);
  });

  const stripCookies: string[] = [];
  (v.stringList(root.stripCookies, 'stripCookies') ?? []).forEach((c, i) => {
    if (!/^[!#$%&'+.^_`|~0-9A-Za-z-]+\*?$/.test(c)) v.issue(childPath('stripCookies', i), `"${c}" is not a cookie name (a trailing * matches names beginning with the rest)`);
    else stripCookies.push(c);
  });
  const websocketOrigins: string[] = [];
  (v.stringList(root.websocketOrigins, 'websocketOrigins') ?? []).forEach((o, i) => {
    let u: URL | undefined;
    try { u = new URL(o); } catch { /* below */ }
    if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || u.pathname !== '/' || u.search || u.hash || /[?#]$/.test(o) || o.includes('*')) {
      v.issue(childPath('websocketOrigins', i), `"${o}" is not an origin like https://app.example.com (scheme, host and port only; no path, no wildcard)`);
    } else websocketOrigins.push(u.origin);
  });

  const rateLimitRaw = v.object(root.rateLimit ?? {}, 'rateLimit', ['signIn']) ?? {};
  const signInRate = v.int(rateLimitRaw.signIn, 'rateLimit.signIn', 0, 100_000) ?? 30;

  const routes = v.routes(root.routes);

  const workersRaw = root.workers;
  let workers: number | 'auto' = 1;
  if (workersRaw === 'auto') workers = 'auto';
  else if (workersRaw !== undefined) workers = v.int(workersRaw, 'workers', 1, 64) ?? 1;

  const config: Config = {
    listen: { host: v.string(listen.host, 'listen.host') ?? '0.0.0.0', port: v.port(listen.port, 'listen.port') ?? 8080 },
    trustProxy: Array.isArray(root.trustProxy) ? v.addressList(root.trustProxy, 'trustProxy') : (v.bool(root.trustProxy, 'trustProxy') ?? false),
    workers,
    publicUrl,
    logLevel: v.enumOf(root.logLevel, 'logLevel', LOG_LEVELS) ?? 'info',
    auditLog: v.enumOf(root.auditLog, 'auditLog', ['all', 'denials', 'off'] as const) ?? 'all',
    shutdownGracePeriodMs: v.duration(root.shutdownGracePeriod, 'shutdownGracePeriod') ?? 25_000,
    metrics,
    admin: (() => {
      const a = v.object(root.admin ?? {}, 'admin', ['tokenFile']) ?? {};
      if (a.tokenFile === undefined) return { tokenFile: undefined, token: undefined };
      const token = v.secret({ tokenFile: a.tokenFile }, 'admin', 'token', 'tokenFile');
      if (token !== undefined && token.length < 16) v.issue('admin.tokenFile', 'the admin token must be at least 16 characters (e.g. openssl rand -base64 32)');
      if (metricsRaw === false) v.issue('admin.tokenFile', 'the admin endpoints are served on the metrics listener, which metrics: false turns off');
      return { tokenFile: a.tokenFile as string, token };
    })(),
    oidc: {
      issuer: v.url(oidcRaw.issuer, 'oidc.issuer', { required: true }) ?? '',
      clientId: v.string(oidcRaw.clientId, 'oidc.clientId', { required: true }) ?? '',
      clientSecret: clientSecret ?? '',
      tokenEndpointAuthMethod: v.enumOf(oidcRaw.tokenEndpointAuthMethod, 'oidc.tokenEndpointAuthMethod', ['client_secret_basic', 'client_secret_post'] as const) ?? 'client_secret_basic',
      scopes,
      clockToleranceSec: Math.round((v.duration(oidcRaw.clockTolerance, 'oidc.clockTolerance') ?? 30_000) / 1000),
      userinfo: v.bool(oidcRaw.userinfo, 'oidc.userinfo') ?? false,
      idTokenSigningAlgs: algs,
      timeoutMs: v.duration(oidcRaw.timeout, 'oidc.timeout') ?? 10_000,
      bearerAudiences: v.stringList(oidcRaw.bearerAudiences, 'oidc.bearerAudiences') ?? [],
      bearerTokenType: v.enumOf(oidcRaw.bearerTokenType, 'oidc.bearerTokenType', ['any', 'at+jwt'] as const) ?? 'any',
    },
    identityHeaderBudget: v.int(root.identityHeaderBudget, 'identityHeaderBudget', 1024, 65536) ?? 8192,
    identityHeaderEncoding: v.enumOf(root.identityHeaderEncoding, 'identityHeaderEncoding', ['percent', 'rfc2047'] as const) ?? 'percent',
    assertionSigning: (() => {
      const a = v.object(root.assertionSigning ?? {}, 'assertionSigning', ['keysFile', 'algorithm']) ?? {};
      return {
        keysFile: v.string(a.keysFile, 'assertionSigning.keysFile'),
        algorithm: v.enumOf(a.algorithm, 'assertionSigning.algorithm', ['ES256', 'RS256', 'EdDSA'] as const) ?? 'ES256',
      };
    })(),
    session: {
      secrets: secrets ?? [],
      store,
      redis: { url: redisUrl ?? 'redis://127.0.0.1:6379', keyPrefix: v.string(redisRaw.keyPrefix, 'session.redis.keyPrefix') ?? 'portcullis:', configured: redisUrl !== undefined },
      idleTimeoutMs: idle,
      absoluteTimeoutMs: absolute,
      cookieDomain,
      cookieName,
      cacheMaxEntries: v.int(sessionRaw.cacheMaxEntries, 'session.cacheMaxEntries', 0, 10_000_000) ?? 100_000,
    },
    redirects: { allowedDomains },
    websocketOrigins,
    stripCookies,
    rateLimit: { signIn: signInRate },
    routes,
  };
  // A route on another host only works when the session cookie reaches it: same host as publicUrl,
  // or under session.cookieDomain. Otherwise every sign-in would loop.
  const pubHost = new URL(publicUrl).hostname.toLowerCase();
  routes.forEach((r, i) => {
    const h = r.match.host?.replace(/^\*\./, '');
    if (!h || h === pubHost) return;
    const dom = cookieDomain?.replace(/^\./, '').toLowerCase();
    if (!dom || (h !== dom && !h.endsWith(`.${dom}`))) {
      v.issue(`routes[${i}].match.host`, `${r.match.host} is not publicUrl's host (${pubHost}); set session.cookieDomain to a parent domain of both so the session cookie reaches it`);
    }
  });
  routes.forEach((r, i) => {
    if (r.bearer && config.oidc.bearerAudiences.length === 0) {
      v.issue(`routes[${i}].bearer`, 'bearer: true needs oidc.bearerAudiences (the `aud` values API tokens must carry; never "any audience")');
    }
  });
  if (metrics && metrics.port === config.listen.port && metrics.host === config.listen.host) {
    v.issue('metrics.port', 'must differ from listen.port: /metrics is never served on the public port');
  }
  if (issues.length > 0) return { issues };
  return { config: deepFreeze(config), issues };
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) if (typeof v !== 'function') deepFreeze(v);
  }
  return o;
}

/** Small typed readers that record an issue and return undefined instead of throwing. */
class Reader {
  constructor(private readonly issues: Issues, private readonly opts: ValidateOptions) {}

  issue(path: string, message: string): void { this.issues.push({ path, message }); }

  object(raw: unknown, path: string, known: readonly string[], required = false): Obj | undefined {
    if (raw === undefined || raw === null) {
      if (required) this.issue(path, 'is required');
      return undefined;
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      this.issue(path, `must be a mapping (got ${describe(raw)})`);
      return undefined;
    }
    for (const key of Object.keys(raw)) {
      if (!known.includes(key)) this.issue(childPath(path, key), `unknown key${suggest(key, known)}`);
    }
    return raw as Obj;
  }

  string(raw: unknown, path: string, o: { required?: boolean } = {}): string | undefined {
    if (raw === undefined || raw === null) {
      if (o.required) this.issue(path, 'is required');
      return undefined;
    }
    if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
    if (typeof raw !== 'string') { this.issue(path, `must be a string (got ${describe(raw)})`); return undefined; }
    if (raw === '') { this.issue(path, 'must not be empty'); return undefined; }
    return raw;
  }

  bool(raw: unknown, path: string): boolean | undefined {
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === 'false') return raw === 'true'; // from ${VAR}
    this.issue(path, `must be true or false (got ${describe(raw)})`);
    return undefined;
  }

  int(raw: unknown, path: string, min: number, max: number): number | undefined {
    if (raw === undefined || raw === null) return undefined;
    const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      this.issue(path, `must be a whole number from ${min} to ${max} (got ${describe(raw)})`);
      return undefined;
    }
    return n;
  }

  port(raw: unknown, path: string): number | undefined { return this.int(raw, path, 0, 65535); }

  duration(raw: unknown, path: string): number | undefined {
    if (raw === undefined || raw === null) return undefined;
    const ms = typeof raw === 'string' ? parseDuration(raw) : undefined;
    if (ms === undefined) this.issue(path, `must be a duration like 30s, 15m, 8h or 7d (got ${describe(raw)})`);
    return ms;
  }

  enumOf<T extends string>(raw: unknown, path: string, values: readonly T[]): T | undefined {
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw === 'string' && (values as readonly string[]).includes(raw)) return raw as T;
    this.issue(path, `must be one of ${values.join(', ')} (got ${describe(raw)})${typeof raw === 'string' ? suggest(raw, values) : ''}`);
    return undefined;
  }

  stringList(raw: unknown, path: string): string[] | undefined {
    if (raw === undefined || raw === null) return undefined;
    if (!Array.isArray(raw)) { this.issue(path, `must be a list (got ${describe(raw)})`); return undefined; }
    const out: string[] = [];
    raw.forEach((item, i) => { const s = this.string(item, childPath(path, i), { required: true }); if (s !== undefined) out.push(s); });
    return out;
  }

  addressList(raw: unknown, path: string): string[] {
    const list = this.stringList(raw, path) ?? [];
    list.forEach((s, i) => { if (!isAddressOrCidr(s)) this.issue(childPath(path, i), `"${s}" is not an IP address or CIDR range like 10.0.0.0/8`); });
    return list;
  }

  url(raw: unknown, path: string, o: { required?: boolean; originOnly?: boolean } = {}): string | undefined {
    const s = this.string(raw, path, o);
    if (s === undefined) return undefined;
    let u: URL;
    try { u = new URL(s); } catch { this.issue(path, `"${s}" is not an absolute URL`); return undefined; }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') { this.issue(path, 'must be an http(s) URL'); return undefined; }
    if (u.username || u.password || u.search || u.hash) { this.issue(path, 'must not contain credentials, a query or a fragment'); return undefined; }
    if (o.originOnly) {
      if (u.pathname !== '/') this.issue(path, 'must be an origin only (scheme://host[:port]); Portcullis serves its endpoints under /oauth2/ at the root');
      return u.origin;
    }
    return s.replace(/\/+$/, '');
  }

  private readSecretFile(file: string, path: string): string | undefined {
    if (!this.opts.readFile) { this.issue(path, 'secret files are not readable here'); return undefined; }
    try { return this.opts.readFile(file); } catch (err) {
      this.issue(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  }

  /** `key` or `keyFile`, exactly one (a file holds the secret on its first line, as Kubernetes mounts it). */
  secret(o: Obj, parent: string, key: string, fileKey: string): string | undefined {
    const inline = o[key];
    const file = o[fileKey];
    if (inline !== undefined && file !== undefined) { this.issue(childPath(parent, key), `set ${key} or ${fileKey}, not both`); return undefined; }
    if (file !== undefined) {
      const f = this.string(file, childPath(parent, fileKey));
      if (f === undefined) return undefined;
      const text = this.readSecretFile(f, childPath(parent, fileKey));
      const first = text?.split(/\r?\n/).find((l) => l.trim() !== '')?.trim();
      if (text !== undefined && !first) this.issue(childPath(parent, fileKey), `${f} is empty`);
      return first;
    }
    return this.string(inline, childPath(parent, key), { required: true });
  }

  /** session.secrets or session.secretsFile (one secret a line): each >= 32 bytes, first one seals. */
  secretList(o: Obj, parent: string): string[] | undefined {
    let list: string[] | undefined;
    let path = childPath(parent, 'secrets');
    if (o.secrets !== undefined && o.secretsFile !== undefined) { this.issue(path, 'set secrets or secretsFile, not both'); return undefined; }
    if (o.secretsFile !== undefined) {
      path = childPath(parent, 'secretsFile');
      const f = this.string(o.secretsFile, path);
      const text = f === undefined ? undefined : this.readSecretFile(f, path);
      if (text === undefined) return undefined;
      list = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    } else {
      list = this.stringList(o.secrets, path);
    }
    if (!list || list.length === 0) { this.issue(path, 'at least one secret of 32 bytes or more is required (e.g. `openssl rand -base64 48`)'); return undefined; }
    list.forEach((s, i) => {
      if (Buffer.byteLength(s) < 32) this.issue(childPath(path, i), `is ${Buffer.byteLength(s)} bytes; session secrets must be at least 32 bytes`);
    });
    return list;
  }

  routes(raw: unknown): RouteConfig[] {
    if (raw === undefined || raw === null) { this.issue('routes', 'at least one route is required'); return []; }
    if (!Array.isArray(raw)) { this.issue('routes', `must be a list (got ${describe(raw)})`); return []; }
    if (raw.length === 0) this.issue('routes', 'at least one route is required');
    const names = new Set<string>();
    const out: RouteConfig[] = [];
    raw.forEach((r, i) => {
      const path = childPath('routes', i);
      const o = this.object(r, path, [
        'name', 'match', 'upstream', 'websocket', 'auth', 'bearer', 'allow', 'headers', 'assertion', 'stripPrefix', 'timeout',
        'preset', 'grafanaRoles', 'passAccessToken', 'passAuthorization',
      ], true);
      if (!o) return;
      const name = this.string(o.name, `${path}.name`, { required: true }) ?? `route-${i}`;
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) this.issue(`${path}.name`, 'letters, digits, _ . - only (it is a metrics label)');
      if (names.has(name)) this.issue(`${path}.name`, `duplicate route name "${name}"`);
      names.add(name);
      const match = o.match === undefined ? { path: '/' } : validateMatchSpec(o.match, `${path}.match`, this.issues);
      const upstream = this.url(o.upstream, `${path}.upstream`, { required: true });
      const auth = this.enumOf(o.auth, `${path}.auth`, ['required', 'public'] as const) ?? 'required';
      const allow = o.allow === undefined ? undefined : compileRule(o.allow, `${path}.allow`, this.issues);
      if (auth === 'public' && o.allow !== undefined) this.issue(`${path}.allow`, 'a public route lets everyone through; remove allow or set auth: required');
      const headers: Array<{ name: string; template: HeaderTemplate }> = [];
      if (o.headers !== undefined) {
        if (!o.headers || typeof o.headers !== 'object' || Array.isArray(o.headers)) this.issue(`${path}.headers`, 'must be a mapping of header name to template');
        else {
          for (const [hn, tv] of Object.entries(o.headers as Obj)) {
            const hp = childPath(`${path}.headers`, hn);
            if (!isValidHeaderName(hn)) { this.issue(hp, 'is not a valid HTTP header name'); continue; }
            const t = typeof tv === 'string' ? compileHeaderTemplate(tv, hp, this.issues) : (this.issue(hp, 'must be a template string like "{email}"'), undefined);
            if (t) headers.push({ name: hn, template: t });
          }
        }
      }
      const preset = this.enumOf(o.preset, `${path}.preset`, ['grafana'] as const);
      const grafanaRoles: Array<{ role: string; rule: CompiledRule }> = [];
      if (o.grafanaRoles !== undefined) {
        if (preset !== 'grafana') this.issue(`${path}.grafanaRoles`, 'only with preset: grafana');
        const roles = this.object(o.grafanaRoles, `${path}.grafanaRoles`, ['Admin', 'Editor', 'Viewer']) ?? {};
        for (const role of ['Admin', 'Editor', 'Viewer']) {
          if (roles[role] === undefined) continue;
          const rule = compileRule(roles[role], childPath(`${path}.grafanaRoles`, role), this.issues);
          if (rule) grafanaRoles.push({ role, rule });
        }
      }
      let assertion: RouteConfig['assertion'];
      if (o.assertion === true || (o.assertion && typeof o.assertion === 'object')) {
        const a = o.assertion === true ? {} : this.object(o.assertion, `${path}.assertion`, ['audience', 'ttl']) ?? {};
        const ttl = this.duration(a.ttl, `${path}.assertion.ttl`) ?? 120_000;
        if (ttl < 10_000 || ttl > 600_000) this.issue(`${path}.assertion.ttl`, 'must be between 10s and 10m (a short-lived assertion)');
        assertion = { audience: this.string(a.audience, `${path}.assertion.audience`) ?? (upstream ? new URL(upstream).origin : ''), ttlSec: Math.round(ttl / 1000) };
      } else if (o.assertion !== undefined && o.assertion !== false) {
        this.issue(`${path}.assertion`, 'must be true, false, or { audience, ttl }');
      }
      out.push({
        name,
        match: match ?? { path: '/' },
        upstream: upstream ?? 'http://127.0.0.1',
        websocket: this.bool(o.websocket, `${path}.websocket`) ?? false,
        auth,
        bearer: this.bool(o.bearer, `${path}.bearer`) ?? false,
        allow,
        headers,
        assertion,
        preset,
        grafanaRoles,
        passAccessToken: this.bool(o.passAccessToken, `${path}.passAccessToken`) ?? false,
        passAuthorization: this.bool(o.passAuthorization, `${path}.passAuthorization`) ?? false,
        stripPrefix: this.bool(o.stripPrefix, `${path}.stripPrefix`) ?? false,
        timeoutMs: this.duration(o.timeout, `${path}.timeout`) ?? 30_000,
      });
    });
    return out;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}
