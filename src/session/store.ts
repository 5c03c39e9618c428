// Session stage: where a session's body lives. The cookie always carries *something* sealed; with
// the cookie store that is the whole session, with the Redis store only a ticket to it.
import type { SessionCodec } from './codec.js';
import type { SessionRecord } from './record.js';

export interface SessionStore {
  readonly kind: 'cookie' | 'redis';
  /** The record behind a cookie value; undefined when it does not open (tampered, foreign, gone). Throws ERR_SESSION_STORE_UNAVAILABLE when the store cannot answer. */
  open(cookieValue: string): Promise<{ record: SessionRecord; stale: boolean } | undefined>;
  /** Persists a record; returns the cookie value to send. `previous` is the value being replaced. */
  save(record: SessionRecord, previous: string | undefined): Promise<string>;
  remove(cookieValue: string): Promise<void>;
  /** Whether the store can serve requests (readiness). */
  healthy(): boolean;
  close(): Promise<void>;
}

/** Stateless: the sealed record is the cookie (chunked by the session manager when large). */
export class CookieStore implements SessionStore {
  readonly kind = 'cookie' as const;
  constructor(private readonly codec: SessionCodec, private readonly cookieName: string) {}

  async open(cookieValue: string) {
    const r = this.codec.open<SessionRecord>(this.cookieName, cookieValue);
    if (!r || !isRecord(r.value)) return undefined;
    return { record: r.value, stale: r.stale };
  }

  async save(record: SessionRecord): Promise<string> { return this.codec.seal(this.cookieName, record); }
  async remove(): Promise<void> {}
  healthy(): boolean { return true; }
  async close(): Promise<void> {}
}

/** Shape check after decryption: a sealed value of another kind (e.g. a transaction) never passes as a session. */
export function isRecord(v: unknown): v is SessionRecord {
  const r = v as SessionRecord;
  return !!r && r.v === 1 && typeof r.sid === 'string' && typeof r.createdAt === 'number' && typeof r.seenAt === 'number'
    && !!r.claims && typeof r.claims === 'object' && typeof r.claims.sub === 'string' && typeof r.idToken === 'string';
}
