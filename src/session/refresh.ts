// Session stage, renewal: a session's tokens are refreshed shortly before they expire, inside the
// request that finds them due — one refresh per session at a time in this process (single-flight)
// and, with the Redis store, across replicas (a lock with a random owner, released only by its
// owner). The margin is a share of the token's lifetime (a 60 s token is not "due" all its life),
// and one session is refreshed at most once per REFRESH_MIN_INTERVAL_MS in this process, whatever
// the IdP returns. `invalid_grant` or a claims mismatch ends the session; an unreachable IdP keeps
// it (until idle/absolute timeout) and retries after REFRESH_RETRY_MS.
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { PortcullisError } from '../errors.js';
import type { ActiveSession, Claims, SessionManager } from './sessions.js';
import type { RedisStore } from './redis-store.js';
import { withSpan } from '../tracing.js';

/** Refresh this share of the token's lifetime before it expires… */
export const REFRESH_MARGIN_SHARE = 0.2;
/** …but at least this long before… */
export const REFRESH_MARGIN_MIN_MS = 5_000;
/** …and at most this long before (also the margin when the lifetime is unknown: older records). */
export const REFRESH_MARGIN_MAX_MS = 60_000;
/** One session is refreshed at most once in this long (per process; the Redis lock serialises replicas). */
export const REFRESH_MIN_INTERVAL_MS = 5_000;
/** After a failed (IdP unreachable) refresh, wait this long before trying again. */
export const REFRESH_RETRY_MS = 30_000;

/**
 * How long before `expiresAt` a token is refreshed: 20 % of its lifetime (expiresAt − issuedAt),
 * within [5 s, 60 s]. A 1 h token: 60 s before; a 60 s token: 12 s before; a 10 s token: 5 s before.
 */
export function refreshMargin(issuedAt: number | undefined, expiresAt: number): number {
  if (issuedAt === undefined || !(expiresAt > issuedAt)) return issuedAt === undefined ? REFRESH_MARGIN_MAX_MS : REFRESH_MARGIN_MIN_MS;
  return Math.min(REFRESH_MARGIN_MAX_MS, Math.max(REFRESH_MARGIN_MIN_MS, (expiresAt - issuedAt) * REFRESH_MARGIN_SHARE));
}

export type RefreshOutcome =
  | { kind: 'refreshed'; session: ActiveSession; setCookies: string[] }
  | { kind: 'ended'; setCookies: string[] }
  | { kind: 'kept' };

type Cookies = Record<string, string | undefined>;

/** What the IdP answers to a refresh (signin/idp.ts). */
export interface RefreshedTokens {
  claims: Claims;
  idToken: string;
  idTokenReturned: boolean;
  accessToken?: string | undefined;
  refreshToken?: string | undefined;
  tokenExpiresAt?: number | undefined;
  /** Group overage: why the new claims have no `groups` (undefined when they are fine). */
  groupsUnavailable?: string | undefined;
}

export interface RefresherDeps {
  sessions: SessionManager;
  /**
   * The IdP's refresh grant; throws coded errors (ERR_REFRESH_INVALID_GRANT…). The claims it
   * returns replace the session's (what the IdP says now); `idToken` is the session's current one.
   * `provider`: the session's provider, the only one that may refresh it.
   */
  refreshGrant: (provider: string, refreshToken: string, claims: Claims, idToken: string) => Promise<RefreshedTokens>;
  /** The shared store, when sessions live in Redis (cross-replica lock). */
  redis: RedisStore | undefined;
  now: () => number;
  count: (result: 'success' | 'invalid_grant' | 'rejected' | 'error', provider: string) => void;
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
  /** The IdP refused the refresh: the session is over everywhere this process knows of. */
  onEnded: (s: ActiveSession) => void;
}

export class Refresher {
  /** In-flight refreshes by session id: concurrent requests of one session share one refresh. */
  private readonly inflight = new Map<string, Promise<RefreshOutcome>>();
  /** By session id: no new refresh before this time (the minimum interval, or the retry back-off after a failure). */
  private readonly notBefore = new LRUCache<string, number>({ max: 100_000 });

  constructor(private readonly d: RefresherDeps) {}

  /** Whether the token is within its refresh margin (whatever the rate limit says). */
  private dueByTime(s: ActiveSession, now: number): boolean {
    return s.hasRefreshToken && s.tokenExpiresAt !== undefined && now >= s.tokenExpiresAt - refreshMargin(s.tokenIssuedAt, s.tokenExpiresAt);
  }

  private allowed(s: ActiveSession, now: number): boolean {
    const at = this.notBefore.get(s.sid);
    return at === undefined || now >= at;
  }

  /** Whether a request of this session has a refresh to start or join now. */
  isDue(s: ActiveSession): boolean {
    const now = this.d.now();
    return this.dueByTime(s, now) && (this.inflight.has(s.sid) || this.allowed(s, now));
  }

  /** The refresh of this session, started or joined; undefined when none is due. */
  ifDue(s: ActiveSession, cookies: Cookies): Promise<RefreshOutcome> | undefined {
    const now = this.d.now();
    if (!this.dueByTime(s, now)) return undefined;
    let p = this.inflight.get(s.sid);
    if (p) return p;
    if (!this.allowed(s, now)) return undefined;
    this.notBefore.set(s.sid, now + REFRESH_MIN_INTERVAL_MS);
    // Traced as one span (src/tracing.ts; nothing when tracing is off): its IdP token call is a child.
    p = withSpan('session refresh', { 'portcullis.session.store': this.d.sessions.storeKind }, async (span) => {
      const o = await this.refresh(s, cookies);
      span?.setAttribute('portcullis.refresh.outcome', o.kind);
      return o;
    }).finally(() => this.inflight.delete(s.sid));
    this.inflight.set(s.sid, p);
    return p;
  }

  private async refresh(s: ActiveSession, cookies: Cookies): Promise<RefreshOutcome> {
    const { sessions, redis } = this.d;
    if (sessions.storeKind !== 'redis' || !redis) return this.refreshNow(s, cookies);
    // Across replicas (Redis store): one of them refreshes, the others wait for its result.
    const lock = `lock:refresh:${s.sid}`;
    const owner = randomBytes(16).toString('base64url');
    if (await redis.setIfAbsent(lock, owner, 15_000)) {
      try {
        return await this.refreshNow(s, cookies);
      } finally {
        await redis.delIfEquals(lock, owner).catch(() => {});
      }
    }
    for (let i = 0; i < 25; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const fresh = await sessions.reload(s, cookies);
      if (!fresh) return { kind: 'ended', setCookies: sessions.expireHeaders(cookies) };
      if (fresh.tokenExpiresAt !== s.tokenExpiresAt) return { kind: 'refreshed', session: fresh, setCookies: [] };
    }
    return { kind: 'kept' };
  }

  private async refreshNow(s: ActiveSession, cookies: Cookies): Promise<RefreshOutcome> {
    const { sessions } = this.d;
    const record = await sessions.record(s, cookies);
    if (!record?.refreshToken) return { kind: 'kept' };
    try {
      const r = await this.d.refreshGrant(s.provider, record.refreshToken, record.claims, record.idToken);
      const next = {
        ...record,
        claims: r.claims,
        idToken: r.idTokenReturned ? r.idToken : record.idToken,
        accessToken: r.accessToken ?? record.accessToken,
        refreshToken: r.refreshToken,
        tokenExpiresAt: r.tokenExpiresAt,
        tokenIssuedAt: r.tokenExpiresAt === undefined ? undefined : this.d.now(),
        seenAt: s.seenAt,
        groupsUnavailable: r.groupsUnavailable,
      };
      const { session, setCookies } = await sessions.replace(s, next, cookies);
      this.d.count('success', s.provider);
      return { kind: 'refreshed', session, setCookies };
    } catch (err) {
      const e = err instanceof PortcullisError ? err : undefined;
      if (e && (e.code === 'ERR_REFRESH_INVALID_GRANT' || e.code === 'ERR_REFRESH_CLAIMS_MISMATCH' || e.code === 'ERR_CALLBACK_ID_TOKEN_INVALID')) {
        this.d.count(e.code === 'ERR_REFRESH_INVALID_GRANT' ? 'invalid_grant' : 'rejected', s.provider);
        this.d.log.info({ sub: s.sub, code: e.code, err: e.cause instanceof Error ? e.cause.message : undefined }, 'session ended: refresh refused');
        sessions.evict((x) => x.sid === s.sid);
        this.d.onEnded(s);
        return { kind: 'ended', setCookies: await sessions.destroy(cookies).catch(() => sessions.expireHeaders(cookies)) };
      }
      this.d.count('error', s.provider);
      this.notBefore.set(s.sid, this.d.now() + REFRESH_RETRY_MS);
      this.d.log.warn({ sub: s.sub, err: e?.cause instanceof Error ? e.cause.message : String(err) }, 'token refresh failed; keeping the session and retrying later');
      return { kind: 'kept' };
    }
  }
}
