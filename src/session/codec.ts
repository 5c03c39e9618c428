// Session stage: the only place that touches session keys. Seals and opens cookie values with
// AES-256-GCM (node:crypto), a fresh random IV per seal and the cookie's name bound as associated
// data, so a value cannot be moved from one cookie (e.g. a login transaction) to another.
//
// Key rotation: `session.secrets` is a list; the first secret seals, every secret opens. Each
// sealed value names the key that sealed it by a short key id, so opening costs one decryption.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

const VERSION = 'v1';
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
    const k = this.keys[0]!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', k.key, iv);
    cipher.setAAD(Buffer.from(name, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return `${VERSION}.${Buffer.concat([k.kid, iv, ct, cipher.getAuthTag()]).toString('base64url')}`;
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
    if (typeof sealed !== 'string' || !sealed.startsWith(`${VERSION}.`) || sealed.length > 64 * 1024) return undefined;
    const body = sealed.slice(VERSION.length + 1);
    const raw = Buffer.from(body, 'base64url');
    // Node's decoder tolerates stray characters and padding; only the canonical spelling opens, so
    // one session cannot have endless cookie spellings (each a session-cache miss).
    if (raw.toString('base64url') !== body) return undefined;
    if (raw.length < KID_BYTES + IV_BYTES + TAG_BYTES) return undefined;
    const k = this.byKid.get(raw.subarray(0, KID_BYTES).toString('hex'));
    if (!k) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', k.key, raw.subarray(KID_BYTES, KID_BYTES + IV_BYTES));
      decipher.setAAD(Buffer.from(name, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const pt = Buffer.concat([decipher.update(raw.subarray(KID_BYTES + IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
      return { value: pt, stale: k !== this.keys[0] };
    } catch {
      return undefined;
    }
  }
}
