// Session stage: "who is this?" — turns the request's cookies into a verified session (or none),
// enforces idle and absolute lifetimes, and issues, refreshes and clears session cookies. The hot
// path is an LRU lookup keyed by a hash of the cookie value: no decryption, no store round-trip.
import { memoized, type ConnectionMemo } from '../routing/connection-memo.js';
import { hash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { CookieSettings } from './cookies.js';
import { expireChunked, readChunked, SESSION_VALUE_MAX, writeChunked } from './cookies.js';
import { errors } from '../errors.js';
import type { SessionStore } from './store.js';

import type { Claims, SessionRecord } from './record.js';

export type { Claims, SessionRecord };

/** The verified, cached view of a session that request handling uses. Holds no tokens. */
export interface ActiveSession {
  readonly sid: string;
  /** The id of the OpenID Provider this session signed in with (`oidc` id); a route accepts it or treats the request as signed out. */
  readonly provider: string;
  readonly sub: string;
  /** The IdP's session id (`sid` claim), for back-channel logout. */
  readonly idpSid: string | undefined;
  readonly claims: Claims;
  readonly createdAt: number;
  seenAt: number;
  /** When seenAt was last persisted. */
  writtenAt: number;
  readonly tokenExpiresAt: number | undefined;
  /** When the current token was received (undefined for records written before this was kept). */
  readonly tokenIssuedAt: number | undefined;
  readonly hasRefreshToken: boolean;
  /** Opened with an older secret: re-seal with the first one on this response. */
  stale: boolean;
  /** Only kept when some route passes the access token upstream (memory: see SessionTimings). */
  readonly accessToken?: string | undefined;
  /** Why the session has no `groups` although the IdP announced them (SessionRecord.groupsUnavailable); for the 403 page. */
  readonly groupsUnavailable?: string | undefined;
}

export interface SessionTimings {
  idleTimeoutMs: number;
  absoluteTimeoutMs: number;
  cacheMaxEntries: number;
  /** Shared (Redis) store: how long a verified session is served from memory. Default SESSION_CACHE_WINDOW_MS; tests set it (RuntimeOptions). */
  cacheWindowMs?: number | undefined;
  /** Keep the access token in the cached view (a route has passAccessToken/passAuthorization). */
  keepAccessToken?: boolean;
  /** Keeps only the claims the configuration uses (session/compact.ts), applied to every record written. */
  compactClaims?: (claims: Claims) => Claims;
  /** The first provider's id: records written before sessions named their provider belong to it. Default `default`. */
  defaultProvider?: string;
  /** Told when a session does not fit the cookie store (before ERR_SESSION_TOO_LARGE is thrown). */
  onTooLarge?: (when: 'sign_in' | 'refresh' | 'rewrite') => void;
}

export type SessionLookup =
  | { kind: 'none' }
  | { kind: 'valid'; session: ActiveSession }
  | { kind: 'expired'; reason: 'idle' | 'absolute' | 'revoked' | 'invalid' };

/** Revocation check shared with back-channel logout: true when this session was ended elsewhere. */
export type RevocationCheck = (s: { sid: string; sub: string; idpSid: string | undefined; createdAt: number; provider: string }) => boolean;

const NONE: SessionLookup = Object.freeze({ kind: 'none' });

/**
 * How long a session verified from a shared (Redis) store is served from this process's memory
 * before it is opened again: the bound on how late a change made by another replica (a refresh, a
 * rewrite) is seen here. Revocations do not wait for it (every lookup checks the revocation list).
 * Not a config key: it trades a Redis round-trip per request against staleness no operator has
 * needed to tune. It runs on the injected clock, so tests move the clock past it instead of waiting,
 * or set another window (RuntimeOptions.sessionCacheWindowMs) to keep a session cached across a jump.
 */
export const SESSION_CACHE_WINDOW_MS = 10_000;
/**
 * How long the cookie value a refresh replaced keeps answering with the new session: requests sent
 * before the browser saw the new cookie must not refresh again with a rotated refresh token.
 */
const REPLACED_COOKIE_GRACE_MS = 60_000;

export class SessionManager {
  private readonly cache: LRUCache<string, ActiveSession> | undefined;
  /** How often an active session's last-seen time is written back (cookie re-sealed / Redis touched). */
  private readonly touchIntervalMs: number;

  constructor(
    readonly cookies: CookieSettings,
    private readonly store: SessionStore,
    private readonly timings: SessionTimings,
    private readonly now: () => number = Date.now,
    private readonly isRevoked: RevocationCheck = () => false,
    private readonly onCache: (hit: boolean) => void = () => {},
  ) {
    // allowStale false + per-entry ttl (0 = none): lru-cache needs ttl tracking switched on up front.
    // Its ttls run on the session clock (`now`, not lru-cache's own performance.now()), read on
    // every check (ttlResolution 0): the same clock as idle and absolute timeouts, which a test moves.
    this.cache = timings.cacheMaxEntries > 0
      ? new LRUCache<string, ActiveSession>({ max: timings.cacheMaxEntries, ttl: 0, ttlAutopurge: false, ttlResolution: 0, perf: { now } })
      : undefined;
    this.touchIntervalMs = Math.min(60_000, Math.max(1000, Math.floor(timings.idleTimeoutMs / 10)));
    // A shared store can be changed by another replica (refresh, sign-out): re-verify cached
    // sessions after SESSION_CACHE_WINDOW_MS. A cookie session only changes with its cookie, so it can stay cached.
    this.cacheTtlMs = store.kind === 'redis' ? timings.cacheWindowMs ?? SESSION_CACHE_WINDOW_MS : 0;
  }

  private readonly cacheTtlMs: number;

  static newSid(): string { return randomBytes(18).toString('base64url'); }

  /** The session cookie's value, joined from chunks. */
  cookieValue(cookies: Record<string, string | undefined>): string | undefined {
    return readChunked(cookies, this.cookies.session);
  }

  /** Finds the request's session. Never throws for bad cookies: they are simply "no session". */
  async lookup(cookies: Record<string, string | undefined>, memo?: ConnectionMemo): Promise<SessionLookup> {
    const value = this.cookieValue(cookies);
    if (value === undefined) return NONE;
    const key = memoized(memo, cacheKey, value);
    const now = this.now();
    let s = this.cache?.get(key);
    this.onCache(s !== undefined);
    if (!s) {
      const opened = await this.store.open(value); // may throw ERR_SESSION_STORE_UNAVAILABLE
      if (!opened) return { kind: 'expired', reason: 'invalid' };
      s = activeFrom(opened.record, opened.stale, this.timings);
      this.cache?.set(key, s, { ttl: this.cacheTtlMs });
    }
    const ended = this.endedBy(s, now);
    if (ended) return this.drop(key, ended);
    s.seenAt = now;
    return { kind: 'valid', session: s };
  }

  /** Why a session is over (absolute or idle timeout, revocation), or undefined while it lives. */
  private endedBy(s: ActiveSession, now: number): 'idle' | 'absolute' | 'revoked' | undefined {
    if (now - s.createdAt > this.timings.absoluteTimeoutMs) return 'absolute';
    if (now - s.seenAt > this.timings.idleTimeoutMs) return 'idle';
    if (this.isRevoked(s)) return 'revoked';
    return undefined;
  }

  /**
   * The hot path's synchronous look: a cached, still-valid session, or undefined whenever anything
   * else would have to happen (cache miss, expiry, revocation) — the caller then takes the full path.
   * `memo`: the client connection's (routing/connection-memo.ts), which keeps the cache key while the
   * connection repeats the cookie.
   */
  peek(cookies: Record<string, string | undefined>, memo?: ConnectionMemo): ActiveSession | undefined {
    const value = this.cookieValue(cookies);
    if (value === undefined) return undefined;
    const s = this.cache?.get(memoized(memo, cacheKey, value));
    if (!s) return undefined;
    const now = this.now();
    if (this.endedBy(s, now)) return undefined;
    this.onCache(true);
    s.seenAt = now;
    return s;
  }

  private drop(key: string, reason: 'idle' | 'absolute' | 'revoked'): SessionLookup {
    this.cache?.delete(key);
    return { kind: 'expired', reason };
  }

  /** Forgets cached sessions matching a predicate (back-channel logout, sign-out). */
  evict(match: (s: ActiveSession) => boolean): void {
    if (!this.cache) return;
    for (const [k, s] of this.cache.entries()) if (match(s)) this.cache.delete(k);
  }

  /** Whether this response should persist the session (last-seen time or a key rotation). */
  needsWrite(s: ActiveSession): boolean {
    return s.stale || s.seenAt - s.writtenAt >= this.touchIntervalMs;
  }

  /** Re-saves an active session (new last-seen time, current key). Returns Set-Cookie headers. */
  async rewrite(s: ActiveSession, cookies: Record<string, string | undefined>, update?: (r: SessionRecord) => SessionRecord): Promise<string[]> {
    const current = this.cookieValue(cookies);
    if (current === undefined) return [];
    const opened = await this.store.open(current);
    if (!opened) return [];
    let record = { ...opened.record, seenAt: s.seenAt };
    if (update) record = update(record);
    const headers = await this.write(record, cookies, current, 'rewrite');
    // The old cookie value stays cached with the new write time: a client that ignores Set-Cookie
    // (a script with a fixed cookie) must not cost a decrypt + re-seal on every request.
    s.writtenAt = s.seenAt;
    s.stale = false;
    return headers;
  }

  /**
   * Replaces a session's record after a token refresh. Requests still carrying the old cookie (sent
   * before the browser saw the new one) are answered with the new session for a minute, so they
   * do not refresh again with a refresh token the IdP may already have rotated.
   */
  async replace(_old: ActiveSession, record: SessionRecord, cookies: Record<string, string | undefined>): Promise<{ session: ActiveSession; setCookies: string[] }> {
    const oldValue = this.cookieValue(cookies);
    const saved = await this.save(record, oldValue, 'refresh');
    const value = saved.value;
    record = saved.record;
    const maxAge = Math.max(1, Math.floor((record.createdAt + this.timings.absoluteTimeoutMs - this.now()) / 1000));
    const setCookies = value === oldValue ? [] : writeChunked(this.cookies, cookies, this.cookies.session, value, maxAge);
    const session = activeFrom(record, false, this.timings);
    this.cache?.set(cacheKey(value), session, { ttl: this.cacheTtlMs });
    if (oldValue !== undefined && value !== oldValue) this.cache?.set(cacheKey(oldValue), session, { ttl: REPLACED_COOKIE_GRACE_MS });
    return { session, setCookies };
  }

  /** Re-reads a session from its store (another replica may have refreshed it). */
  async reload(s: ActiveSession, cookies: Record<string, string | undefined>): Promise<ActiveSession | undefined> {
    const value = this.cookieValue(cookies);
    const opened = value === undefined ? undefined : await this.store.open(value);
    if (!opened) return undefined;
    const fresh = activeFrom(opened.record, opened.stale, this.timings);
    fresh.seenAt = s.seenAt;
    this.cache?.set(cacheKey(value!), fresh, { ttl: this.cacheTtlMs });
    return fresh;
  }

  get storeKind(): 'cookie' | 'redis' { return this.store.kind; }

  /** Loads the full record (tokens included) behind an active session. */
  async record(s: ActiveSession, cookies: Record<string, string | undefined>): Promise<SessionRecord | undefined> {
    const value = this.cookieValue(cookies);
    const r = value === undefined ? undefined : (await this.store.open(value))?.record;
    return r && r.sid === s.sid ? r : undefined;
  }

  /**
   * The same user signed in again (a step-up): `record` — same `sid` and `createdAt` as `current`,
   * new claims and tokens — replaces the session in place (Redis: the same entry; cookie store: a
   * new sealed value for the same session). Unlike `replace` after a refresh, the old cookie value
   * does not answer with the upgraded session: a copy of it keeps only what it had.
   */
  async upgrade(_current: ActiveSession, record: SessionRecord, cookies: Record<string, string | undefined>): Promise<string[]> {
    const old = this.cookieValue(cookies);
    if (old !== undefined) this.cache?.delete(cacheKey(old));
    return this.write(record, cookies, old, 'sign_in');
  }

  /** Stores a brand-new session (always a new sid: no fixation through a planted cookie). */
  async create(record: SessionRecord, cookies: Record<string, string | undefined>): Promise<string[]> {
    const old = this.cookieValue(cookies);
    if (old !== undefined) {
      this.cache?.delete(cacheKey(old));
      await this.store.remove(old).catch(() => {});
    }
    return this.write(record, cookies, undefined, 'sign_in');
  }

  private async write(record: SessionRecord, cookies: Record<string, string | undefined>, previous: string | undefined, when: 'sign_in' | 'rewrite'): Promise<string[]> {
    const { value } = await this.save(record, previous, when);
    const maxAge = Math.max(1, Math.floor((record.createdAt + this.timings.absoluteTimeoutMs - this.now()) / 1000));
    return writeChunked(this.cookies, cookies, this.cookies.session, value, maxAge);
  }

  /**
   * Stores a record, compacted to the claims the configuration uses. A cookie-store session that
   * is still too large to send back (SESSION_VALUE_MAX, after compression in the codec) is saved
   * without its ID token, which repeats every claim (a big `groups` list twice over) and serves only
   * as `id_token_hint` at sign-out (client_id is sent too, which IdPs accept instead). If even that
   * does not fit: ERR_SESSION_TOO_LARGE, a page saying why and what the operator can do.
   */
  private async save(record: SessionRecord, previous: string | undefined, when: 'sign_in' | 'refresh' | 'rewrite'): Promise<{ value: string; record: SessionRecord }> {
    const compact = this.timings.compactClaims;
    let r = compact ? { ...record, claims: compact(record.claims) } : record;
    let value = await this.store.save(r, previous);
    if (value.length > SESSION_VALUE_MAX && r.idToken !== '') {
      r = { ...r, idToken: '' };
      value = await this.store.save(r, previous);
    }
    if (value.length > SESSION_VALUE_MAX) {
      this.timings.onTooLarge?.(when);
      const groups = Array.isArray(r.claims.groups) ? r.claims.groups.length : 0;
      throw errors.sessionTooLarge(new Error(`the session for sub ${String(r.claims.sub)} (${groups} groups, claims ${Object.keys(r.claims).join(',')}) needs ${value.length} bytes of cookie, more than ${SESSION_VALUE_MAX}: use session.store: redis, or have the IdP send fewer claims`));
    }
    return { value, record: r };
  }

  /** Ends the request's session: store entry removed, cache forgotten, cookies expired. */
  async destroy(cookies: Record<string, string | undefined>): Promise<string[]> {
    const value = this.cookieValue(cookies);
    if (value !== undefined) {
      this.cache?.delete(cacheKey(value));
      await this.store.remove(value);
    }
    return expireChunked(this.cookies, cookies, this.cookies.session);
  }

  /** Expire headers for whatever session cookies the request carries. */
  expireHeaders(cookies: Record<string, string | undefined>): string[] {
    return expireChunked(this.cookies, cookies, this.cookies.session);
  }

  async close(): Promise<void> { this.cache?.clear(); await this.store.close(); }
}

function activeFrom(r: SessionRecord, stale: boolean, t: Pick<SessionTimings, 'keepAccessToken' | 'defaultProvider'>): ActiveSession {
  return {
    sid: r.sid,
    provider: typeof r.provider === 'string' ? r.provider : t.defaultProvider ?? 'default',
    sub: String(r.claims.sub ?? ''),
    idpSid: typeof r.claims.sid === 'string' ? r.claims.sid : undefined,
    claims: r.claims,
    createdAt: r.createdAt,
    seenAt: r.seenAt,
    writtenAt: r.seenAt,
    tokenExpiresAt: r.tokenExpiresAt,
    tokenIssuedAt: r.tokenIssuedAt,
    hasRefreshToken: typeof r.refreshToken === 'string',
    stale,
    accessToken: t.keepAccessToken ? r.accessToken : undefined,
    groupsUnavailable: typeof r.groupsUnavailable === 'string' ? r.groupsUnavailable : undefined,
  };
}

/**
 * The session cache's key for a cookie value. The cache is consulted before the cookie is decrypted,
 * so the key must be collision-resistant: BLAKE2b (OpenSSL's), cut to 256 bits — as strong as
 * SHA-256 and ~40 % cheaper on CPUs without SHA extensions, where SHA-256 of a 2–3 KB cookie was
 * ~4 % of an authenticated request (docs/design.md).
 */
export function cacheKey(cookieValue: string): string {
  return hash('blake2b512', cookieValue, 'base64url').slice(0, 43);
}
