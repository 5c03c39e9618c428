// Bearer tokens the IdP can revoke: RFC 7662 token introspection for API clients, for IdPs that
// issue opaque access tokens and for routes where a revoked token must stop working before it
// expires. A JWT verified locally is fast but valid until its `exp`; an introspected token is asked
// about at the IdP — so it is cached, and the cache TTL is the revocation lag (docs/identity.md).
//
// A token is accepted only when the IdP says `active: true`, its `iss` (when present) is the
// issuer, its audience — `aud`, or the `client_id` it was issued to when the IdP gives no `aud` —
// is one of `oidc.bearerAudiences`, its `exp` (when present) is in the future, and it is not a
// refresh token. Results are cached by the token's SHA-256 (never a prefix, never the token
// itself) for `introspection.cacheTtl`, never past the token's `exp`; refusals for
// `introspection.negativeCacheTtl`; one request per token in flight (single-flight); at most
// `introspection.cacheMaxEntries`. When the IdP cannot answer, an uncached token is refused with
// a 5xx — never allowed — while cached positives keep working until their TTL.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { coded, type PortcullisError } from '../errors.js';

/** What the IdP's introspection endpoint answered (RFC 7662 §2.2), as JSON. */
export type IntrospectionResponse = Record<string, unknown>;

export interface IntrospectionSettings {
  issuer: string;
  audiences: readonly string[];
  cacheTtlMs: number;
  negativeCacheTtlMs: number;
  cacheMaxEntries: number;
  clockToleranceSec: number;
}

export interface IntrospectionHooks {
  /** Asks the IdP (src/signin/idp.ts); rejects with a coded IdP error when it cannot answer. */
  introspect(token: string): Promise<IntrospectionResponse>;
  now?: () => number;
  /** Metrics: an IdP answer (`active`, `inactive`) or a failure (`error`); cache `hit`/`miss`. */
  observe?: (result: 'active' | 'inactive' | 'error') => void;
  cache?: (result: 'hit' | 'miss') => void;
}

type Entry = { ok: true; claims: Record<string, unknown>; sub?: string; sid?: string } | { ok: false; why: string };

export class Introspector {
  private readonly cache: LRUCache<string, Entry>;
  private readonly inflight = new Map<string, Promise<Entry>>();
  /** Cached positives by `sub` and `sid`, so a back-channel logout or an admin revoke purges them. */
  private readonly bySubject = new Map<string, Set<string>>();

  constructor(private readonly s: IntrospectionSettings, private readonly hooks: IntrospectionHooks) {
    this.cache = new LRUCache<string, Entry>({
      max: Math.max(1, s.cacheMaxEntries),
      ttlAutopurge: false,
      // TTLs run on the injected clock (tests move it; nothing sleeps), read on every lookup.
      ttlResolution: 0,
      perf: { now: () => this.now() },
      ttl: s.cacheTtlMs,
      dispose: (e, key) => { if (e.ok) this.unindex(key, e); },
    });
  }

  private now(): number {
    return (this.hooks.now ?? Date.now)();
  }

  /** The token's claims, or throws: `invalid_token` (401) when refused, a coded IdP error (5xx) when the IdP cannot say. */
  async check(token: string): Promise<Record<string, unknown>> {
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.cache.get(key);
    if (cached) {
      this.hooks.cache?.('hit');
      return this.answer(cached);
    }
    this.hooks.cache?.('miss');
    let p = this.inflight.get(key);
    if (!p) {
      p = this.ask(key, token).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return this.answer(await p);
  }

  /** Drops cached positives of a subject or an IdP session (back-channel logout, admin revoke). */
  purge(r: { sub?: string; sid?: string }): number {
    let n = 0;
    for (const id of [r.sub && `sub:${r.sub}`, r.sid && `sid:${r.sid}`]) {
      if (!id) continue;
      for (const key of [...(this.bySubject.get(id) ?? [])]) if (this.cache.delete(key)) n++;
    }
    return n;
  }

  private answer(e: Entry): Record<string, unknown> {
    if (e.ok) return e.claims;
    throw coded('invalid_token', { cause: new Error(`introspection: ${e.why}`) });
  }

  private async ask(key: string, token: string): Promise<Entry> {
    let said: IntrospectionResponse;
    try {
      said = await this.hooks.introspect(token);
    } catch (err) {
      // Never an "allow", never cached: the next request asks again.
      this.hooks.observe?.('error');
      throw err as PortcullisError;
    }
    const why = this.refusal(said);
    this.hooks.observe?.(why ? 'inactive' : 'active');
    if (why) {
      const e: Entry = { ok: false, why };
      this.cache.set(key, e, { ttl: this.s.negativeCacheTtlMs });
      return e;
    }
    const claims = { ...said };
    delete claims.active;
    const exp = typeof said.exp === 'number' ? said.exp * 1000 : undefined;
    const ttl = Math.max(1, Math.min(this.s.cacheTtlMs, exp !== undefined ? exp - this.now() : Infinity));
    const e: Entry = { ok: true, claims, sub: typeof said.sub === 'string' ? said.sub : undefined, sid: typeof said.sid === 'string' ? said.sid : undefined };
    this.cache.set(key, e, { ttl });
    this.index(key, e);
    return e;
  }

  /** Why an IdP's answer does not let the token in; undefined when it does. */
  private refusal(r: IntrospectionResponse): string | undefined {
    if (r.active !== true) return 'the identity provider says the token is not active';
    if (r.iss !== undefined && r.iss !== this.s.issuer) return `issued by ${JSON.stringify(String(r.iss)).slice(0, 80)}, not this issuer`;
    const now = Math.floor(this.now() / 1000);
    if (typeof r.exp === 'number' && r.exp + this.s.clockToleranceSec <= now) return 'expired';
    if (typeof r.nbf === 'number' && r.nbf - this.s.clockToleranceSec > now) return 'not valid yet (nbf)';
    if (typeof r.token_type === 'string' && /refresh/i.test(r.token_type)) return `a ${r.token_type.slice(0, 40)}, not an access token`;
    const aud = r.aud === undefined ? [] : Array.isArray(r.aud) ? r.aud : [r.aud];
    // RFC 7662 makes `aud` optional; IdPs that omit it (oidc-provider without resource indicators)
    // still say which client the token was issued to. One of them must be an accepted audience.
    const named = aud.length > 0 ? aud : typeof r.client_id === 'string' ? [r.client_id] : [];
    if (!named.some((a) => typeof a === 'string' && this.s.audiences.includes(a))) {
      return `audience ${JSON.stringify(named).slice(0, 120)} is not one of oidc.bearerAudiences`;
    }
    // As for bearer JWTs: a token must name its user (identity headers and rules need one).
    if (typeof r.sub !== 'string' || r.sub === '') return 'no sub';
    return undefined;
  }

  private index(key: string, e: Extract<Entry, { ok: true }>): void {
    for (const id of [e.sub && `sub:${e.sub}`, e.sid && `sid:${e.sid}`]) {
      if (!id) continue;
      let set = this.bySubject.get(id);
      if (!set) { set = new Set(); this.bySubject.set(id, set); }
      set.add(key);
    }
  }

  private unindex(key: string, e: Extract<Entry, { ok: true }>): void {
    for (const id of [e.sub && `sub:${e.sub}`, e.sid && `sid:${e.sid}`]) {
      if (!id) continue;
      const set = this.bySubject.get(id);
      set?.delete(key);
      if (set && set.size === 0) this.bySubject.delete(id);
    }
  }
}

/** A JWS compact serialization (three base64url parts, a JSON header naming an `alg`): `jwt-then-introspect` verifies it locally. */
export function isJwt(token: string): boolean {
  const dot = token.indexOf('.');
  if (dot <= 0 || token.split('.').length !== 3 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) return false;
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as unknown;
    return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}
