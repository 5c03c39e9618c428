// Sign-in stage: the per-login transaction (state, nonce, PKCE verifier, return URL), sealed into a
// short-lived cookie named after the flow, so several tabs can sign in at once. Single use; at most
// MAX_TRANSACTIONS live at a time so a login loop cannot grow the Cookie header without bound.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { SessionCodec } from '../session/codec.js';
import type { CookieSettings } from '../session/cookies.js';
import { expireCookie, serializeCookie } from '../session/cookies.js';

export const TRANSACTION_TTL_MS = 10 * 60_000;
export const MAX_TRANSACTIONS = 5;

export interface Transaction {
  t: 'txn';
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  /**
   * The provider the sign-in was started at (`oidc` id): the callback redeems the code there and
   * nowhere else, so a code or ID token of another provider cannot complete it. Absent in
   * transactions started before several providers: the first provider's.
   */
  provider?: string;
  createdAt: number;
  /** Step-up: the `acr_values` sent (the ID token's `acr` must be one of them). */
  acr?: string[];
  /** Step-up: the `max_age` sent, in seconds (the ID token's `auth_time` must be within it). */
  maxAge?: number;
}

export type TransactionResult =
  | { ok: true; txn: Transaction; clear: string }
  | { ok: false; reason: 'missing-state' | 'unknown-state' | 'expired' | 'replayed'; clear?: string };

export class TransactionCookies {
  /**
   * States already used in this process: a replayed callback is refused even with the cookie. Kept
   * for a transaction's lifetime on the same clock as its expiry (a moved test clock moves both).
   */
  private readonly used: LRUCache<string, true>;

  constructor(private readonly codec: SessionCodec, private readonly cookies: CookieSettings, private readonly now: () => number = Date.now) {
    this.used = new LRUCache<string, true>({ max: 10_000, ttl: TRANSACTION_TTL_MS, ttlResolution: 0, perf: { now } });
  }

  /**
   * A new transaction and the Set-Cookie headers that store it (plus expiry of the oldest ones when
   * the cap is reached). The state carries the flow id so the callback finds its cookie.
   */
  begin(requestCookies: Record<string, string | undefined>, values: { nonce: string; verifier: string; returnTo: string; provider: string; acr?: string[]; maxAge?: number }): { txn: Transaction; setCookies: string[] } {
    const now = this.now();
    // Flow id: creation time (so the oldest can be found without decrypting) + randomness.
    const id = now.toString(36).padStart(9, '0') + randomBytes(6).toString('base64url');
    const state = `${id}.${randomBytes(24).toString('base64url')}`;
    const txn: Transaction = { t: 'txn', state, nonce: values.nonce, verifier: values.verifier, returnTo: values.returnTo, provider: values.provider, createdAt: now };
    if (values.acr !== undefined) txn.acr = values.acr;
    if (values.maxAge !== undefined) txn.maxAge = values.maxAge;
    const name = this.cookies.txnPrefix + id;
    const setCookies = [serializeCookie(this.cookies, name, this.codec.seal(name, txn), TRANSACTION_TTL_MS / 1000)];
    const existing = Object.keys(requestCookies).filter((n) => n.startsWith(this.cookies.txnPrefix)).sort();
    const excess = existing.length - (MAX_TRANSACTIONS - 1);
    for (let i = 0; i < excess; i++) setCookies.push(expireCookie(this.cookies, existing[i]!));
    return { txn, setCookies };
  }

  /** Finds, opens and checks the transaction for a callback's state; the cookie is always cleared. */
  finish(requestCookies: Record<string, string | undefined>, state: string | undefined): TransactionResult {
    if (!state) return { ok: false, reason: 'missing-state' };
    const dot = state.indexOf('.');
    const id = dot > 0 ? state.slice(0, dot) : '';
    if (!/^[A-Za-z0-9_-]{10,40}$/.test(id)) return { ok: false, reason: 'unknown-state' };
    const name = this.cookies.txnPrefix + id;
    const raw = requestCookies[name];
    if (raw === undefined) return { ok: false, reason: this.used.has(state) ? 'replayed' : 'unknown-state' };
    const clear = expireCookie(this.cookies, name);
    const opened = this.codec.open<Transaction>(name, raw);
    const txn = opened?.value;
    if (!txn || txn.t !== 'txn' || typeof txn.state !== 'string') return { ok: false, reason: 'unknown-state', clear };
    const a = Buffer.from(txn.state);
    const b = Buffer.from(state);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return { ok: false, reason: 'unknown-state', clear };
    if (this.now() - txn.createdAt > TRANSACTION_TTL_MS) return { ok: false, reason: 'expired', clear };
    if (this.used.has(state)) return { ok: false, reason: 'replayed', clear };
    this.used.set(state, true);
    return { ok: true, txn, clear };
  }
}
