// Identity stage: X-Portcullis-Assertion — a short-lived JWT an upstream can verify with the keys
// at /oauth2/jwks.json, for services that want proof rather than a plain header. Signed with jose;
// cached per session and route for half its lifetime so the hot path rarely signs.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type CryptoKey as JoseKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Principal } from './headers.js';

interface SigningKey { kid: string; alg: string; key: JoseKey | Uint8Array; publicJwk: JWK }

export interface AssertionSettings { keysFile: string | undefined; algorithm: 'ES256' | 'RS256' | 'EdDSA' }

export class AssertionSigner {
  private readonly cache = new LRUCache<string, { jwt: string; renewAt: number }>({ max: 100_000 });

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

  /** A signed assertion for this principal and route (reused for half its lifetime). */
  async assertion(routeName: string, audience: string, ttlSec: number, who: Principal): Promise<string> {
    const sub = String(who.claims.sub ?? '');
    const cacheKey = `${routeName}\0${who.sid ?? `bearer:${sub}`}`;
    const now = this.now();
    const hit = this.cache.get(cacheKey);
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
    this.cache.set(cacheKey, { jwt, renewAt: now + (ttlSec * 1000) / 2 });
    return jwt;
  }
}
