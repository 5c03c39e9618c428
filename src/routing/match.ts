// Routing stage, after normalisation: which route does (host, path, method) belong to?
// Specs are validated and compiled at boot; per request the matcher does one Map lookup and a
// few string comparisons.
//
// - host: exact (case-insensitive; the Host header's port and a trailing dot are ignored), or
//   `*.example.com` = exactly one extra label (`a.example.com`, not `a.b.example.com`, not
//   `example.com`). No host = any host.
// - path: a prefix ending at a segment boundary: `/admin` matches `/admin`, `/admin/` and
//   `/admin/x`, never `/administrator`; `/` matches everything; `/admin/` is the same as `/admin`.
//   Compared case-sensitively, on the normalised path with `;params` removed from every segment
//   (for the methods check too), so `/admin;x/y` meets the `/admin` route, as Tomcat reads it.
// - methods: uppercase list, any method if omitted; `GET` also allows `HEAD`.
// - first match wins, in configuration order.

import { childPath, suggest, type Issues } from '../config/issues.js';
import { normalizeTarget } from './normalize.js';

export interface RouteMatchSpec {
  host?: string;
  path: string;
  methods?: string[];
}

export type RouteMatcher = (host: string | undefined, path: string, method: string) => number;

/** Methods a route may list: RFC 9110 plus PATCH and the WebDAV/CalDAV ones upstreams use. */
export const HTTP_METHODS: readonly string[] = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH',
  'MKCALENDAR', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'ACL', 'BIND', 'UNBIND', 'REBIND', 'LINK', 'UNLINK',
];
const SPEC_KEYS = ['host', 'path', 'methods'];

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

interface Entry {
  index: number;
  /** Configured path without trailing slash; '' for `/` (matches everything). */
  prefix: string;
  /** undefined = any method. */
  methods: ReadonlySet<string> | undefined;
}

type HostPattern = { kind: 'any' } | { kind: 'exact'; host: string } | { kind: 'wildcard'; suffix: string };

/** Lowercase, trailing dot removed. Config side: ports are refused by validateMatchSpec. */
function canonicalHost(host: string): string {
  const h = host.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

function hostPattern(host: string | undefined): HostPattern {
  if (host === undefined) return { kind: 'any' };
  const h = canonicalHost(host);
  return h.startsWith('*.') ? { kind: 'wildcard', suffix: h.slice(2) } : { kind: 'exact', host: h };
}

/** The request's Host header (or absolute-form authority) reduced to a bare lowercase hostname. */
function requestHost(raw: string): string {
  let h = raw;
  if (h.charCodeAt(0) === 0x5b /* [ */) {
    const end = h.indexOf(']');
    if (end !== -1) h = h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon !== -1) h = h.slice(0, colon);
  }
  return canonicalHost(h);
}

/**
 * Removes `;params` from each segment, as Tomcat and Jetty do: `/a;x/b;y` → `/a/b`. A segment left
 * empty (`/;x/admin`) is dropped, as Tomcat's merging of the `//` it leaves would: `/admin`. The
 * normaliser rejects such segments already; this keeps the matcher from ever judging `//admin`.
 */
function stripParams(path: string): string {
  let out = '';
  let i = 0;
  const n = path.length;
  while (i < n) {
    const semi = path.indexOf(';', i);
    if (semi === -1) return out + path.slice(i);
    // `semi - 1` is the segment's `/` when its name is empty: leave that `/` out too.
    out += path.slice(i, semi > i && path.charCodeAt(semi - 1) === 0x2f ? semi - 1 : semi);
    const slash = path.indexOf('/', semi);
    if (slash === -1) break;
    i = slash;
  }
  return out === '' ? '/' : out;
}

function pathMatches(prefix: string, path: string): boolean {
  if (prefix === '') return true;
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 0x2f;
}

function firstMatch(entries: readonly Entry[], path: string, method: string): number {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.methods !== undefined && !e.methods.has(method)) continue;
    if (pathMatches(e.prefix, path)) return e.index;
  }
  return -1;
}

/**
 * Compiles route specs into a matcher returning the index of the first matching spec, or -1.
 * For every exact host and every wildcard suffix the candidate list (in config order) is
 * precomputed, so a request only scans the routes that can match its host.
 */
export function compileMatcher(specs: readonly RouteMatchSpec[]): RouteMatcher {
  const patterns = specs.map((s) => hostPattern(s.host));
  const entries: Entry[] = specs.map((s, index) => {
    const methods = s.methods && s.methods.length > 0 ? new Set(s.methods) : undefined;
    if (methods?.has('GET')) methods.add('HEAD');
    const p = s.path.endsWith('/') ? s.path.slice(0, -1) : s.path;
    return Object.freeze({ index, prefix: p, methods });
  });

  const candidates = (accept: (p: HostPattern) => boolean): readonly Entry[] =>
    Object.freeze(entries.filter((_, i) => accept(patterns[i]!)));

  const anyHost = candidates((p) => p.kind === 'any');
  const byExactHost = new Map<string, readonly Entry[]>();
  const byWildcardSuffix = new Map<string, readonly Entry[]>();
  for (const p of patterns) {
    if (p.kind === 'exact' && !byExactHost.has(p.host)) {
      const parent = p.host.slice(p.host.indexOf('.') + 1);
      const hasParent = p.host.includes('.');
      byExactHost.set(
        p.host,
        candidates(
          (q) =>
            q.kind === 'any' ||
            (q.kind === 'exact' && q.host === p.host) ||
            (q.kind === 'wildcard' && hasParent && q.suffix === parent),
        ),
      );
    } else if (p.kind === 'wildcard' && !byWildcardSuffix.has(p.suffix)) {
      byWildcardSuffix.set(p.suffix, candidates((q) => q.kind === 'any' || (q.kind === 'wildcard' && q.suffix === p.suffix)));
    }
  }
  const hasWildcards = byWildcardSuffix.size > 0;

  return (rawHost, rawPath, method) => {
    const path = rawPath.includes(';') ? stripParams(rawPath) : rawPath;
    if (rawHost === undefined || rawHost === '') return firstMatch(anyHost, path, method);
    const host = requestHost(rawHost);
    let list = byExactHost.get(host);
    if (list === undefined && hasWildcards) {
      const dot = host.indexOf('.');
      // The first label must be non-empty: `.example.com` is not a host under `*.example.com`.
      if (dot > 0) list = byWildcardSuffix.get(host.slice(dot + 1));
    }
    return firstMatch(list ?? anyHost, path, method);
  };
}

/** Checks one route's `match` block; returns the spec with its host canonicalised, or undefined. */
export function validateMatchSpec(raw: unknown, path: string, issues: Issues): RouteMatchSpec | undefined {
  const before = issues.length;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    issues.push({ path, message: 'match must be a mapping with path and optional host, methods' });
    return undefined;
  }
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!SPEC_KEYS.includes(k)) issues.push({ path: childPath(path, k), message: `unknown key "${k}"${suggest(k, SPEC_KEYS)}` });
  }

  // path
  // No path = every path (a host-only route).
  const routePath = Object.hasOwn(r, 'path') ? r.path : '/';
  const pathKey = childPath(path, 'path');
  if (typeof routePath !== 'string' || routePath === '') {
    issues.push({ path: pathKey, message: 'path must be a non-empty string starting with /' });
  } else if (!routePath.startsWith('/')) {
    issues.push({ path: pathKey, message: `path must start with /, e.g. "/${routePath}"` });
  } else if (routePath.includes('?')) {
    issues.push({ path: pathKey, message: 'path must not contain a query (?); routes match on the path only' });
  } else if (routePath.includes(';')) {
    issues.push({ path: pathKey, message: 'path must not contain ;parameters — they are ignored when matching' });
  } else {
    const n = normalizeTarget(routePath);
    if (!n.ok) issues.push({ path: pathKey, message: `invalid path: ${n.reason}` });
    else if (n.path !== routePath) {
      issues.push({ path: pathKey, message: `path is not in normalised form; write "${n.path}" (requests are matched after normalisation)` });
    }
  }

  // host
  let host: string | undefined;
  if (Object.hasOwn(r, 'host')) {
    const h = r.host;
    const hostKey = childPath(path, 'host');
    if (typeof h !== 'string' || h === '') {
      issues.push({ path: hostKey, message: 'host must be a non-empty hostname, or *.domain for one level of subdomains' });
    } else {
      const canonical = canonicalHost(h);
      const bare = canonical.startsWith('*.') ? canonical.slice(2) : canonical;
      if (/:\d*$/.test(canonical)) {
        issues.push({ path: hostKey, message: 'host must not include a port (the Host header port is ignored when matching)' });
      } else if (bare.includes('*')) {
        issues.push({ path: hostKey, message: 'a wildcard is only allowed as the whole first label: *.example.com' });
      } else if (bare.length > 253 || !HOSTNAME.test(bare)) {
        issues.push({ path: hostKey, message: `"${h}" is not a valid hostname` });
      } else {
        host = canonical;
      }
    }
  }

  // methods
  let methods: string[] | undefined;
  if (Object.hasOwn(r, 'methods')) {
    const m = r.methods;
    const methodsKey = childPath(path, 'methods');
    if (!Array.isArray(m)) {
      issues.push({ path: methodsKey, message: 'methods must be a list, e.g. [GET, POST]' });
    } else if (m.length === 0) {
      issues.push({ path: methodsKey, message: 'empty methods list: omit methods to allow every method' });
    } else {
      m.forEach((x, i) => {
        if (typeof x !== 'string' || !HTTP_METHODS.includes(x)) {
          const word = String(x);
          issues.push({ path: childPath(methodsKey, i), message: `unknown HTTP method "${word}"${suggest(word, HTTP_METHODS)}` });
        }
      });
      methods = m as string[];
    }
  }

  if (issues.length !== before) return undefined;
  const spec: RouteMatchSpec = { path: routePath as string };
  if (host !== undefined) spec.host = host;
  if (methods !== undefined) spec.methods = [...methods];
  return spec;
}
