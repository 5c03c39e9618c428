// Boot stage 3: the validated Config compiled into the stage instances the door runs — route table,
// origin rules, session manager and refresher, sign-in flow, upstream request rules, forwarder,
// live connections, audit — once. Each job lives in its stage; this file only builds and holds
// them (and ends sessions across them, which touches several). Requests only run what is built here.
import type { FastifyBaseLogger } from 'fastify';
import type { Config, RouteConfig } from './config/index.js';
import type { AssertionSigner } from './identity/assertion.js';
import { SessionCodec } from './session/codec.js';
import { cookieSettings, makeCookieStripper } from './session/cookies.js';
import { SessionManager, type ActiveSession } from './session/sessions.js';
import { claimCompactor, claimsToKeep } from './session/compact.js';
import { RevocationList, redisRevocations, type Revocation } from './session/revocation.js';
import { Refresher } from './session/refresh.js';
import { LRUCache } from 'lru-cache';
import { CookieStore, type SessionStore } from './session/store.js';
import { RedisStore } from './session/redis-store.js';
import { TransactionCookies } from './signin/transactions.js';
import { randomSignInChecks } from './signin/idp.js';
import { Providers, type Provider } from './signin/providers.js';
import { errors } from './errors.js';
import type { RedirectPolicy } from './signin/redirects.js';
import { seedProviderSeries, type Metrics } from './metrics.js';
import { OriginRules } from './routing/origin.js';
import { UpstreamRequestRules } from './proxy/plan.js';
import { Forwarder } from './proxy/relay.js';
import { LiveConnections } from './proxy/connections.js';
import { compileRouteTable, type RouteTable } from './door/route-table.js';
import { DecisionAudit } from './door/audit.js';
import type { StepUpRequirement } from './policy/step-up.js';

export { compileRouteTable, type RouteTable };

/** How often each replica pulls the others' back-channel revocations from Redis (the delay bound). */
export const REVOCATION_SYNC_MS = 2_000;

export interface RuntimeOptions {
  now?: () => number;
  /** The session cache window instead of SESSION_CACHE_WINDOW_MS (session/sessions.ts): for tests that move the clock across it. Not a config key. */
  sessionCacheWindowMs?: number;
  store?: SessionStore;
  /** Told after this process ended sessions (sign-out, back-channel logout, refused refresh); cluster workers pass it on to their siblings. */
  onSessionsRevoked?: (r: Revocation) => void;
}

export class Runtime {
  table: RouteTable;
  readonly sessions: SessionManager;
  readonly refresher: Refresher;
  readonly txns: TransactionCookies;
  /** The OpenID Providers (config `oidc`), each with its IdP client, introspection and token exchange. */
  readonly providers: Providers;
  readonly redirects: RedirectPolicy;
  readonly origin: OriginRules;
  readonly upstreamRules: UpstreamRequestRules;
  readonly forwarder = new Forwarder();
  /** Live WebSockets and event streams, cut when their session ends. */
  readonly connections: LiveConnections<ActiveSession>;
  readonly audit: DecisionAudit;
  readonly revocations: RevocationList;
  readonly now: () => number;
  /** Logout token ids already used (replay protection). */
  readonly seenLogoutTokens = new LRUCache<string, true>({ max: 100_000, ttl: 15 * 60_000 });
  private readonly trimWarned = new LRUCache<string, true>({ max: 10_000, ttl: 3600_000 });
  /** Signs X-Portcullis-Assertion; created at boot when a route asks for assertions. */
  assertions: AssertionSigner | undefined;
  /** Redis: the session store, or (cookie store with a Redis URL) only shared revocations. */
  readonly redis: RedisStore | undefined;
  /** Set on SIGTERM: /readyz answers 503 and new proxied requests get 503 while in-flight ones finish. */
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
    const firstProvider = config.providers[0]!.id;
    this.redis = config.session.store === 'redis' || config.session.redis.configured
      ? new RedisStore(codec, cookies.session, { url: config.session.redis.url, keyPrefix: config.session.redis.keyPrefix, ttlMs: config.session.absoluteTimeoutMs, firstProvider }, sessionLog)
      : undefined;
    // Not ready before the first pull of the shared revocations succeeds (`ready` below): a replica
    // that starts must not serve sessions another replica has ended. A failing pull is logged once
    // per streak (the first one at boot, while Redis is still connecting, is normal: debug).
    this.revocations = new RevocationList(config.session.absoluteTimeoutMs, now, this.redis ? redisRevocations(this.redis, config.session.absoluteTimeoutMs, now) : undefined,
      (err, inRow) => {
        const e = { err: err instanceof Error ? err.message : String(err), failedPulls: inRow };
        if (inRow === 3) log.warn(e, this.revocations.synced
          ? 'revocation sync failing: sessions ended on other replicas are not seen here until it recovers'
          : 'revocation sync failing: not ready until the shared revocation list has been pulled once');
        else log.debug(e, 'revocation sync failed');
      },
      ({ first, afterFailures, entries }) => log.info({ entries, failedPulls: afterFailures }, first ? 'revocation list pulled from redis: ready to check sessions' : 'revocation sync recovered'),
      firstProvider);
    this.revocations.startSync(REVOCATION_SYNC_MS);
    // Pull as soon as Redis (re)connects rather than at the next tick: readiness waits for it.
    this.redis?.client.on('ready', () => { void this.revocations.syncNow(); });
    this.onSessionsRevoked = opts.onSessionsRevoked;
    this.table = this.compileRoutes(config.routes);
    const store = opts.store ?? (config.session.store === 'redis' ? this.redis! : new CookieStore(codec, cookies.session));
    const hits = metrics.cacheHits.tally();
    const misses = metrics.cacheMisses.tally();
    this.sessions = new SessionManager(cookies, store, {
      idleTimeoutMs: config.session.idleTimeoutMs,
      absoluteTimeoutMs: config.session.absoluteTimeoutMs,
      cacheMaxEntries: config.session.cacheMaxEntries,
      cacheWindowMs: opts.sessionCacheWindowMs,
      keepAccessToken: config.routes.some((r) => r.passAccessToken || r.passAuthorization || r.tokenExchange !== undefined),
      compactClaims: claimCompactor(claimsToKeep(config)),
      defaultProvider: firstProvider,
      onTooLarge: (when) => metrics.sessionsTooLarge.inc({ when }),
    }, now, (s) => this.revocations.isRevoked(s), (hit) => { (hit ? hits : misses).n += 1; });
    this.txns = new TransactionCookies(codec, cookies, now);
    this.providers = new Providers(config.providers, config.publicUrl, metrics, log, now);
    seedProviderSeries(metrics, config.providers.map((p) => p.id));
    this.connections = new LiveConnections<ActiveSession>((s) => now() - s.createdAt > config.session.absoluteTimeoutMs || this.revocations.isRevoked(s));
    this.refresher = new Refresher({
      sessions: this.sessions,
      // Only the session's own provider refreshes it (a provider no longer configured: the session ends).
      refreshGrant: (provider, token, claims, idToken) => this.provider(provider).idp.refresh(token, claims, idToken),
      redis: this.redis,
      now,
      count: (result, provider) => metrics.refresh.inc({ result, provider }),
      log,
      // Ended the same way as a sign-out: every copy of the cookie, on every worker and replica.
      onEnded: (s) => {
        this.connections.endSession(s.sid);
        this.revokeSessions({ psid: s.sid }, 'refresh').catch((err: unknown) =>
          log.warn({ err: err instanceof Error ? err.message : String(err) }, 'refused refresh: the revocation could not be shared (ended in this process only)'));
      },
    });
    this.origin = new OriginRules(config.trustProxy, config.publicUrl, config.session.cookieName);
    this.upstreamRules = new UpstreamRequestRules(this.origin, makeCookieStripper(config.session.cookieName, config.stripCookies));
    this.redirects = { origin: this.origin.publicOrigin, allowedDomains: config.redirects.allowedDomains };
    this.audit = new DecisionAudit(metrics, log, config.auditLog);
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

  /**
   * The provider of a session, transaction or principal, by id. A session of a provider no longer
   * configured has no IdP to refresh, exchange or end it at: ERR_REFRESH_INVALID_GRANT ends it
   * (no route accepts it either: route.providers only names configured ids).
   */
  provider(id: string): Provider {
    const p = this.providers.get(id);
    if (!p) throw errors.providerGone(id);
    return p;
  }

  /**
   * Starts a sign-in at one provider: transaction cookie (naming the provider) + its authorization
   * URL. With `stepUp` (a route's requirement) the IdP is asked for its `acr_values` and `max_age` —
   * recorded in the transaction, so the callback can hold the ID token to them — and `promptLogin`
   * adds `prompt=login`.
   */
  async beginSignIn(cookies: Record<string, string | undefined>, returnTo: string, provider: Provider, stepUp?: { stepUp: StepUpRequirement; promptLogin: boolean }): Promise<{ location: string; setCookies: string[] }> {
    const idp = provider.idp;
    if (!idp.ready) {
      idp.start();
      throw errors.idpUnavailable(new Error(idp.lastError ?? 'discovery pending'));
    }
    const checks = randomSignInChecks();
    const req = stepUp?.stepUp;
    const { txn, setCookies } = this.txns.begin(cookies, { ...checks, returnTo, provider: provider.id, acr: req?.acr && [...req.acr], maxAge: req?.maxAgeSec });
    const location = await idp.authorizationUrl({
      state: txn.state, nonce: txn.nonce, verifier: txn.verifier,
      acrValues: txn.acr, maxAge: txn.maxAge, prompt: stepUp?.promptLogin ? 'login' : undefined,
    });
    return { location, setCookies };
  }

  /**
   * Uses a logout token id once: false when it was used before (replay — here, or with Redis on any
   * replica, since the IdP may deliver to any of them). Otherwise runs `revoke` (storing the
   * revocation) and only once that succeeded records the id as used, in Redis and in memory: a
   * delivery whose revocation could not be stored is not "used", so the IdP's retry is served.
   * Any store failure (the revocation, the replay check, the record) is thrown for the caller to
   * answer 503. Two deliveries of one token at once may both revoke: ending a session twice is harmless.
   */
  async markLogoutTokenUsed(jti: string, expSec: number, revoke: () => Promise<void> = async () => {}): Promise<boolean> {
    if (this.seenLogoutTokens.has(jti)) return false;
    if (this.redis && await this.redis.exists(`jti:${jti}`)) return false;
    await revoke();
    if (this.redis) await this.redis.setIfAbsent(`jti:${jti}`, '1', Math.max(60_000, expSec * 1000 - this.now() + 60_000));
    this.seenLogoutTokens.set(jti, true);
    return true;
  }

  /**
   * Readiness: the IdP is discovered and, when Redis is configured, Redis answers and the shared
   * revocation list has been pulled at least once (until then, sessions ended on other replicas
   * would be served here).
   */
  get ready(): { ok: boolean; idp: string; store: string; revocations: string } {
    // Every provider discovered (Providers.ready says why); the first one not ready is named.
    const waiting = this.providers.all.find((p) => !p.idp.ready);
    const idp = !waiting ? 'ok' : `${this.providers.all.length > 1 ? `${waiting.id}: ` : ''}${waiting.idp.lastError ?? 'discovering'}`;
    const redisOk = !this.redis || this.redis.healthy();
    const store = this.redis ? (redisOk ? 'ok' : 'redis unavailable') : 'ok';
    const synced = this.revocations.synced;
    const revocations = synced ? 'ok' : `not pulled from redis yet (${this.revocations.syncFailures} failed pulls)`;
    return { ok: !waiting && redisOk && synced, idp, store, revocations };
  }

  /** Sets portcullis_idp_ready{provider} from each provider's state (read at every scrape). */
  reportIdpReady(): void {
    for (const p of this.providers.all) this.metrics.idpReady.set({ provider: p.id }, p.idp.ready ? 1 : 0);
  }

  /**
   * Ends one session (`psid`: sign-out, refused refresh) or every session of an IdP session id (or
   * of a subject): revocation list (shared through Redis when configured), cache, live connections,
   * and the sibling workers. When the shared write fails, the session has still ended in this
   * process and its workers; the error is then thrown for the caller to report.
   */
  async revokeSessions(r: Revocation, via: string): Promise<void> {
    let failed: unknown;
    try { await this.revocations.revoke(r); } catch (err) { failed = err ?? new Error('revocation failed'); }
    // Redis store: the sessions' entries are deleted too (by the IdP sid or subject index), not only deny-listed.
    if (via !== 'peer' && this.sessions.storeKind === 'redis') await this.redis?.removeSessions(r).catch((err: unknown) => { failed ??= err; });
    // An IdP's sid or sub names a session of that provider only (two IdPs may both have an "alice").
    const provider = r.provider ?? this.providers.first.id;
    const match = (s: ActiveSession) => (r.psid !== undefined && s.sid === r.psid)
      || (s.provider === provider && ((r.sid !== undefined && s.idpSid === r.sid) || (r.sub !== undefined && s.sub === r.sub)));
    this.sessions.evict(match);
    this.connections.endWhere((s) => match(s) && this.revocations.isRevoked(s));
    // Introspected bearer tokens of that user or IdP session are asked about again (this process;
    // other replicas within their cacheTtl).
    if (r.sub !== undefined || r.sid !== undefined) this.providers.get(provider)?.introspector.purge({ sub: r.sub, sid: r.sid });
    // `peer`: another worker of this process group handled the logout and counted it.
    if (via !== 'peer') {
      this.metrics.sessionsRevoked.inc({ via });
      this.onSessionsRevoked?.(r);
      // Every revocation is audited once, where it happened (the admin endpoint writes its own line,
      // with who asked). The Portcullis session id is not logged: only whose session it was.
      if (via !== 'admin') {
        this.log.info({ audit: true, action: 'revoke', via, provider: r.psid !== undefined ? undefined : provider, sub: r.sub, sid: r.sid, session: r.psid !== undefined ? 'one' : undefined, outcome: failed === undefined ? 'revoked' : 'failed' }, 'sessions revoked');
      }
    }
    if (failed !== undefined) throw failed;
  }

  async close(): Promise<void> {
    this.providers.close();
    this.revocations.stop();
    this.connections.close();
    await this.forwarder.close();
    await this.sessions.close();
    // Cookie sessions with a Redis URL: the client only served revocations; the store did not own it.
    if (this.redis && this.sessions.storeKind !== 'redis') await this.redis.close();
  }
}
