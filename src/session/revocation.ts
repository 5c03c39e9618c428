// Session stage: sessions ended by sign-out, back-channel logout or a refused refresh. A stateless
// cookie cannot be deleted — a copy taken before sign-out still opens — so the session is
// remembered here until the longest session could have expired: by Portcullis's own session id
// (`psid`: sign-out, refused refresh), by the IdP's session id (`sid`) or by subject (`sub`:
// back-channel logout). Every request's session is checked against it (Map lookups).
// With Redis configured, entries are shared: each replica writes to a Redis hash and pulls the
// others' entries every `syncIntervalMs` — the bound on how late another replica notices. A replica
// that has not yet pulled once knows none of them: `synced` stays false until the first pull
// succeeds (readiness waits for it), and a pull while Redis is not connected fails rather than
// counting as "nothing revoked".

import type { RedisStore } from './redis-store.js';
import { idpNameKey } from './idp-names.js';

export interface RevocationBackend {
  /** Adds entries (field → revokedAt ms) and returns nothing; throws when unreachable. */
  add(entries: Record<string, number>, ttlMs: number): Promise<void>;
  /** All current entries. */
  all(): Promise<Record<string, number>>;
}

/**
 * What to end: one Portcullis session (`psid`, its own random id), every session of an IdP session
 * (`sid`), or every session of a subject created before now (`sub`, only when no `sid` is given).
 * `sid` and `sub` are the IdP's names, so they are the provider's (`provider`; default: the first):
 * two IdPs may both have a user "alice", and ending one must not end the other.
 */
export interface Revocation { psid?: string; sid?: string; sub?: string; provider?: string }

export class RevocationList {
  /** `psid:<portcullis sid>`, `sid:<idp sid>` or `sub:<subject>` → when it was revoked (ms). */
  private readonly entries = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private pulling: Promise<boolean> | undefined;
  private firstSynced = false;
  /** Failed pulls since the last successful one (0 while in sync). */
  private failuresInRow = 0;
  /** Failed pulls since start. */
  syncFailures = 0;
  /** The last pull's error while pulls fail (undefined once one succeeds). */
  lastSyncError: string | undefined;

  constructor(
    private readonly retainMs: number,
    private readonly now: () => number = Date.now,
    private readonly backend?: RevocationBackend,
    private readonly onError: (err: unknown, failuresInRow: number) => void = () => {},
    /** Told after a successful pull: the first one (`first`), or the first after failures. */
    private readonly onSynced: (info: { first: boolean; afterFailures: number; entries: number }) => void = () => {},
    /** The first provider's id: its entries keep the unscoped form (see idpNameKey). */
    private readonly firstProvider = 'default',
  ) {}

  get size(): number { return this.entries.size; }

  /**
   * True once this list holds the shared entries: at once without a backend, else after the first
   * successful pull. (Later failed pulls do not clear it: the entries already pulled stay, and the
   * store's own health says whether Redis is reachable.)
   */
  get synced(): boolean { return !this.backend || this.firstSynced; }

  /** Starts pulling other replicas' revocations (no-op without a backend). */
  startSync(intervalMs: number): void {
    if (!this.backend || this.timer) return;
    void this.syncNow();
    this.timer = setInterval(() => { void this.syncNow(); }, intervalMs);
    this.timer.unref();
  }

  /**
   * Pulls the shared entries now (e.g. as soon as Redis connects, rather than at the next tick);
   * joins a pull already under way. Resolves to whether it succeeded; never rejects.
   */
  syncNow(): Promise<boolean> {
    if (!this.backend) return Promise.resolve(true);
    const backend = this.backend;
    this.pulling ??= Promise.resolve().then(() => backend.all()).then((all) => {
      for (const [k, v] of Object.entries(all)) this.merge(k, v);
      const first = !this.firstSynced;
      const afterFailures = this.failuresInRow;
      this.firstSynced = true;
      this.failuresInRow = 0;
      this.lastSyncError = undefined;
      if (first || afterFailures > 0) this.onSynced({ first, afterFailures, entries: Object.keys(all).length });
      return true;
    }, (err: unknown) => {
      this.failuresInRow += 1;
      this.syncFailures += 1;
      this.lastSyncError = err instanceof Error ? err.message : String(err);
      this.onError(err, this.failuresInRow);
      return false;
    }).finally(() => { this.pulling = undefined; });
    return this.pulling;
  }

  stop(): void { if (this.timer) clearInterval(this.timer); }

  private merge(key: string, at: number): void {
    const prev = this.entries.get(key);
    if (prev === undefined || at > prev) this.entries.set(key, at);
  }

  /**
   * Records a revocation (locally at once, then in the shared backend — which may throw). The
   * session `psid`, sessions of that IdP `sid`, or of that `sub` created before now, end.
   */
  async revoke(r: Revocation): Promise<void> {
    const at = this.now();
    const add: Record<string, number> = {};
    if (r.psid) add[`psid:${r.psid}`] = at;
    if (r.sid) add[idpNameKey('sid', r.sid, r.provider, this.firstProvider)] = at;
    if (r.sub && !r.sid) add[idpNameKey('sub', r.sub, r.provider, this.firstProvider)] = at;
    for (const [k, v] of Object.entries(add)) this.merge(k, v);
    this.prune();
    if (this.backend) await this.backend.add(add, this.retainMs);
  }

  /**
   * True when the session was ended: signed out (its own id, whatever copy of the cookie), or by a
   * logout event. A `sub`-wide logout only ends sessions created before it — signing in again
   * afterwards works (a new session has a new id, so a `psid` entry never ends it either).
   */
  isRevoked(s: { sid: string; sub: string; idpSid: string | undefined; createdAt: number; provider?: string }): boolean {
    if (this.entries.size === 0) return false;
    if (this.entries.has(`psid:${s.sid}`)) return true;
    if (s.idpSid !== undefined) {
      const at = this.entries.get(idpNameKey('sid', s.idpSid, s.provider, this.firstProvider));
      if (at !== undefined && s.createdAt <= at) return true;
    }
    const at = this.entries.get(idpNameKey('sub', s.sub, s.provider, this.firstProvider));
    return at !== undefined && s.createdAt <= at;
  }

  private prune(): void {
    const cutoff = this.now() - this.retainMs;
    for (const [k, at] of this.entries) if (at < cutoff) this.entries.delete(k);
  }
}

/** Revocations shared through one Redis hash (field = psid:/sid:/sub: key, value = when); old fields pruned on read. */
export function redisRevocations(store: RedisStore, retainMs: number, now: () => number) {
  const key = `${store.keyPrefix}revoked`;
  return {
    async add(entries: Record<string, number>): Promise<void> {
      if (Object.keys(entries).length) await store.client.hset(key, entries);
    },
    async all(): Promise<Record<string, number>> {
      // Not connected (yet): a failed pull, not an empty list — a replica must not believe nothing is revoked.
      if (!store.healthy()) throw new Error(`redis connection is ${store.client.status}`);
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
