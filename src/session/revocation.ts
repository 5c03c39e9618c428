// Session stage: sessions ended by sign-out, back-channel logout or a refused refresh. A stateless
// cookie cannot be deleted — a copy taken before sign-out still opens — so the session is
// remembered here until the longest session could have expired: by Portcullis's own session id
// (`psid`: sign-out, refused refresh), by the IdP's session id (`sid`) or by subject (`sub`:
// back-channel logout). Every request's session is checked against it (Map lookups).
// With Redis configured, entries are shared: each replica writes to a Redis hash and pulls the
// others' entries every `syncIntervalMs` — the bound on how late another replica notices.

import type { RedisStore } from './redis-store.js';

export interface RevocationBackend {
  /** Adds entries (field → revokedAt ms) and returns nothing; throws when unreachable. */
  add(entries: Record<string, number>, ttlMs: number): Promise<void>;
  /** All current entries. */
  all(): Promise<Record<string, number>>;
}

/**
 * What to end: one Portcullis session (`psid`, its own random id), every session of an IdP session
 * (`sid`), or every session of a subject created before now (`sub`, only when no `sid` is given).
 */
export interface Revocation { psid?: string; sid?: string; sub?: string }

export class RevocationList {
  /** `psid:<portcullis sid>`, `sid:<idp sid>` or `sub:<subject>` → when it was revoked (ms). */
  private readonly entries = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly retainMs: number,
    private readonly now: () => number = Date.now,
    private readonly backend?: RevocationBackend,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  get size(): number { return this.entries.size; }

  /** Starts pulling other replicas' revocations (no-op without a backend). */
  startSync(intervalMs: number): void {
    if (!this.backend || this.timer) return;
    const pull = () => {
      this.backend!.all().then((all) => {
        for (const [k, v] of Object.entries(all)) this.merge(k, v);
      }, this.onError);
    };
    pull();
    this.timer = setInterval(pull, intervalMs);
    this.timer.unref();
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
    if (r.sid) add[`sid:${r.sid}`] = at;
    if (r.sub && !r.sid) add[`sub:${r.sub}`] = at;
    for (const [k, v] of Object.entries(add)) this.merge(k, v);
    this.prune();
    if (this.backend) await this.backend.add(add, this.retainMs);
  }

  /**
   * True when the session was ended: signed out (its own id, whatever copy of the cookie), or by a
   * logout event. A `sub`-wide logout only ends sessions created before it — signing in again
   * afterwards works (a new session has a new id, so a `psid` entry never ends it either).
   */
  isRevoked(s: { sid: string; sub: string; idpSid: string | undefined; createdAt: number }): boolean {
    if (this.entries.size === 0) return false;
    if (this.entries.has(`psid:${s.sid}`)) return true;
    if (s.idpSid !== undefined) {
      const at = this.entries.get(`sid:${s.idpSid}`);
      if (at !== undefined && s.createdAt <= at) return true;
    }
    const at = this.entries.get(`sub:${s.sub}`);
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
