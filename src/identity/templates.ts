// Identity stage, boot half: header templates like "{preferred_username}" or "CN={name}, O=Acme"
// compiled once into closures that render a safe header value from the session's claims.
import type { Issues } from '../config/issues.js';
import { compileClaimGetter } from '../policy/claims.js';

export type Claims = Record<string, unknown>;
/** Renders the header value, or undefined when every placeholder is missing (the header is then not sent). */
export type HeaderTemplate = (claims: Claims) => string | undefined;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export function isValidHeaderName(name: string): boolean { return TOKEN.test(name); }


/**
 * Makes any claim value safe for a header: arrays comma-joined, CR/LF and other control characters
 * removed (no header injection, whatever the IdP lets users put in their name). Objects are not
 * rendered. Non-ASCII is left for `encodeHeaderValue`, applied to the whole header value.
 */
export function headerSafe(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) {
    const parts = value.map(headerSafe).filter((v): v is string => v !== undefined && v !== '');
    return parts.join(',');
  }
  if (typeof value === 'object') return undefined;
  return String(value).replace(/[\x00-\x1f\x7f]+/g, '');
}

export type HeaderEncoding = 'percent' | 'rfc2047';

/**
 * Node refuses header values outside Latin-1, and Latin-1 would be ambiguous to upstreams, so
 * non-ASCII is encoded: `percent` (default) percent-encodes each non-ASCII run as UTF-8
 * (`Zoë` → `Zo%C3%AB`); `rfc2047` sends the whole value as an encoded word (`=?UTF-8?B?Wm/Dqw==?=`),
 * which some Java and mail-derived stacks decode themselves. ASCII values are never touched.
 */
export function encodeHeaderValue(v: string, mode: HeaderEncoding): string {
  if (!/[^\x20-\x7e]/.test(v)) return v;
  if (mode === 'rfc2047') return `=?UTF-8?B?${Buffer.from(v, 'utf8').toString('base64')}?=`;
  return v.replace(/[^\x20-\x7e]+/gu, (m) => encodeURIComponent(m));
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
  if (/[\r\n\x00]/.test(template)) { issues.push({ path, message: 'must not contain control characters' }); return undefined; }
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
