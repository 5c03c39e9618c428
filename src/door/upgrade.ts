// The WebSocket doorway: node:http's `upgrade` event (a request with `Connection: upgrade` and an
// `Upgrade` header). It is an upgrade only when it is a `GET` asking for `websocket` on a route with
// `websocket: true`; anything else is refused with 400 — an upgrade is never a way to send another
// method past a route's rules. A browser's upgrade must come from a page of this site (`Origin`:
// the request's own origin, publicUrl's, or one in `websocketOrigins`), else 403, before the
// session or the route's rules are looked at. Then the same door as plain requests: Inbound →
// evaluate → answer, or the same upstream plan (with Connection/Upgrade set) → socket pipe. Any
// throw answers this socket (500) and is logged; the process keeps serving.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { asPortcullisError, coded, errors } from '../errors.js';
import { normalizeTarget } from '../routing/normalize.js';
import { requestIdOf } from '../request-id.js';
import type { Runtime } from '../runtime.js';
import { evaluate, isSession } from './evaluate.js';
import { errorAnswer, outcomeAnswer, writeAnswerToSocket } from './respond.js';
import { tableOf } from './route-table.js';
import { hostCount, logFailure } from './http.js';
import { requestSpan, tracingEnabled, type RequestSpan } from '../tracing.js';
import { upstreamIdentity } from './upstream-identity.js';

const refused = (reason: string) => coded('ERR_UPGRADE_REFUSED', { detail: reason });
const crossOrigin = (origin: unknown) => coded('ERR_UPGRADE_CROSS_ORIGIN',
  { cause: new Error(`Origin ${JSON.stringify(String(origin).slice(0, 200))} is not this site's (add it to websocketOrigins if it should be)`) });

/**
 * Cross-site WebSocket hijacking guard: browsers send the page's `Origin` with every WebSocket
 * upgrade and no CORS check applies to it, so a page on a sibling host (which the session cookie
 * reaches, e.g. with `session.cookieDomain`) could otherwise open a socket as the signed-in user.
 * Accepted: no `Origin` (not a browser: such a client has no one's cookie but its own), the
 * origin the request was addressed to, publicUrl's origin, and `websocketOrigins`. Anything else —
 * `null` (sandboxed frames, file: pages) and malformed values included — is refused.
 */
export function upgradeOriginAllowed(origin: string | string[] | undefined, requestOrigin: string, publicOrigin: string, allowed: ReadonlySet<string>): boolean {
  if (origin === undefined) return true;
  if (Array.isArray(origin) || origin === 'null') return false;
  let o: string;
  try {
    const u = new URL(origin);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return false;
    o = u.origin;
  } catch { return false; }
  if (o === publicOrigin || allowed.has(o)) return true;
  try { return o === new URL(requestOrigin).origin; } catch { return false; }
}

const allowedOrigins = new WeakMap<readonly string[], ReadonlySet<string>>();
function originSet(list: readonly string[]): ReadonlySet<string> {
  let set = allowedOrigins.get(list);
  if (!set) { set = new Set(list); allowedOrigins.set(list, set); }
  return set;
}

export function handleUpgrade(rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  if (!tracingEnabled()) return upgrade(rt, req, socket, head, undefined);
  // Tracing on: a span for the handshake (not the socket's lifetime), active for what it starts.
  const span = requestSpan('websocket', req.method ?? 'GET', req.url ?? '/', req.headers, rt.origin.peerTrusted(req.socket.remoteAddress), requestIdOf(req, rt.origin.peerTrusted));
  if (!span) return upgrade(rt, req, socket, head, undefined);
  return span.run(() => upgrade(rt, req, socket, head, span));
}

async function upgrade(rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer, span: RequestSpan | undefined): Promise<void> {
  let id: string | undefined;
  let route = 'none';
  const fail = (err: unknown) => {
    const e = asPortcullisError(err);
    const at = { id: id ?? requestIdOf(req, rt.origin.peerTrusted), headers: req.headers };
    logFailure(rt, e, at.id, route);
    const a = errorAnswer(e, at);
    span?.end(a.status);
    writeAnswerToSocket(socket, a);
  };
  try {
    const n = normalizeTarget(req.url ?? '/');
    if (hostCount(req.rawHeaders) > 1) return fail(errors.badRequest('more than one Host header'));
    if (!n.ok) return fail(errors.badPath(n.reason));
    if (n.authority !== undefined || n.path.startsWith('/oauth2/') || n.path === '/healthz' || n.path === '/readyz') {
      return fail(refused('Upgrades are not accepted at this address.'));
    }
    if (req.method !== 'GET') return fail(refused(`An upgrade must be a GET request, not ${req.method}.`));
    const wanted = String(req.headers.upgrade ?? '').toLowerCase().split(',').map((s) => s.trim());
    if (wanted.length !== 1 || wanted[0] !== 'websocket') return fail(refused('Only WebSocket upgrades are proxied.'));
    if (rt.draining) return fail(errors.draining());
    const r = rt.origin.inbound(req, n);
    id = r.id;
    if (!upgradeOriginAllowed(req.headers.origin, rt.origin.originOf(r), rt.origin.publicOrigin, originSet(rt.config.websocketOrigins))) {
      return fail(crossOrigin(req.headers.origin));
    }
    const idx = rt.table.matcher(r.host, r.path, r.method);
    if (idx >= 0 && !rt.table.routes[idx]!.websocket) return fail(refused('WebSocket upgrades are not enabled on this route.'));
    const o = await evaluate(rt, r);
    rt.audit.record(r, o, 'websocket');
    span?.decided(o.kind === 'no-route' ? 'none' : o.route.name, o.kind);
    if (o.kind !== 'allow') {
      const a = await outcomeAnswer(rt, r, o, 'proxy', `${rt.origin.originOf(r)}${r.path}${r.query}`);
      span?.end(a.status);
      return writeAnswerToSocket(socket, a);
    }
    route = o.route.name;
    const u = await upstreamIdentity(rt, o);
    const plan = rt.upstreamRules.plan({ inbound: r, route: o.route, identity: tableOf(o.route, rt.table).headers, who: u.who, assertion: u.assertion, upgrade: true, trace: span?.upstreamHeaders() });
    if (isSession(o.who)) rt.connections.trackWebSocket(o.who, socket, head);
    const name = o.route.name;
    rt.forwarder.upgrade(plan, socket, head, {
      timeoutMs: o.route.timeoutMs,
      setCookies: o.setCookies,
      upgraded: () => span?.end(101),
      fail: (e, kind, err) => {
        rt.metrics.upstreamErrors.inc({ route: name, kind });
        rt.log.warn({ reqId: r.id, route: name, err: err.message }, 'websocket upstream failed');
        span?.end(e.statusCode, kind);
        writeAnswerToSocket(socket, errorAnswer(e, r, { setCookies: o.setCookies }));
      },
    });
  } catch (err) {
    fail(err);
  }
}
