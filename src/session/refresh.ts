// Session stage, renewal: a session's tokens are refreshed shortly before they expire, inside the
// request that finds them due — one refresh per session at a time in this process (single-flight)
// and, with the Redis store, across replicas (a lock with a random owner, released only by its
// owner). `invalid_grant` or a claims mismatch ends the session; an unreachable IdP keeps it (until
// idle/absolute timeout) and retries after REFRESH_RETRY_MS.
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { PortcullisError } from '../errors.js';
import type { ActiveSession, Claims, SessionManager } from './sessions.js';
import type { RedisStore } from './redis-store.js';

/** Refresh this long before the access/ID token expires. */
export const REFRESH_MARGIN_MS = 60_000;
/** After a failed (IdP unreachable) refresh, wait this long before trying again. */
export const REFRESH_RETRY_MS = 30_000;

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
}

export interface RefresherDeps {
  sessions: SessionManager;
  /**
   * The IdP's refresh grant; throws coded errors (ERR_REFRESH_INVALID_GRANT…). The claims it
   * returns replace the session's (what the IdP says now); `idToken` is the session's current one.
   */
  refreshGrant: (refreshToken: string, claims: Claims, idToken: string) => Promise<RefreshedTokens>;
  /** The shared store, when sessions live in Redis (cross-replica lock). */
  redis: RedisStore | undefined;
  now: () => number;
  count: (result: 'success' | 'invalid_grant' | 'rejected' | 'error') => void;
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
  /** The IdP refused the refresh: the session is over everywhere this process knows of. */
  onEnded: (s: ActiveSession) => void;
}

export class Refresher {
  /** In-flight refreshes by session id: concurrent requests of one session share one refresh. */
  private readonly inflight = new Map<string, Promise<RefreshOutcome>>();
  /** After a failed (IdP unreachable) refresh, when to try again, by session id. */
  private readonly retryAt = new LRUCache<string, number>({ max: 100_000 });

  constructor(private readonly d: RefresherDeps) {}

  /** Whether this session's tokens should be refreshed now (and no retry back-off is running). */
  isDue(s: ActiveSession): boolean {
    if (!s.hasRefreshToken || s.tokenExpiresAt === undefined) return false;
    const now = this.d.now();
    if (now < s.tokenExpiresAt - REFRESH_MARGIN_MS) return false;
    const retryAt = this.retryAt.get(s.sid);
    return retryAt === undefined || now >= retryAt;
  }

  /** The refresh of this session, started or joined; undefined when none is due. */
  ifDue(s: ActiveSession, cookies: Cookies): Promise<RefreshOutcome> | undefined {
    if (!this.isDue(s)) return undefined;
    let p = this.inflight.get(s.sid);
    if (!p) {
      p = this.refresh(s, cookies).finally(() => this.inflight.delete(s.sid));
      this.inflight.set(s.sid, p);
    }
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
      const r = await this.d.refreshGrant(record.refreshToken, record.claims, record.idToken);
      const next = {
        ...record,
        claims: r.claims,
        idToken: r.idTokenReturned ? r.idToken : record.idToken,
        accessToken: r.accessToken ?? record.accessToken,
        refreshToken: r.refreshToken,
        tokenExpiresAt: r.tokenExpiresAt,
        seenAt: s.seenAt,
      };
      const { session, setCookies } = await sessions.replace(s, next, cookies);
      this.d.count('success');
      return { kind: 'refreshed', session, setCookies };
    } catch (err) {
      const e = err instanceof PortcullisError ? err : undefined;
      if (e && (e.code === 'ERR_REFRESH_INVALID_GRANT' || e.code === 'ERR_REFRESH_CLAIMS_MISMATCH' || e.code === 'ERR_CALLBACK_ID_TOKEN_INVALID')) {
        this.d.count(e.code === 'ERR_REFRESH_INVALID_GRANT' ? 'invalid_grant' : 'rejected');
        this.d.log.info({ sub: s.sub, code: e.code, err: e.cause instanceof Error ? e.cause.message : undefined }, 'session ended: refresh refused');
        sessions.evict((x) => x.sid === s.sid);
        this.d.onEnded(s);
        return { kind: 'ended', setCookies: await sessions.destroy(cookies).catch(() => sessions.expireHeaders(cookies)) };
      }
      this.d.count('error');
      this.retryAt.set(s.sid, this.d.now() + REFRESH_RETRY_MS);
      this.d.log.warn({ sub: s.sub, err: e?.cause instanceof Error ? e.cause.message : String(err) }, 'token refresh failed; keeping the session and retrying later');
      return { kind: 'kept' };
    }
  }
}
