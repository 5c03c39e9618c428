// The forward-auth doorway: nginx `auth_request` and Traefik `forwardAuth` ask `GET /oauth2/auth`
// about a request THEY received; Portcullis judges that request with the same door (evaluate) and
// answers 202 with the identity headers the upstream would have got (the same header plan), or
// 401 / 403 / 404 (never a redirect: the fronting proxy decides how to send the browser to sign in).
// The original request is read from X-Forwarded-Method/-Proto/-Host/-Uri (Traefik) or X-Original-URL
// (nginx), so only trusted peers are answered.
import { METHODS as HTTP_METHODS } from 'node:http';
import { coded } from '../errors.js';
import { normalizeTarget } from '../routing/normalize.js';
import { lastEntry, type Inbound } from '../routing/origin.js';
import type { Runtime } from '../runtime.js';
import { tableOf } from './route-table.js';
import { evaluate } from './evaluate.js';
import { errorAnswer, outcomeAnswer, type Answer } from './respond.js';
import { upstreamIdentity } from './upstream-identity.js';

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
/** The methods node:http parses on a request line: what the plain doorway can be asked. */
const METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

export async function forwardAuth(rt: Runtime, r: Inbound): Promise<Answer> {
  if (!r.trusted) {
    return errorAnswer(coded('ERR_FORWARD_AUTH_UNTRUSTED'), r);
  }
  const h = r.headers;
  const uri = one(h['x-forwarded-uri']);
  let host = lastEntry(h['x-forwarded-host']) || h.host;
  let proto = lastEntry(h['x-forwarded-proto']).toLowerCase() || undefined;
  const originalUrl = uri ? undefined : one(h['x-original-url'] as string | string[] | undefined);
  if (!uri && !originalUrl) return errorAnswer(coded('ERR_FORWARD_AUTH_BAD_REQUEST', { detail: 'Send X-Forwarded-Uri (Traefik) or X-Original-URL (nginx).' }), r);
  // The fronting proxy forwards the path as it came, so it is read by the one path rule
  // (routing/normalize.ts) — an absolute-form target for X-Original-URL — and never by a URL parser:
  // `new URL()` resolves `/x/..;/%2e./admin` to `/x/admin`, which Tomcat serves as `/admin`.
  const n = normalizeTarget((uri ?? originalUrl)!);
  if (originalUrl !== undefined && n.ok && n.authority === undefined) {
    return errorAnswer(coded('ERR_FORWARD_AUTH_BAD_REQUEST', { detail: 'X-Original-URL is not an absolute URL.' }), r);
  }
  if (!n.ok || (uri !== undefined && n.authority !== undefined)) {
    return errorAnswer(coded('ERR_REQUEST_BAD_PATH', { detail: `the original request's path is not acceptable (${n.ok ? 'not a path' : n.reason})` }), r);
  }
  if (originalUrl !== undefined) {
    host = n.authority;
    proto = /^https/i.test(originalUrl) ? 'https' : 'http';
  }
  const sentMethod = one(h['x-forwarded-method']);
  // Judged as the plain doorway would judge that request line: method names are case-sensitive
  // (RFC 9110 §9.1), and node:http answers 400 to a method it does not know (`get`, `FOO`), so
  // forward-auth does too — never `get` read as GET, nor `delete` as a token no `methods` list names.
  if (sentMethod && !METHODS.has(sentMethod)) {
    return errorAnswer(coded('ERR_FORWARD_AUTH_BAD_REQUEST', { detail: `X-Forwarded-Method ${JSON.stringify(sentMethod.slice(0, 40))} is not a method Portcullis serves (names are case-sensitive).` }), r);
  }
  const method = sentMethod || methodIndependent(rt, host, n.path);
  if (method === undefined) {
    return errorAnswer(coded('ERR_FORWARD_AUTH_METHOD_MISSING'), r);
  }
  const original = rt.origin.retarget(r, { method, host, proto, path: n.path, query: n.query });
  const outcome = await evaluate(rt, original);
  rt.audit.record(original, outcome, 'forward-auth');
  if (outcome.kind !== 'allow') return outcomeAnswer(rt, original, outcome, 'forward-auth', `${rt.origin.originOf(original)}${n.path}${n.query}`);
  const headers: Record<string, string | string[]> = { 'cache-control': 'no-store' };
  if (outcome.setCookies.length) headers['set-cookie'] = outcome.setCookies;
  // The same identity the proxied doorways send (the exchanged token, the assertion), for the
  // fronting proxy to copy onto its upstream request.
  const u = await upstreamIdentity(rt, outcome);
  if (u.who) {
    const out: Record<string, string | string[] | undefined> = {};
    tableOf(outcome.route, rt.table).headers.inject(outcome.route.name, u.who, out);
    if (u.assertion) out['x-portcullis-assertion'] = u.assertion;
    for (const [k, v] of Object.entries(out)) if (v !== undefined) headers[k] = v;
  }
  return { status: 202, headers, body: '' };
}

/**
 * The method to judge by when the fronting proxy did not say: only when the answer cannot depend
 * on it — every route that could match this host and path (before the first one that matches any
 * method) has no `methods` list — is the request judged (as GET); otherwise undefined (400). Judging
 * an unknown method as GET would let `DELETE` through wherever `GET` is allowed.
 */
function methodIndependent(rt: Runtime, host: string | undefined, path: string): string | undefined {
  const { matcher, routes } = rt.table;
  const methods = new Set(['GET', 'HEAD', '\0unknown']);
  for (const route of routes) for (const m of route.match.methods ?? []) methods.add(m);
  const first = matcher(host, path, 'GET');
  for (const m of methods) if (matcher(host, path, m) !== first) return undefined;
  return 'GET';
}
