// Session stage: the only place that touches session keys. Seals and opens cookie values with
// AES-256-GCM (node:crypto), a fresh random IV per seal and the cookie's name bound as associated
// data, so a value cannot be moved from one cookie (e.g. a login transaction) to another.
//
// Key rotation: `session.secrets` is a list; the first secret seals, every secret opens. Each
// sealed value names the key that sealed it by a short key id, so opening costs one decryption.
//
// Compression: a value whose JSON is COMPRESS_MIN bytes or more (in practice a session record with
// tokens and a long `groups` list) is deflated before it is encrypted, when that makes it smaller,
// and sealed as `v2.`; everything else is sealed as `v1.` exactly as before, and `v1.` values
// (cookies issued before compression existed) still open. The version is also bound into v2's
// associated data, so relabelling a value as the other version never opens it.
//
// Why compress-then-encrypt is safe here (CRIME/BREACH): those attacks need an attacker to place
// chosen text into the same compressed stream as a secret, and to watch the ciphertext length over
// many tries while the secret stays the same. A sealed session holds the IdP's claims and the
// tokens; the claims are what the IdP asserts (a user can at most edit their own profile fields,
// and only by signing in again to get them sealed), and every sealing that carries new claims
// carries new tokens too (a sign-in or a refresh), so no secret survives unchanged across the
// guesses an attacker would need. Nothing request-controlled (paths, query, headers) is ever
// sealed into a compressed value. Transaction cookies and Redis tickets stay under COMPRESS_MIN.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { constants as zlib, deflateRawSync, inflateRawSync } from 'node:zlib';

const VERSION = 'v1';
/** Deflated (raw DEFLATE, RFC 1951) before encryption. */
const VERSION_DEFLATED = 'v2';
/** Smaller plaintexts are never compressed (nothing to gain; transaction cookies stay v1). */
export const COMPRESS_MIN = 1024;
/** Inflating never produces more than this (the input is authenticated first; a bound anyway). */
const INFLATE_MAX = 1024 * 1024;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KID_BYTES = 4;

interface SealKey { kid: Buffer; key: Buffer }

export interface Opened<T> {
  value: T;
  /** Opened with a secret other than the first: the caller should re-seal on the next response. */
  stale: boolean;
}

export class SessionCodec {
  private readonly keys: SealKey[];
  private readonly byKid = new Map<string, SealKey>();

  constructor(secrets: readonly string[], purpose = 'portcullis session v1') {
    if (secrets.length === 0) throw new Error('at least one session secret is required');
    // Each configured secret is stretched into a 256-bit key with HKDF; the purpose string keeps
    // keys for different uses (cookies vs. Redis ticket) apart even from one secret.
    this.keys = secrets.map((s) => {
      const key = Buffer.from(hkdfSync('sha256', Buffer.from(s, 'utf8'), Buffer.alloc(0), purpose, 32));
      const kid = createHash('sha256').update(key).digest().subarray(0, KID_BYTES);
      return { kid, key };
    });
    for (const k of this.keys) if (!this.byKid.has(k.kid.toString('hex'))) this.byKid.set(k.kid.toString('hex'), k);
  }

  /** Encrypts a JSON-serialisable value for the cookie `name`. */
  seal(name: string, value: unknown): string {
    return this.sealBytes(name, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  sealBytes(name: string, plaintext: Buffer): string {
    if (plaintext.length >= COMPRESS_MIN) {
      const deflated = deflateRawSync(plaintext, { level: zlib.Z_BEST_COMPRESSION });
      if (deflated.length < plaintext.length) return this.encrypt(VERSION_DEFLATED, aadOf(name, VERSION_DEFLATED), deflated);
    }
    return this.encrypt(VERSION, aadOf(name, VERSION), plaintext);
  }

  private encrypt(version: string, aad: Buffer, plaintext: Buffer): string {
    const k = this.keys[0]!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', k.key, iv);
    cipher.setAAD(aad);
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return `${version}.${Buffer.concat([k.kid, iv, ct, cipher.getAuthTag()]).toString('base64url')}`;
  }

  /** Opens a sealed value; undefined for anything that does not authenticate (tampered, truncated, foreign, old key). */
  open<T = unknown>(name: string, sealed: string): Opened<T> | undefined {
    const r = this.openBytes(name, sealed);
    if (!r) return undefined;
    try {
      return { value: JSON.parse(r.value.toString('utf8')) as T, stale: r.stale };
    } catch {
      return undefined;
    }
  }

  openBytes(name: string, sealed: string): Opened<Buffer> | undefined {
    if (typeof sealed !== 'string' || sealed.length > 64 * 1024) return undefined;
    const version = sealed.startsWith(`${VERSION}.`) ? VERSION : sealed.startsWith(`${VERSION_DEFLATED}.`) ? VERSION_DEFLATED : undefined;
    if (version === undefined) return undefined;
    const body = sealed.slice(version.length + 1);
    const raw = Buffer.from(body, 'base64url');
    // Node's decoder tolerates stray characters and padding; only the canonical spelling opens, so
    // one session cannot have endless cookie spellings (each a session-cache miss).
    if (raw.toString('base64url') !== body) return undefined;
    if (raw.length < KID_BYTES + IV_BYTES + TAG_BYTES) return undefined;
    const k = this.byKid.get(raw.subarray(0, KID_BYTES).toString('hex'));
    if (!k) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', k.key, raw.subarray(KID_BYTES, KID_BYTES + IV_BYTES));
      decipher.setAAD(aadOf(name, version));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const pt = Buffer.concat([decipher.update(raw.subarray(KID_BYTES + IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
      return { value: version === VERSION_DEFLATED ? inflateRawSync(pt, { maxOutputLength: INFLATE_MAX }) : pt, stale: k !== this.keys[0] };
    } catch {
      return undefined;
    }
  }
}

/** v1 binds the cookie name (as it always did); v2 binds the name and its version (a NUL cannot occur in a cookie name). */
function aadOf(name: string, version: string): Buffer {
  return Buffer.from(version === VERSION ? name : `${name}\u0000${version}`, 'utf8');
}
