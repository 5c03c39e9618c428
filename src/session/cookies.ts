// Session stage: Portcullis's own cookies — their names, attributes, chunking of large values, and
// removal from what the upstream sees. Values arrive here already sealed by the codec.
import { stringifySetCookie } from 'cookie';

/** Browsers reject cookies over ~4096 bytes (name + value + attributes); split below that. */
export const CHUNK_BYTES = 3800;
/** An attacker's `name_99999` must cost nothing: never read more chunks than this. */
export const MAX_CHUNKS = 10;
/**
 * The largest session cookie value Portcullis writes (3 chunks). Node refuses requests whose
 * headers exceed 16 KiB (its default --max-http-header-size; 431), and the browser's own headers
 * and the site's other cookies share that room: a bigger session would be set once and then refuse
 * every request after it. The session manager falls back (drops the ID token, then refuses the
 * sign-in with ERR_SESSION_TOO_LARGE) rather than write more.
 */
export const SESSION_VALUE_MAX = CHUNK_BYTES * 3;

export interface CookieSettings {
  /** Full session cookie name with its prefix, e.g. `__Host-portcullis`. */
  session: string;
  /** Transaction cookie name prefix, e.g. `__Host-portcullis_txn_`. */
  txnPrefix: string;
  secure: boolean;
  domain: string | undefined;
}

/**
 * `__Host-` on https without a cookie domain (the browser then guarantees Secure, Path=/ and no
 * Domain — no subdomain can plant or overwrite it); `__Secure-` when a cookieDomain shares the
 * session across hosts; no prefix on plain http (development only; a startup warning says so).
 */
export function cookieSettings(publicUrl: string, baseName: string, domain: string | undefined): CookieSettings {
  const secure = publicUrl.startsWith('https:');
  const prefix = secure ? (domain ? '__Secure-' : '__Host-') : '';
  return { session: `${prefix}${baseName}`, txnPrefix: `${prefix}${baseName}_txn_`, secure, domain };
}

export function serializeCookie(s: CookieSettings, name: string, value: string, maxAgeSec: number | undefined): string {
  return stringifySetCookie({
    name,
    value,
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: s.secure,
    domain: s.domain,
    maxAge: maxAgeSec,
  });
}

export function expireCookie(s: CookieSettings, name: string): string {
  return stringifySetCookie({ name, value: '', path: '/', httpOnly: true, sameSite: 'lax', secure: s.secure, domain: s.domain, maxAge: 0, expires: new Date(0) });
}

/** Reads the session cookie value, joining `name_0`, `name_1`, … when it was chunked. */
export function readChunked(cookies: Record<string, string | undefined>, name: string): string | undefined {
  const whole = cookies[name];
  if (whole !== undefined) return whole;
  let first = cookies[`${name}_0`];
  if (first === undefined) return undefined;
  for (let i = 1; i < MAX_CHUNKS; i++) {
    const part = cookies[`${name}_${i}`];
    if (part === undefined) break;
    first += part;
  }
  return first;
}

/**
 * Set-Cookie headers that store `value` under `name` (split when large) and expire every other
 * form of that cookie the browser still holds (a shorter session after a longer one).
 */
export function writeChunked(s: CookieSettings, cookies: Record<string, string | undefined>, name: string, value: string, maxAgeSec: number): string[] {
  const out: string[] = [];
  if (value.length <= CHUNK_BYTES) {
    out.push(serializeCookie(s, name, value, maxAgeSec));
    for (let i = 0; i < MAX_CHUNKS; i++) if (cookies[`${name}_${i}`] !== undefined) out.push(expireCookie(s, `${name}_${i}`));
    return out;
  }
  const n = Math.ceil(value.length / CHUNK_BYTES);
  if (n > MAX_CHUNKS) throw new Error(`session too large for ${MAX_CHUNKS} cookies (${value.length} bytes); use session.store: redis`);
  for (let i = 0; i < n; i++) out.push(serializeCookie(s, `${name}_${i}`, value.slice(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES), maxAgeSec));
  for (let i = n; i < MAX_CHUNKS; i++) if (cookies[`${name}_${i}`] !== undefined) out.push(expireCookie(s, `${name}_${i}`));
  if (cookies[name] !== undefined) out.push(expireCookie(s, name));
  return out;
}

/** Set-Cookie headers expiring the session cookie in every form present in the request. */
export function expireChunked(s: CookieSettings, cookies: Record<string, string | undefined>, name: string): string[] {
  const out: string[] = [];
  if (cookies[name] !== undefined) out.push(expireCookie(s, name));
  for (let i = 0; i < MAX_CHUNKS; i++) if (cookies[`${name}_${i}`] !== undefined) out.push(expireCookie(s, `${name}_${i}`));
  return out;
}

/**
 * Removes Portcullis's cookies (session, chunks, transactions — with or without a prefix, since a
 * client could send any) from a raw Cookie header, keeping every other cookie byte for byte; also
 * the cookies named in `alsoStrip` (config stripCookies: exact names, a trailing `*` a prefix).
 * Returns undefined when nothing is left.
 */
export function makeCookieStripper(baseName: string, alsoStrip: readonly string[] = []): (header: string | undefined) => string | undefined {
  const ours = new RegExp(`^\\s*(?:__Host-|__Secure-)?${baseName.replace(/[-]/g, '\\-')}(?:_[^=]*)?\\s*(?:=|$)`, 'i');
  const exact = new Set(alsoStrip.filter((n) => !n.endsWith('*')));
  const prefixes = alsoStrip.filter((n) => n.endsWith('*')).map((n) => n.slice(0, -1));
  const listed = (part: string): boolean => {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim();
    return exact.has(name) || prefixes.some((p) => name.startsWith(p));
  };
  const base = baseName.toLowerCase();
  return (header) => {
    if (!header) return undefined;
    if (alsoStrip.length === 0 && !header.toLowerCase().includes(base)) return header;
    const kept = header.split(';').filter((part) => part.trim() !== '' && !ours.test(part) && !listed(part));
    return kept.length ? kept.map((p) => p.trim()).join('; ') : undefined;
  };
}
