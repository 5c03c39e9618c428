// Identity stage: X-Portcullis-Assertion — a short-lived JWT an upstream can verify with the keys
// at /oauth2/jwks.json, for services that want proof rather than a plain header. Signed with jose;
// reused for half its lifetime so the hot path rarely signs — per route and per claims: for a
// session, per claims object (a refresh or any claim change makes a new one, so a new assertion);
// for a bearer token, per token (a hash of it: two tokens of one subject never share one).
import { hash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type CryptoKey as JoseKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Principal } from './headers.js';
import type { Claims } from './templates.js';

interface SigningKey { kid: string; alg: string; key: JoseKey | Uint8Array; publicJwk: JWK }

interface Cached { jwt: string; renewAt: number }

export interface AssertionSettings { keysFile: string | undefined; algorithm: 'ES256' | 'RS256' | 'EdDSA' }

export class AssertionSigner {
  /** Bearer principals: by route and a hash of the token (claims objects are new on every request). */
  private readonly byToken = new LRUCache<string, Cached>({ max: 100_000 });
  /**
   * Sessions: by the claims object itself, then route. Claims are never changed in place — a
   * refresh (or a session opened afresh) brings a new object — so an assertion cannot outlive the
   * claims it was signed from, and entries go with the session view that holds them.
   */
  private readonly byClaims = new WeakMap<Claims, Map<string, Cached>>();

  private constructor(private readonly issuer: string, private readonly keys: SigningKey[], private readonly now: () => number) {}

  /**
   * Keys come from `assertionSigning.keysFile` (a JWKS of private keys; the first signs, all are
   * published — add the new key first to rotate, remove the old one after the longest assertion
   * lifetime). Without a file a key is generated at start: fine for one process, but every restart
   * and every replica then has its own (a startup warning says so).
   */
  static async create(issuer: string, s: AssertionSettings, log: { warn: (o: object, m: string) => void }, now: () => number = Date.now): Promise<AssertionSigner> {
    const keys: SigningKey[] = [];
    if (s.keysFile) {
      const jwks = JSON.parse(readFileSync(s.keysFile, 'utf8')) as { keys?: JWK[] };
      for (const jwk of jwks.keys ?? []) {
        const alg = jwk.alg ?? s.algorithm;
        const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
        const kid = jwk.kid ?? await calculateJwkThumbprint(pub);
        keys.push({ kid, alg, key: await importJWK(jwk, alg), publicJwk: { ...pub, kid, alg, use: 'sig' } });
      }
      if (keys.length === 0) throw new Error(`assertionSigning.keysFile ${s.keysFile} holds no keys`);
    } else {
      const { privateKey, publicKey } = await generateKeyPair(s.algorithm, { extractable: true });
      const pub = await exportJWK(publicKey);
      const kid = await calculateJwkThumbprint(pub);
      keys.push({ kid, alg: s.algorithm, key: privateKey, publicJwk: { ...pub, kid, alg: s.algorithm, use: 'sig' } });
      log.warn({ kid }, 'assertionSigning.keysFile is not set: generated a signing key for X-Portcullis-Assertion; it changes on restart and differs between replicas');
    }
    return new AssertionSigner(issuer, keys, now);
  }

  /** The public keys, for /oauth2/jwks.json. */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.publicJwk) };
  }

  /** A signed assertion for this principal and route (reused for half its lifetime, while the claims — or the bearer token — are the same). */
  async assertion(routeName: string, audience: string, ttlSec: number, who: Principal): Promise<string> {
    const sub = String(who.claims.sub ?? '');
    const now = this.now();
    const routeKey = `${routeName}\0${audience}\0${ttlSec}\0${who.sid ?? ''}`;
    let perClaims: Map<string, Cached> | undefined;
    let tokenKey: string | undefined;
    if (who.sid === undefined && who.accessToken !== undefined) tokenKey = `${routeKey}\0${hash('sha256', who.accessToken, 'base64url')}`;
    else {
      perClaims = this.byClaims.get(who.claims);
      if (!perClaims) { perClaims = new Map(); this.byClaims.set(who.claims, perClaims); }
    }
    const hit = tokenKey !== undefined ? this.byToken.get(tokenKey) : perClaims!.get(routeKey);
    if (hit && now < hit.renewAt) return hit.jwt;
    const k = this.keys[0]!;
    const iat = Math.floor(now / 1000);
    const c = who.claims;
    const jwt = await new SignJWT({
      email: typeof c.email === 'string' ? c.email : undefined,
      preferred_username: typeof c.preferred_username === 'string' ? c.preferred_username : undefined,
      groups: Array.isArray(c.groups) ? c.groups : undefined,
      sid: who.sid,
    })
      .setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(audience)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttlSec)
      .setJti(randomUUID())
      .sign(k.key);
    const entry = { jwt, renewAt: now + (ttlSec * 1000) / 2 };
    if (tokenKey !== undefined) this.byToken.set(tokenKey, entry);
    else perClaims!.set(routeKey, entry);
    return jwt;
  }
}
