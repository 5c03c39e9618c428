// Identity stage, boot half: header templates like "{preferred_username}" or "CN={name}, O=Acme"
// compiled once into closures that render a safe header value from the session's claims.
import type { Issues } from '../config/issues.js';

export type Claims = Record<string, unknown>;
/** Renders the header value, or undefined when every placeholder is missing (the header is then not sent). */
export type HeaderTemplate = (claims: Claims) => string | undefined;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export function isValidHeaderName(name: string): boolean { return TOKEN.test(name); }

/** Own-property walk of a dotted claim path; never reads inherited properties (`__proto__`, `constructor`). */
export function readClaimPath(claims: Claims, segments: readonly string[]): unknown {
  let cur: unknown = claims;
  for (const seg of segments) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/**
 * Makes any claim value safe for a header: arrays comma-joined, CR/LF and other control characters
 * removed (no header injection, whatever the IdP lets users put in their name), and non-ASCII
 * percent-encoded as UTF-8 (Node refuses non-Latin-1 header values, and Latin-1 is ambiguous to
 * upstreams). Objects are not rendered.
 */
export function headerSafe(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) {
    const parts = value.map(headerSafe).filter((v): v is string => v !== undefined && v !== '');
    return parts.join(',');
  }
  if (typeof value === 'object') return undefined;
  const s = String(value).replace(/[\x00-\x1f\x7f]+/g, '');
  // eslint-disable-next-line no-control-regex
  return /[^\x20-\x7e]/.test(s) ? s.replace(/[^\x20-\x7e]+/gu, (m) => encodeURIComponent(m)) : s;
}

/**
 * Compiles a template: literal text with `{claim.path}` placeholders; `{a|b}` takes the first of
 * the claims that is present (`{preferred_username|email|sub}`); `{{` and `}}` are literal braces.
 * Syntax errors are config issues with the header's key path.
 */
export function compileHeaderTemplate(template: string, path: string, issues: Issues): HeaderTemplate | undefined {
  const parts: Array<string | string[][]> = [];
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
      parts.push(alternatives.map((a) => a.split('.')));
      i = end + 1;
      continue;
    }
    lit += c;
    i++;
  }
  if (lit) parts.push(lit);
  if (issues.length > before) return undefined;
  if (/[\r\n\x00]/.test(template)) { issues.push({ path, message: 'must not contain control characters' }); return undefined; }
  const first = (claims: Claims, alts: string[][]): string | undefined => {
    for (const seg of alts) {
      const v = headerSafe(readClaimPath(claims, seg));
      if (v !== undefined && v !== '') return v;
    }
    return undefined;
  };
  if (parts.length === 1 && Array.isArray(parts[0])) {
    const alts = parts[0];
    if (alts.length === 1) { const seg = alts[0]!; return (claims) => headerSafe(readClaimPath(claims, seg)); }
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
