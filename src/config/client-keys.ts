// Config, boot: the private keys of `private_key_jwt` client authentication (RFC 7523, OIDC Core
// §9) — `oidc.clientKeysFile` (a JWK Set or PEM) read and checked at start, so a bad file is a config
// error at its key path like every other `*File` secret. Synchronous (node:crypto); importing for
// signing, the RFC 7638 key ids and publishing are the sign-in stage's (src/signin/client-keys.ts).
import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';

/** The algorithms a client assertion may be signed with: RSA (RS256, or PS256 by the key's `alg`) and EC P-256. */
export type ClientKeyAlg = 'RS256' | 'PS256' | 'ES256';

/** One private key as compiled into the config: plain data (the config is frozen and compared on reload). */
export interface ClientKey {
  /** The file's `kid`; undefined → the RFC 7638 thumbprint of the public key. */
  kid: string | undefined;
  alg: ClientKeyAlg;
  /** The private key as a JWK, normalised by node:crypto (only the key's own members). */
  jwk: JWK;
  /**
   * The key's X.509 certificate, when the file has one (a PEM CERTIFICATE block, or the JWK's
   * `x5c`): published as `x5c`, and its thumbprints go into every client assertion's header as
   * `x5t` (SHA-1) and `x5t#S256` — Microsoft Entra ID identifies certificate credentials by them.
   */
  cert?: { x5c: string[]; x5t: string; x5tS256: string } | undefined;
}

/** Members of a public RSA or EC key. A whitelist: nothing private (d, p, q, dp, dq, qi, k, oth) can pass. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = { RSA: ['kty', 'n', 'e'], EC: ['kty', 'crv', 'x', 'y'] };

const MIN_RSA_BITS = 2048;

/**
 * The keys of a client keys file: a JWK Set of private keys (`{"keys": [...]}`, or one JWK), or
 * PEM private keys (PKCS#8 `PRIVATE KEY`, also PKCS#1/SEC1). The first key signs; all are published
 * so a rotation can be staged. A key may come with its X.509 certificate — a PEM `CERTIFICATE`
 * block anywhere in the file (matched to its key by the public key), or the JWK's `x5c` — for IdPs
 * that identify client keys by certificate thumbprint (Entra ID); a certificate that is none of the
 * keys', a second one for a key, or certificates without keys are problems too.
 * Returns the problems instead when any key is unusable: a public key
 * only, an HMAC (`oct`) key, RSA under 2048 bits, an EC curve other than P-256, another key type, an
 * `alg` that does not fit the key, `use` other than `sig`, a repeated `kid`, no key at all.
 */
export function parseClientKeys(text: string, file: string): { keys: ClientKey[] } | { errors: string[] } {
  const errors: string[] = [];
  const keys: ClientKey[] = [];
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let doc: unknown;
    try { doc = JSON.parse(trimmed); } catch (err) { return { errors: [`${file} is not valid JSON (${(err as Error).message.slice(0, 120)})`] }; }
    const list = isObject(doc) && Array.isArray(doc.keys) ? doc.keys : isObject(doc) && typeof doc.kty === 'string' ? [doc] : undefined;
    if (!list) return { errors: [`${file} is neither a JWK Set ({"keys": [...]}) nor a JWK`] };
    list.forEach((jwk, i) => {
      const r = fromJwk(jwk);
      if ('error' in r) errors.push(`${file} key ${i + 1}${isObject(jwk) && typeof jwk.kid === 'string' ? ` (kid ${JSON.stringify(jwk.kid.slice(0, 60))})` : ''}: ${r.error}`);
      else keys.push(r.key);
    });
  } else if (trimmed.includes('-----BEGIN')) {
    const blocks = trimmed.match(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g) ?? [];
    if (blocks.length === 0) return { errors: [`${file}: a PEM block is not terminated (-----END …-----)`] };
    const certs = blocks.filter((b) => b.startsWith('-----BEGIN CERTIFICATE-----'));
    const keyObjects: KeyObject[] = [];
    blocks.filter((b) => !certs.includes(b)).forEach((pem, i) => {
      const r = fromPem(pem);
      if ('error' in r) errors.push(`${file} key ${i + 1}: ${r.error}`);
      else {
        keys.push(r.key);
        keyObjects.push(r.object);
      }
    });
    if (certs.length > 0 && keys.length === 0 && errors.length === 0) {
      return { errors: [`${file}: certificates only; private_key_jwt needs the private key too (PEM: the key, then its certificate)`] };
    }
    certs.forEach((pem, i) => {
      const r = certificate([pem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '')]);
      if ('error' in r) { errors.push(`${file} certificate ${i + 1}: ${r.error}`); return; }
      const k = keyObjects.findIndex((o) => r.x509.checkPrivateKey(o));
      if (k === -1) errors.push(`${file} certificate ${i + 1} (${r.x509.subject.replace(/\n/g, ', ').slice(0, 80)}): its public key is none of the file's private keys`);
      else if (keys[k]!.cert) errors.push(`${file} certificate ${i + 1}: key ${k + 1} has a certificate already; one per key`);
      else keys[k]!.cert = r.cert;
    });
  } else {
    return { errors: [`${file} holds neither a JWK Set nor PEM private keys (e.g. \`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.pem\`)`] };
  }
  const seen = new Set<string>();
  for (const k of keys) {
    if (k.kid === undefined) continue;
    if (seen.has(k.kid)) errors.push(`${file}: kid ${JSON.stringify(k.kid.slice(0, 60))} appears twice; each key needs its own`);
    seen.add(k.kid);
  }
  if (errors.length > 0) return { errors };
  if (keys.length === 0) return { errors: [`${file} holds no keys; private_key_jwt needs at least one private key (the first signs)`] };
  return { keys };
}

function fromJwk(jwk: unknown): { key: ClientKey } | { error: string } {
  if (!isObject(jwk) || typeof jwk.kty !== 'string') return { error: 'not a JWK (no kty)' };
  if (jwk.kty === 'oct') return { error: 'a shared (oct, HMAC) key; private_key_jwt signs with an asymmetric private key (RSA or EC P-256)' };
  if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || jwk.kid === '')) return { error: 'kid must be a non-empty string' };
  if (jwk.use !== undefined && jwk.use !== 'sig') return { error: `use is ${JSON.stringify(String(jwk.use)).slice(0, 20)}; a client authentication key signs (use: sig, or no use)` };
  if ((jwk.kty === 'RSA' || jwk.kty === 'EC') && jwk.d === undefined) return { error: 'a public key only; private_key_jwt needs the private key (the public part is published at /oauth2/client-jwks.json)' };
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
  } catch (err) {
    return { error: `not a usable private key (${(err as Error).message.slice(0, 120)})` };
  }
  const r = checked(key, typeof jwk.kid === 'string' ? jwk.kid : undefined, jwk.alg);
  if ('error' in r || jwk.x5c === undefined) return r;
  if (!Array.isArray(jwk.x5c) || jwk.x5c.length === 0 || !jwk.x5c.every((c) => typeof c === 'string')) return { error: 'x5c must be a list of base64 DER certificates, the key\'s own first' };
  const c = certificate(jwk.x5c as string[]);
  if ('error' in c) return { error: `x5c: ${c.error}` };
  if (!c.x509.checkPrivateKey(key)) return { error: 'x5c: the first certificate is not this key\'s (its public key differs)' };
  return { key: { ...r.key, cert: c.cert } };
}

/**
 * A certificate chain (base64 DER, the key's own first, as in `x5c`), every entry readable, and the
 * first one's RFC 7515 thumbprints. Published as read back from DER, so nothing but certificates
 * reaches /oauth2/client-jwks.json.
 */
function certificate(x5c: string[]): { x509: X509Certificate; cert: NonNullable<ClientKey['cert']> } | { error: string } {
  const chain: X509Certificate[] = [];
  for (const [i, b64] of x5c.entries()) {
    try {
      chain.push(new X509Certificate(Buffer.from(b64, 'base64')));
    } catch (err) {
      return { error: `${i === 0 ? '' : `chain entry ${i + 1}: `}not a readable X.509 certificate (${(err as Error).message.slice(0, 120)})` };
    }
  }
  const x509 = chain[0]!;
  const der = x509.raw;
  return {
    x509,
    cert: {
      x5c: chain.map((c) => c.raw.toString('base64')),
      x5t: createHash('sha1').update(der).digest('base64url'),
      x5tS256: createHash('sha256').update(der).digest('base64url'),
    },
  };
}

function fromPem(pem: string): { key: ClientKey; object: KeyObject } | { error: string } {
  if (/-----BEGIN (RSA |EC )?PUBLIC KEY-----/.test(pem)) {
    return { error: 'a public key only; private_key_jwt needs the private key (e.g. `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)' };
  }
  if (/ENCRYPTED/.test(pem)) return { error: 'an encrypted private key; store it unencrypted (mounted as a secret, readable only by Portcullis)' };
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    return { error: `not a usable PEM private key (${(err as Error).message.slice(0, 120)})` };
  }
  const r = checked(key, undefined, undefined);
  return 'error' in r ? r : { key: r.key, object: key };
}

/** The key's type, curve and size, and the algorithm it signs with. */
function checked(key: KeyObject, kid: string | undefined, alg: unknown): { key: ClientKey } | { error: string } {
  const details = key.asymmetricKeyDetails ?? {};
  let use: ClientKeyAlg;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return { error: `an RSA key of ${bits} bits; at least ${MIN_RSA_BITS} are required` };
    if (alg !== undefined && alg !== 'RS256' && alg !== 'PS256') return { error: `alg ${JSON.stringify(String(alg)).slice(0, 20)} with an RSA key; RS256 (default) or PS256` };
    use = (alg as ClientKeyAlg | undefined) ?? 'RS256';
  } else if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve !== 'prime256v1') return { error: `an EC key on curve ${details.namedCurve ?? 'unknown'}; only P-256 (ES256) is supported` };
    if (alg !== undefined && alg !== 'ES256') return { error: `alg ${JSON.stringify(String(alg)).slice(0, 20)} with an EC P-256 key; ES256` };
    use = 'ES256';
  } else {
    return { error: `a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; private_key_jwt keys are RSA (RS256/PS256) or EC P-256 (ES256)` };
  }
  return { key: { kid, alg: use, jwk: key.export({ format: 'jwk' }) as JWK } };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The public half of a key, with `kid`, `alg` and `use: sig`: the members of PUBLIC_MEMBERS and
 * nothing else — and, when it has a certificate, `x5c`, `x5t` and `x5t#S256` (public too).
 */
export function publicJwk(k: ClientKey, kid: string): JWK {
  const out: Record<string, unknown> = {};
  for (const m of PUBLIC_MEMBERS[k.jwk.kty!] ?? []) out[m] = (k.jwk as Record<string, unknown>)[m];
  const cert = k.cert ? { x5c: k.cert.x5c, x5t: k.cert.x5t, 'x5t#S256': k.cert.x5tS256 } : {};
  return { ...out, kid, alg: k.alg, use: 'sig', ...cert } as JWK;
}

