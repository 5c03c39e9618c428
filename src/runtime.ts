// Boot stage 3: compile the validated Config into the runtime the door runs — route matcher,
// header plan, session manager, sign-in flow — once. Requests only run what is built here.
// The route table is one object so hot reload can swap routes, rules and headers atomically.
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config, RouteConfig } from './config/index.js';
import { compileMatcher, type RouteMatcher } from './routing/match.js';
import { IdentityHeaderPlan, type HeaderBag, type Principal } from './identity/headers.js';
import type { AssertionSigner } from './identity/assertion.js';
import type { HeaderEncoding } from './identity/templates.js';
import { SessionCodec } from './session/codec.js';
import { cookieSettings, makeCookieStripper } from './session/cookies.js';
import { SessionManager, type ActiveSession } from './session/sessions.js';
import { RevocationList } from './session/revocation.js';
import { PortcullisError } from './errors.js';
import { LRUCache } from 'lru-cache';
import { CookieStore, type SessionStore } from './session/store.js';
import { RedisStore } from './session/redis-store.js';
import { TransactionCookies } from './signin/transactions.js';
import { IdentityProvider, randomSignInChecks } from './signin/idp.js';
import { errors } from './errors.js';
import type { RedirectPolicy } from './signin/redirects.js';
import type { Metrics, Tally } from './metrics.js';
import { compilePeerTrust, type PeerTrust } from './routing/trust.js';

export interface RouteTable {
  readonly routes: readonly RouteConfig[];
  readonly matcher: RouteMatcher;
  readonly headers: IdentityHeaderPlan;
}

/** Which table each route object was compiled into: a request keeps its route's table across a hot reload. */
const TABLE_OF_ROUTE = new WeakMap<RouteConfig, RouteTable>();

export function compileRouteTable(routes: readonly RouteConfig[], budget = 8192, onTrim?: (route: string, sub: unknown) => void, encoding: HeaderEncoding = 'percent'): RouteTable {
  const table: RouteTable = Object.freeze({ routes, matcher: compileMatcher(routes.map((r) => r.match)), headers: new IdentityHeaderPlan(routes, budget, onTrim, encoding) });
  for (const r of routes) TABLE_OF_ROUTE.set(r, table);
  return table;
}

/** Refresh this long before the access/ID token expires. */
export const REFRESH_MARGIN_MS = 60_000;

/** How often each replica pulls the others' back-channel revocations from Redis (the delay bound). */
export const REVOCATION_SYNC_MS = 2_000;

/** Revocations shared through one Redis hash (field = sid:/sub: key, value = when); old fields pruned on read. */
function redisRevocations(store: RedisStore, retainMs: number, now: () => number) {
  const key = `${store.keyPrefix}revoked`;
  return {
    async add(entries: Record<string, number>): Promise<void> {
      if (Object.keys(entries).length) await store.client.hset(key, entries);
    },
    async all(): Promise<Record<string, number>> {
      if (!store.healthy()) return {};
      const raw = await store.client.hgetall(key);
      const cutoff = now() - retainMs;
      const out: Record<string, number> = {};
      const stale: string[] = [];
      for (const [k, v] of Object.entries(raw)) {
        const at = Number(v);
        if (at < cutoff) stale.push(k); else out[k] = at;
      }
      if (stale.length) await store.client.hdel(key, ...stale);
      return out;
    },
  };
}

/**
 * Headers some frameworks (Symfony, IIS, Spring) obey to rewrite the request path or method. From
 * a client they would let the upstream see another path than the one Portcullis authorized, so
 * they are passed on only from trusted proxies.
 */
const ROUTING_OVERRIDES = ['x-original-url', 'x-rewrite-url', 'x-forwarded-uri', 'x-forwarded-prefix', 'x-forwarded-path', 'x-original-uri', 'x-http-method-override', 'x-http-method', 'x-method-override', 'x-forwarded-method'];

/** How often live WebSockets are checked against absolute timeouts and shared revocations. */
export const CONNECTION_SWEEP_MS = 5_000;

export type RefreshOutcome =
  | { kind: 'refreshed'; session: ActiveSession; setCookies: string[] }
  | { kind: 'ended'; setCookies: string[] }
  | { kind: 'kept' };

export interface RuntimeOptions {
  now?: () => number;
  store?: SessionStore;
  /** Told after this process ended sessions by back-channel logout (cluster workers pass it on to their siblings). */
  onSessionsRevoked?: (r: { sid?: string; sub?: string }) => void;
}

export class Runtime {
  table: RouteTable;
  readonly sessions: SessionManager;
  readonly txns: TransactionCookies;
  readonly idp: IdentityProvider;
  readonly redirects: RedirectPolicy;
  readonly publicHost: string;
  readonly stripOwnCookies: (header: string | undefined) => string | undefined;
  /** Which decisions get an audit line (config auditLog). */
  readonly audit: { allows: boolean; denials: boolean };
  private readonly publicProto: string;
  /** Whether a peer may tell us about the original request (X-Forwarded-*). */
  readonly peerTrusted: PeerTrust;
  /** Live WebSocket connections and the session each belongs to, for cut-off when the session ends. */
  private readonly connections = new Map<Duplex, ActiveSession>();
  private sweepTimer: NodeJS.Timeout | undefined;
  readonly revocations: RevocationList;
  readonly now: () => number;
  /** In-flight refreshes by session id: concurrent requests of one session share one refresh. */
  private readonly refreshing = new Map<string, Promise<RefreshOutcome>>();
  /** After a failed (IdP unreachable) refresh, when to try again, by session id. */
  private readonly refreshRetryAt = new LRUCache<string, number>({ max: 100_000 });
  /** Logout token ids already used (replay protection). */
  readonly seenLogoutTokens = new LRUCache<string, true>({ max: 100_000, ttl: 15 * 60_000 });
  private readonly trimWarned = new LRUCache<string, true>({ max: 10_000, ttl: 3600_000 });
  /** Signs X-Portcullis-Assertion; created at boot when a route asks for assertions. */
  assertions: AssertionSigner | undefined;
  /** Redis: the session store, or (cookie store with a Redis URL) only shared revocations. */
  readonly redis: RedisStore | undefined;
  /** Set on SIGTERM: /readyz answers 503 while in-flight requests finish. */
  draining = false;
  private readonly onSessionsRevoked: RuntimeOptions['onSessionsRevoked'];

  constructor(readonly config: Config, readonly metrics: Metrics, readonly log: FastifyBaseLogger, opts: RuntimeOptions = {}) {
    const now = opts.now ?? Date.now;
    this.now = now;
    const codec = new SessionCodec(config.session.secrets);
    const cookies = cookieSettings(config.publicUrl, config.session.cookieName, config.session.cookieDomain);
    const sessionLog = log.child({ component: 'session-store' });
    // The session store, or — cookie sessions with a Redis URL — only the place where replicas share
    // revocations and logout-token ids.
    this.redis = config.session.store === 'redis' || config.session.redis.configured
      ? new RedisStore(codec, cookies.session, { url: config.session.redis.url, keyPrefix: config.session.redis.keyPrefix, ttlMs: config.session.absoluteTimeoutMs }, sessionLog)
      : undefined;
    this.revocations = new RevocationList(config.session.absoluteTimeoutMs, now, this.redis ? redisRevocations(this.redis, config.session.absoluteTimeoutMs, now) : undefined,
      (err) => log.debug({ err: err instanceof Error ? err.message : String(err) }, 'revocation sync failed'));
    this.revocations.startSync(REVOCATION_SYNC_MS);
    this.onSessionsRevoked = opts.onSessionsRevoked;
    this.table = this.compileRoutes(config.routes);
    const store = opts.store ?? (config.session.store === 'redis' ? this.redis! : new CookieStore(codec, cookies.session));
    const hits = metrics.cacheHits.tally();
    const misses = metrics.cacheMisses.tally();
    this.sessions = new SessionManager(cookies, store, {
      idleTimeoutMs: config.session.idleTimeoutMs,
      absoluteTimeoutMs: config.session.absoluteTimeoutMs,
      cacheMaxEntries: config.session.cacheMaxEntries,
      keepAccessToken: config.routes.some((r) => r.passAccessToken || r.passAuthorization),
    }, now, (s) => this.revocations.isRevoked(s), (hit) => { (hit ? hits : misses).n += 1; });
    this.txns = new TransactionCookies(codec, cookies, now);
    this.idp = new IdentityProvider({
      ...config.oidc,
      redirectUri: `${config.publicUrl}/oauth2/callback`,
    }, {
      now,
      log,
      observe: (endpoint, seconds, ok) => metrics.idpDuration.observe({ endpoint, outcome: ok ? 'ok' : 'error' }, seconds),
    });
    const pub = new URL(config.publicUrl);
    this.peerTrusted = compilePeerTrust(config.trustProxy);
    this.publicHost = pub.host;
    this.publicProto = pub.protocol.slice(0, -1);
    this.redirects = { origin: pub.origin, allowedDomains: config.redirects.allowedDomains };
    this.stripOwnCookies = makeCookieStripper(config.session.cookieName);
    this.audit = { allows: config.auditLog === 'all', denials: config.auditLog !== 'off' };
  }

  private compileRoutes(routes: readonly RouteConfig[]): RouteTable {
    return compileRouteTable(routes, this.config.identityHeaderBudget, (route, sub) => {
      // One warning per user and route an hour: a user in 600 groups would otherwise flood the log.
      const key = `${route}\0${String(sub)}`;
      if (this.trimWarned.has(key)) return;
      this.trimWarned.set(key, true);
      this.log.warn({ route, sub }, 'identity headers over identityHeaderBudget: X-Forwarded-Groups trimmed (X-Forwarded-Groups-Truncated: true)');
    }, this.config.identityHeaderEncoding);
  }

  /**
   * Hot reload: compiles the new routes (matchers, rules, header templates) and swaps them in with
   * one assignment. A request already past route matching keeps the table its route came from.
   */
  replaceRoutes(routes: readonly RouteConfig[]): RouteTable {
    this.table = this.compileRoutes(routes);
    return this.table;
  }

  /** The Host the client asked for (X-Forwarded-Host only from a trusted proxy). */
  hostOf(request: FastifyRequest): string | undefined {
    return this.peerTrusted(request.socket.remoteAddress) ? request.host : request.headers.host;
  }

  /**
   * hostOf for a raw request (WebSocket upgrades, the hot path). Like Fastify's `request.host`, the
   * LAST X-Forwarded-Host entry counts: it is the one the trusted proxy in front of us wrote; earlier
   * entries come from further out, ultimately from the client.
   */
  hostOfRaw(req: IncomingMessage): string | undefined {
    if (this.peerTrusted(req.socket.remoteAddress)) {
      const xf = lastEntry(req.headers['x-forwarded-host']);
      if (xf) return xf;
    }
    return req.headers.host;
  }

  /** The scheme for a raw request: the last X-Forwarded-Proto entry from a trusted peer, else publicUrl's. */
  protocolOfRaw(req: IncomingMessage): string {
    return (this.peerTrusted(req.socket.remoteAddress) && lastEntry(req.headers['x-forwarded-proto'])) || this.publicProto;
  }

  /** scheme://host of the request as the browser sees it. */
  originOf(request: FastifyRequest): string {
    const proto = this.peerTrusted(request.socket.remoteAddress) ? request.protocol : this.publicProto;
    return `${proto}://${this.hostOf(request) ?? this.publicHost}`;
  }

  private readonly decisionTallies = new Map<string, Record<'allow' | 'deny' | 'unauthenticated', Tally>>();
  /** portcullis_auth_decisions_total (tallies resolved once per route: no label work per request). */
  countDecision(route: string, decision: 'allow' | 'deny' | 'unauthenticated'): void {
    let t = this.decisionTallies.get(route);
    if (!t) {
      const d = this.metrics.decisions;
      this.decisionTallies.set(route, (t = { allow: d.tally(route, 'allow'), deny: d.tally(route, 'deny'), unauthenticated: d.tally(route, 'unauthenticated') }));
    }
    t[decision].n += 1;
  }

  /** The identity headers of a route (from the table the route came from, even after a reload). */
  identityHeaders(route: RouteConfig, who: Principal, out: HeaderBag): void {
    (TABLE_OF_ROUTE.get(route) ?? this.table).headers.inject(route.name, who, out);
  }

  /** Request headers as the upstream will see them: no client-set identity, no Portcullis cookies, our identity. */
  rewriteUpstreamHeaders(route: RouteConfig, who: Principal | undefined, h: HeaderBag, request: FastifyRequest | undefined, assertion?: string): void {
    const table = TABLE_OF_ROUTE.get(route) ?? this.table;
    // Callers stripped with the table current when the request arrived; a hot reload in between may
    // have brought new protected names, so strip again with the table this route comes from.
    table.headers.strip(h);
    const cookie = this.stripOwnCookies(h.cookie as string | undefined);
    if (cookie === undefined) delete h.cookie; else h.cookie = cookie;
    if (who) table.headers.inject(route.name, who, h);
    if (assertion) h['x-portcullis-assertion'] = assertion;
    if (request) {
      const trusted = this.peerTrusted(request.socket.remoteAddress);
      const prior = trusted ? h['x-forwarded-for'] : undefined;
      h['x-forwarded-for'] = prior ? `${prior}, ${request.socket.remoteAddress}` : request.socket.remoteAddress;
      h['x-forwarded-proto'] = trusted ? request.protocol : this.publicProto;
      h['x-forwarded-host'] = this.hostOf(request) ?? this.publicHost;
      h['x-request-id'] = request.id;
      if (!trusted) for (const name of ROUTING_OVERRIDES) delete h[name];
    } else {
      // WebSocket upgrades: forwarding headers are only passed on from a trusted peer.
      delete h['x-forwarded-for'];
      delete h['x-forwarded-host'];
      delete h['x-forwarded-proto'];
      for (const name of ROUTING_OVERRIDES) delete h[name];
    }
  }

  /** Starts a sign-in: transaction cookie + the IdP authorization URL. */
  async beginSignIn(cookies: Record<string, string | undefined>, returnTo: string): Promise<{ location: string; setCookies: string[] }> {
    if (!this.idp.ready) {
      this.idp.start();
      throw errors.idpUnavailable(new Error(this.idp.lastError ?? 'discovery pending'));
    }
    const checks = randomSignInChecks();
    const { txn, setCookies } = this.txns.begin(cookies, { ...checks, returnTo });
    const location = await this.idp.authorizationUrl({ state: txn.state, nonce: txn.nonce, verifier: txn.verifier });
    return { location, setCookies };
  }

  /**
   * Refreshes a session's tokens shortly before they expire. Single-flight per session; the
   * refreshed ID token must name the same iss/sub/aud (checked in idp.ts). `invalid_grant` or a
   * claims mismatch ends the session; an unreachable IdP keeps it (until idle/absolute timeout)
   * and retries after 30 s.
   */
  refreshIfDue(s: ActiveSession, cookies: Record<string, string | undefined>): Promise<RefreshOutcome> | undefined {
    if (!this.isRefreshDue(s)) return undefined;
    let p = this.refreshing.get(s.sid);
    if (!p) {
      p = this.refresh(s, cookies).finally(() => this.refreshing.delete(s.sid));
      this.refreshing.set(s.sid, p);
    }
    return p;
  }

  /** Whether this session's tokens should be refreshed now (and no retry back-off is running). */
  isRefreshDue(s: ActiveSession): boolean {
    if (!s.hasRefreshToken || s.tokenExpiresAt === undefined) return false;
    const now = this.now();
    if (now < s.tokenExpiresAt - REFRESH_MARGIN_MS) return false;
    const retryAt = this.refreshRetryAt.get(s.sid);
    return retryAt === undefined || now >= retryAt;
  }

  private async refresh(s: ActiveSession, cookies: Record<string, string | undefined>): Promise<RefreshOutcome> {
    // Across replicas (Redis store): one of them refreshes, the others wait for its result.
    if (this.sessions.storeKind === 'redis' && this.redis) {
      const lock = `lock:refresh:${s.sid}`;
      const mine = await this.redis.setIfAbsent(lock, String(process.pid), 15_000);
      if (mine) {
        try {
          return await this.refreshNow(s, cookies);
        } finally {
          await this.redis.del(lock).catch(() => {});
        }
      }
      {
        for (let i = 0; i < 25; i++) {
          await new Promise((r) => setTimeout(r, 200));
          const fresh = await this.sessions.reload(s, cookies);
          if (!fresh) return { kind: 'ended', setCookies: this.sessions.expireHeaders(cookies) };
          if (fresh.tokenExpiresAt !== s.tokenExpiresAt) return { kind: 'refreshed', session: fresh, setCookies: [] };
        }
        return { kind: 'kept' };
      }
    }
    return this.refreshNow(s, cookies);
  }

  private async refreshNow(s: ActiveSession, cookies: Record<string, string | undefined>): Promise<RefreshOutcome> {
    const record = await this.sessions.record(s, cookies);
    if (!record?.refreshToken) return { kind: 'kept' };
    try {
      const r = await this.idp.refresh(record.refreshToken, record.claims);
      const next = {
        ...record,
        claims: r.claims,
        idToken: r.idTokenReturned ? r.idToken : record.idToken,
        accessToken: r.accessToken ?? record.accessToken,
        refreshToken: r.refreshToken,
        tokenExpiresAt: r.tokenExpiresAt,
        seenAt: s.seenAt,
      };
      const { session, setCookies } = await this.sessions.replace(s, next, cookies);
      this.metrics.refresh.inc({ result: 'success' });
      return { kind: 'refreshed', session, setCookies };
    } catch (err) {
      const e = err instanceof PortcullisError ? err : undefined;
      if (e && (e.code === 'ERR_REFRESH_INVALID_GRANT' || e.code === 'ERR_REFRESH_CLAIMS_MISMATCH' || e.code === 'ERR_CALLBACK_ID_TOKEN_INVALID')) {
        this.metrics.refresh.inc({ result: e.code === 'ERR_REFRESH_INVALID_GRANT' ? 'invalid_grant' : 'rejected' });
        this.log.info({ sub: s.sub, code: e.code, err: e.cause instanceof Error ? e.cause.message : undefined }, 'session ended: refresh refused');
        this.sessions.evict((x) => x.sid === s.sid);
        this.endConnections(s.sid);
        return { kind: 'ended', setCookies: await this.sessions.destroy(cookies).catch(() => this.sessions.expireHeaders(cookies)) };
      }
      this.metrics.refresh.inc({ result: 'error' });
      this.refreshRetryAt.set(s.sid, this.now() + 30_000);
      this.log.warn({ sub: s.sub, err: e?.cause instanceof Error ? e.cause.message : String(err) }, 'token refresh failed; keeping the session and retrying later');
      return { kind: 'kept' };
    }
  }

  /** Records a logout token id; false when it was seen before (replay). */
  async markLogoutTokenUsed(jti: string, expSec: number): Promise<boolean> {
    if (this.seenLogoutTokens.has(jti)) return false;
    this.seenLogoutTokens.set(jti, true);
    // Shared across replicas when Redis is there: the IdP may deliver to any of them.
    if (this.redis) return this.redis.setIfAbsent(`jti:${jti}`, '1', Math.max(60_000, expSec * 1000 - this.now() + 60_000));
    return true;
  }

  /** Readiness: the IdP is discovered and, when used, Redis answers. */
  get ready(): { ok: boolean; idp: string; store: string } {
    const idp = this.idp.ready ? 'ok' : (this.idp.lastError ?? 'discovering');
    const store = this.redis ? (this.redis.healthy() ? 'ok' : 'redis unavailable') : 'ok';
    return { ok: this.idp.ready && (!this.redis || this.redis.healthy()), idp, store };
  }

  /** Ends every session of an IdP session id (or of a subject): revocation list, cache, live connections. */
  async revokeSessions(r: { sid?: string; sub?: string }, via: string): Promise<void> {
    await this.revocations.revoke(r);
    const match = (s: ActiveSession) => (r.sid !== undefined && s.idpSid === r.sid) || (r.sub !== undefined && s.sub === r.sub);
    this.sessions.evict(match);
    this.endConnectionsWhere((s) => match(s) && this.revocations.isRevoked(s));
    // `peer`: another worker of this process group handled the logout and counted it.
    if (via === 'peer') return;
    this.metrics.sessionsRevoked.inc({ via });
    this.onSessionsRevoked?.(r);
  }

  /**
   * Remembers a live WebSocket of a session so it is closed when the session ends: at once on
   * sign-out and back-channel logout handled by this process; within CONNECTION_SWEEP_MS for the
   * absolute timeout and for revocations learnt from other replicas.
   */
  trackConnection(session: ActiveSession, socket: Duplex, until?: NodeJS.EventEmitter): void {
    this.connections.set(socket, session);
    const untrack = () => this.connections.delete(socket);
    socket.once('close', untrack);
    // An event stream over keep-alive: the socket outlives the response; stop tracking at its end.
    until?.once('close', untrack);
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.sweepConnections(), CONNECTION_SWEEP_MS);
      this.sweepTimer.unref();
    }
  }

  private sweepConnections(): void {
    const now = this.now();
    this.endConnectionsWhere((s) => now - s.createdAt > this.config.session.absoluteTimeoutMs || this.revocations.isRevoked(s));
  }

  /** Closes every live connection of a Portcullis session id. */
  endConnections(sid: string): number {
    return this.endConnectionsWhere((s) => s.sid === sid);
  }

  endConnectionsWhere(match: (s: ActiveSession) => boolean): number {
    let n = 0;
    for (const [socket, s] of this.connections) {
      if (match(s)) { socket.destroy(); this.connections.delete(socket); n++; }
    }
    return n;
  }

  async close(): Promise<void> {
    this.idp.close();
    this.revocations.stop();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.endConnectionsWhere(() => true);
    await this.sessions.close();
    // Cookie sessions with a Redis URL: the client only served revocations; the store did not own it.
    if (this.redis && this.sessions.storeKind !== 'redis') await this.redis.close();
  }
}

/** The last entry of a comma-separated forwarding header ('' when there is none). */
function lastEntry(v: string | string[] | undefined): string {
  const s = Array.isArray(v) ? v.at(-1) : v;
  return s ? s.slice(s.lastIndexOf(',') + 1).trim() : '';
}
