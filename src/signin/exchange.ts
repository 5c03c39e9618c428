// Per-upstream tokens (RFC 8693 token exchange): a route with `tokenExchange: { audience, scope }`
// passes the upstream a token the IdP issued for that audience instead of the user's own, broader
// one — what a compromised upstream can do with it is limited to itself. Exchanged tokens are
// cached per session (or per bearer token) and audience until shortly before they expire, with one
// exchange per key in flight.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface ExchangeHooks {
  exchange(subjectToken: string, audience: string, scope: string | undefined): Promise<{ token: string; expiresInSec: number | undefined }>;
  now?: () => number;
  count?: (result: 'exchanged' | 'cached' | 'refused' | 'error') => void;
}

/** Reused until this long before it expires (an upstream must not receive a token about to lapse). */
const EXPIRY_MARGIN_MS = 30_000;
/** Without `expires_in`: reused this long. */
const DEFAULT_TTL_MS = 60_000;

export class TokenExchanger {
  private readonly cache: LRUCache<string, string>;
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(private readonly hooks: ExchangeHooks, maxEntries = 10_000) {
    this.cache = new LRUCache<string, string>({ max: maxEntries, ttl: DEFAULT_TTL_MS, ttlResolution: 0, ttlAutopurge: false, perf: { now: () => this.now() } });
  }

  private now(): number {
    return (this.hooks.now ?? Date.now)();
  }

  /**
   * The token for `audience` standing in for `subjectToken`. `session`: the Portcullis session id
   * (absent for a bearer token: the token's hash is the key). Rejects with the IdP's coded refusal
   * (502) or failure (5xx).
   */
  async token(subjectToken: string, session: string | undefined, audience: string, scope: string | undefined): Promise<string> {
    // The subject token is part of the key even with a session: a refresh gives a new one.
    const key = createHash('sha256').update(`${session ?? ''}\0${subjectToken}\0${audience}\0${scope ?? ''}`).digest('base64url');
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      this.hooks.count?.('cached');
      return hit;
    }
    let p = this.inflight.get(key);
    if (!p) {
      p = this.hooks.exchange(subjectToken, audience, scope).then(
        ({ token, expiresInSec }) => {
          this.hooks.count?.('exchanged');
          const ttl = expiresInSec === undefined ? DEFAULT_TTL_MS : expiresInSec * 1000 - EXPIRY_MARGIN_MS;
          if (ttl > 0) this.cache.set(key, token, { ttl });
          return token;
        },
        (err: unknown) => {
          this.hooks.count?.((err as { code?: string }).code === 'ERR_TOKEN_EXCHANGE_REFUSED' ? 'refused' : 'error');
          throw err;
        },
      ).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }
}
