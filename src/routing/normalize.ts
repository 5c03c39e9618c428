// Routing stage, first step of every request: one canonical path, computed once, that route
// matching, policy and the upstream all see — so `/public/../admin` and `/%61dmin` meet `/admin`.
//
// What happens to the path (the query is kept verbatim and takes no part in matching):
// - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded; every other
//   escape is kept, with its hex uppercased (`%2f` never becomes `/`, it is rejected instead);
// - `%2F`, `%5C`, `%00` are rejected: an upstream that decodes them would see a different path
//   than the one we matched; malformed `%` likewise;
// - a raw `\`, control characters, space, `#` and non-ASCII characters are rejected;
// - the other printable ASCII characters RFC 3986 does not allow raw in a path but Node's parser
//   lets through (`"` `<` `>` `[` `]` `^` `` ` `` `{` `|` `}`) are percent-encoded (`%22`, `%3C`…),
//   so the raw and the encoded spelling reach the upstream as the same bytes on every path;
// - runs of `/` are merged, then `.` and `..` segments (also ones spelled `%2e`) are resolved
//   per RFC 3986 §5.2.4, clamped at the root; a trailing slash is kept;
// - `;` starts a segment's parameters (Tomcat and Jetty strip them from every segment and serve
//   what is left; the matcher ignores them likewise). A segment whose name, the part before the
//   first `;`, is `.` or `..` (`/..;/admin`, a Tomcat traversal) or empty (`/;x/admin`, which
//   Tomcat serves as `/admin` but would otherwise match as `//admin`) is rejected; any other
//   `;params` stay in the path. An encoded `%3B` is not a separator: it stays encoded.

export type NormalizedTarget =
  | {
      ok: true;
      path: string;
      /** Verbatim, with its leading `?`, or ''. */
      query: string;
      /** Only for absolute-form targets (`http://host/a`): lowercased `host[:port]`, to compare with Host. */
      authority?: string;
    }
  | { ok: false; reason: string };

// A path with only ordinary characters (none to reject or encode, no `%`), no empty segment
// (`//`), no `.`/`..` segment (also none followed by `;`) and no segment starting with `;` is
// already canonical. Segments are delimited by `/`, which the character classes exclude, so this
// runs in linear time. (A segment's first character has its own class, without `;`: measured as
// fast as before, where a `(?!;)` lookahead cost a quarter more per request.)
const CANONICAL = /^(?:\/(?!\.\.?(?:[/;]|$))[^\x00-\x20"#%/;<>?[\\\]^`{|}\x7f-\uffff][^\x00-\x20"#%/<>?[\\\]^`{|}\x7f-\uffff]*)*\/?$/;

/** Printable ASCII that is not allowed raw in a path (outside RFC 3986 pchar) and is encoded. */
const MUST_ENCODE = new Uint8Array(128);
for (const c of '"<>[]^`{|}') MUST_ENCODE[c.charCodeAt(0)] = 1;

const ABSOLUTE_FORM = /^(https?):\/\/([^/?#]*)/i;
const AUTHORITY = /^(?:[a-z0-9._~-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/;

const HEX = '0123456789ABCDEF';

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  const lower = code | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87; // a-f
  return -1;
}

function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e // - . _ ~
  );
}

const REJECT = {
  encodedSlash: { ok: false, reason: 'encoded slash in path' },
  encodedBackslash: { ok: false, reason: 'encoded backslash in path' },
  encodedNul: { ok: false, reason: 'encoded null byte in path' },
  malformed: { ok: false, reason: 'malformed percent-encoding' },
  backslash: { ok: false, reason: 'backslash in path' },
  control: { ok: false, reason: 'control character in path' },
  space: { ok: false, reason: 'space in path' },
  fragment: { ok: false, reason: 'fragment (#) in request target' },
  nonAscii: { ok: false, reason: 'non-ASCII character in path' },
  dotParams: { ok: false, reason: 'dot segment with parameters in path' },
  emptyParams: { ok: false, reason: 'path parameters on an empty segment' },
  notAPath: { ok: false, reason: 'request target must start with /' },
  asterisk: { ok: false, reason: 'asterisk-form request target not allowed' },
  badAuthority: { ok: false, reason: 'invalid host in absolute-form request target' },
} as const satisfies Record<string, { ok: false; reason: string }>;
for (const r of Object.values(REJECT)) Object.freeze(r);

type PathResult = string | { ok: false; reason: string };

export function normalizeTarget(rawUrl: string): NormalizedTarget {
  if (rawUrl.charCodeAt(0) === 0x2f /* / */) {
    const q = rawUrl.indexOf('?');
    const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = q === -1 ? '' : rawUrl.slice(q);
    if (CANONICAL.test(rawPath)) return { ok: true, path: rawPath, query };
    const path = normalizePath(rawPath);
    return typeof path === 'string' ? { ok: true, path, query } : path;
  }
  if (rawUrl === '*') return REJECT.asterisk;

  // Absolute-form (RFC 9112 §3.2.2), as sent to proxies: the authority replaces Host.
  const abs = ABSOLUTE_FORM.exec(rawUrl);
  if (abs === null) return REJECT.notAPath;
  const authority = abs[2]!.toLowerCase();
  if (!AUTHORITY.test(authority)) return REJECT.badAuthority;
  const rest = rawUrl.slice(abs[0].length);
  if (rest.charCodeAt(0) === 0x23 /* # */) return REJECT.fragment;
  const q = rest.indexOf('?');
  let rawPath = q === -1 ? rest : rest.slice(0, q);
  const query = q === -1 ? '' : rest.slice(q);
  if (rawPath === '') rawPath = '/';
  const path = CANONICAL.test(rawPath) ? rawPath : normalizePath(rawPath);
  return typeof path === 'string' ? { ok: true, path, query, authority } : path;
}

/** The slow path: decode, check, split and resolve. `raw` starts with `/`. */
function normalizePath(raw: string): PathResult {
  // 1. Percent-decoding of unreserved characters and character checks, in one pass.
  let decoded = '';
  let start = 0; // start of the pending run of unchanged characters
  const n = raw.length;
  for (let i = 0; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hi = i + 2 < n ? hexValue(raw.charCodeAt(i + 1)) : -1;
      const lo = hi === -1 ? -1 : hexValue(raw.charCodeAt(i + 2));
      if (lo === -1) return REJECT.malformed;
      const byte = hi * 16 + lo;
      if (byte === 0x2f) return REJECT.encodedSlash;
      if (byte === 0x5c) return REJECT.encodedBackslash;
      if (byte === 0x00) return REJECT.encodedNul;
      decoded += raw.slice(start, i);
      decoded += isUnreserved(byte) ? String.fromCharCode(byte) : '%' + HEX[hi]! + HEX[lo]!;
      i += 2;
      start = i + 1;
      continue;
    }
    if (c > 0x20 && c < 0x7f) {
      if (c === 0x5c /* \ */) return REJECT.backslash;
      if (c === 0x23 /* # */) return REJECT.fragment;
      if (MUST_ENCODE[c] === 1) {
        decoded += raw.slice(start, i);
        decoded += '%' + HEX[c >> 4]! + HEX[c & 15]!;
        start = i + 1;
      }
      continue;
    }
    if (c === 0x20) return REJECT.space;
    return c < 0x20 || c === 0x7f ? REJECT.control : REJECT.nonAscii;
  }
  decoded += raw.slice(start);

  // 2. Merge slashes, resolve dot segments (RFC 3986 §5.2.4), clamped at the root.
  const segments = decoded.split('/'); // [''] + segments, since the path starts with '/'
  const out: string[] = [];
  let trailingSlash = false;
  const last = segments.length - 1;
  for (let i = 1; i <= last; i++) {
    const s = segments[i]!;
    const isLast = i === last;
    if (s === '' || s === '.') {
      if (isLast) trailingSlash = true;
      continue;
    }
    if (s === '..') {
      out.pop();
      if (isLast) trailingSlash = true;
      continue;
    }
    const semi = s.indexOf(';');
    if (semi !== -1) {
      if (semi === 0) return REJECT.emptyParams;
      const name = s.slice(0, semi);
      if (name === '.' || name === '..') return REJECT.dotParams;
    }
    out.push(s);
  }
  if (out.length === 0) return '/';
  return '/' + out.join('/') + (trailingSlash ? '/' : '');
}

/** Host part of `host[:port]` / `[v6]:port`, lowercased, trailing dot removed, plus the port ('' if none). */
function splitHostPort(value: string): [host: string, port: string] {
  const v = value.trim().toLowerCase();
  let host = v;
  let port = '';
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    if (end !== -1) {
      host = v.slice(0, end + 1);
      if (v.charCodeAt(end + 1) === 0x3a /* : */) port = v.slice(end + 2);
    }
  } else {
    const colon = v.lastIndexOf(':');
    if (colon !== -1) {
      host = v.slice(0, colon);
      port = v.slice(colon + 1);
    }
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  return [host, port];
}

/**
 * For absolute-form targets: does the target's authority name the same host and port as the
 * Host header? Case and a trailing dot are ignored; ports must be written the same way on both
 * (a missing port only equals a missing port). The caller rejects a mismatch with 400, so a
 * client cannot be routed by one host and forwarded with another.
 */
export function sameAuthority(authority: string, hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  const [ah, ap] = splitHostPort(authority);
  const [hh, hp] = splitHostPort(hostHeader);
  return ah !== '' && ah === hh && ap === hp;
}
