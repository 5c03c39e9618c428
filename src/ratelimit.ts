// Beside the sign-in endpoints: a per-client-IP token bucket for /oauth2/start and /oauth2/callback,
// so one address cannot make Portcullis spend IdP token requests (or mint transaction cookies) at
// will. Buckets live in an LRU: memory stays bounded however many addresses knock.
import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';

export type RateDecision = { ok: true } | { ok: false; retryAfterSec: number };

export interface RateLimiter {
  /** Spends one token from `key`'s bucket. */
  take(key: string): RateDecision;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date, ms. */
  at: number;
}

export interface RateLimiterOptions {
  /** Bucket size: requests allowed at once after a quiet spell. Default: the per-minute rate. */
  burst?: number;
  /** Most buckets kept; the least recently used is forgotten (a forgotten bucket is a full one). Default 100 000. */
  maxKeys?: number;
  now?: () => number;
}

/**
 * A token bucket per key refilling `perMinute` tokens a minute, up to `burst`. `perMinute: 0`
 * disables limiting (returns undefined).
 */
export function createRateLimiter(perMinute: number, opts: RateLimiterOptions = {}): RateLimiter | undefined {
  if (!(perMinute > 0)) return undefined;
  const burst = Math.max(1, opts.burst ?? perMinute);
  const perMs = perMinute / 60_000;
  const now = opts.now ?? Date.now;
  // An idle bucket is full again after burst / rate; after that it may as well be forgotten.
  const ttl = Math.ceil(burst / perMs);
  const buckets = new LRUCache<string, Bucket>({ max: opts.maxKeys ?? 100_000, ttl, ttlAutopurge: false });
  return {
    take(key) {
      const t = now();
      const b = buckets.get(key) ?? { tokens: burst, at: t };
      b.tokens = Math.min(burst, b.tokens + (t - b.at) * perMs);
      b.at = t;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        buckets.set(key, b);
        return { ok: true };
      }
      buckets.set(key, b);
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) };
    },
  };
}

/**
 * The bucket key for a client address. IPv6 clients are keyed by their /64: one subscriber usually
 * holds a whole /64 and could otherwise walk through fresh addresses.
 */
export function clientKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4mapped) return v4mapped[1]!;
  if (!isIPv6(ip)) return ip;
  return `${expandIPv6(ip).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(ip: string): string[] {
  const [head = '', tail] = ip.split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''));
}
