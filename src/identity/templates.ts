// Identity stage, boot half: header templates like "{preferred_username}" or "CN={name}, O=Acme"
// compiled once into closures that render a safe header value from the session's claims.
import type { Issues } from '../config/issues.js';
import { compileClaimGetter, type Claims } from '../policy/claims.js';

/** The one claims type (policy/claims.ts), re-exported for the identity stage's modules. */
export type { Claims };
/** Renders the header value, or undefined when every placeholder is missing (the header is then not sent). */
export type HeaderTemplate = (claims: Claims) => string | undefined;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export function isValidHeaderName(name: string): boolean { return TOKEN.test(name); }


/** Anything but printable ASCII: such a value needs cleaning and encoding before it is a header. */
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/;
/** C0 controls (NUL…US, incl. TAB, CR, LF), DEL and C1 controls (U+0080–U+009F). */
const CONTROLS = /[\x00-\x1f\x7f-\x9f]+/g;

type WellFormable = { isWellFormed(): boolean; toWellFormed(): string };

/**
 * Text any IdP may send, made safe to render: lone UTF-16 surrogates (JSON `"\ud800"`) become
 * U+FFFD — before anything else, so removing a character can never pair two halves into a new one —
 * then C0 controls, DEL and C1 controls are removed. Printable ASCII comes back as the same string.
 */
export function cleanText(s: string): string {
  if (!NOT_PRINTABLE_ASCII.test(s)) return s;
  const w = (s as unknown as WellFormable).isWellFormed() ? s : (s as unknown as WellFormable).toWellFormed();
  return w.replace(CONTROLS, '');
}

/** Nested arrays deeper than this are not rendered (no stack overflow on a hostile claim). */
const MAX_DEPTH = 8;

/**
 * Makes any claim value safe for a header: strings cleaned (`cleanText`: no CR/LF or other control
 * characters, so no header injection whatever the IdP lets users put in their name; no lone
 * surrogates), numbers and booleans as text, arrays (nested too) comma-joined. Objects and anything
 * JSON cannot carry are not rendered. Non-ASCII is left for `encodeHeaderValue`, applied to the
 * whole header value.
 */
export function headerSafe(value: unknown): string | undefined {
  return render(value, 0);
}

function render(value: unknown, depth: number): string | undefined {
  switch (typeof value) {
    case 'string': return cleanText(value);
    case 'number': case 'boolean': case 'bigint': return String(value);
    case 'object': {
      if (!Array.isArray(value) || depth >= MAX_DEPTH) return undefined;
      let out = '';
      for (let i = 0; i < value.length; i++) {
        const v = render(value[i], depth + 1);
        if (v === undefined || v === '') continue;
        out = out === '' ? v : `${out},${v}`;
      }
      return out;
    }
    default: return undefined; // undefined, symbol, function
  }
}

export type HeaderEncoding = 'percent' | 'rfc2047';

/**
 * Node refuses header values outside Latin-1, and Latin-1 would be ambiguous to upstreams, so
 * non-ASCII is encoded: `percent` (default) percent-encodes each non-ASCII run as UTF-8
 * (`Zoë` → `Zo%C3%AB`); `rfc2047` sends the whole value as an encoded word (`=?UTF-8?B?Wm/Dqw==?=`),
 * which some Java and mail-derived stacks decode themselves. Printable ASCII values are never
 * touched. Total for any string: the value is first cleaned (`cleanText`), so the result is always
 * printable ASCII, which Node's `validateHeaderValue` accepts.
 */
export function encodeHeaderValue(v: string, mode: HeaderEncoding): string {
  if (!NOT_PRINTABLE_ASCII.test(v)) return v;
  const s = cleanText(v);
  if (!NOT_PRINTABLE_ASCII.test(s)) return s;
  if (mode === 'rfc2047') return `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`;
  return s.replace(/[^\x20-\x7e]+/gu, (m) => encodeURIComponent(m));
}

/**
 * Compiles a template: literal text with `{claim.path}` placeholders; `{a|b}` takes the first of
 * the claims that is present (`{preferred_username|email|sub}`); `{{` and `}}` are literal braces.
 * Syntax errors are config issues with the header's key path.
 */
export function compileHeaderTemplate(template: string, path: string, issues: Issues): HeaderTemplate | undefined {
  const parts: Array<string | Array<(c: Claims) => unknown>> = [];
  let i = 0;
  let lit = '';
  const before = issues.length;
  while (i < template.length) {
    const c = template[i]!;
    if (c === '{' && template[i + 1] === '{') { lit += '{'; i += 2; continue; }
    if (c === '}' && template[i + 1] === '}') { lit += '}'; i += 2; continue; }
    if (c === '}') { issues.push({ path, message: `unmatched "}" at position ${i} (write "}}" for a literal brace)` }); return undefined; }
    if (c === '{') {
      const end = template.indexOf('}', i);
      if (end < 0) { issues.push({ path, message: `unclosed "{" at position ${i}` }); return undefined; }
      const name = template.slice(i + 1, end).trim();
      const alternatives = name.split('|').map((a) => a.trim());
      if (alternatives.some((a) => !/^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$/.test(a))) {
        issues.push({ path, message: `unknown placeholder "{${name}}": use a claim path like {email}, {realm_access.roles} or {preferred_username|email}` });
      }
      if (lit) parts.push(lit);
      lit = '';
      parts.push(alternatives.map((a) => compileClaimGetter(a.split('.'))));
      i = end + 1;
      continue;
    }
    lit += c;
    i++;
  }
  if (lit) parts.push(lit);
  if (issues.length > before) return undefined;
  if (/[\x00-\x1f\x7f-\x9f]/.test(template) || !(template as unknown as WellFormable).isWellFormed()) {
    issues.push({ path, message: 'must not contain control characters or lone surrogates' });
    return undefined;
  }
  const first = (claims: Claims, alts: Array<(c: Claims) => unknown>): string | undefined => {
    for (const get of alts) {
      const v = headerSafe(get(claims));
      if (v !== undefined && v !== '') return v;
    }
    return undefined;
  };
  if (parts.length === 1 && Array.isArray(parts[0])) {
    const alts = parts[0];
    if (alts.length === 1) { const get = alts[0]!; return (claims) => headerSafe(get(claims)); }
    return (claims) => first(claims, alts);
  }
  return (claims) => {
    let out = '';
    let any = false;
    for (const p of parts) {
      if (typeof p === 'string') { out += p; continue; }
      const v = first(claims, p);
      if (v !== undefined) { out += v; any = true; }
    }
    return any || !parts.some(Array.isArray) ? out : undefined;
  };
}
