// The HTTP doorway: every request the public listener receives comes here first, straight from
// node:http. Portcullis's own endpoints (/oauth2/*, /healthz, /readyz) are handed to Fastify;
// forward-auth (/oauth2/auth) is a doorway of its own; everything else is proxied —
//   target → Inbound → evaluate (route, session, policy) → answer, or plan → relay.
// Any throw, synchronous or not, answers that one request (500 with its request id, logged at
// error level); the process keeps serving.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { asPortcullisError, errors, type PortcullisError } from '../errors.js';
import { normalizeTarget, sameAuthority, type NormalizedTarget } from '../routing/normalize.js';
import type { Inbound } from '../routing/origin.js';
import { requestIdOf } from '../request-id.js';
import type { Runtime } from '../runtime.js';
import { tableOf } from './route-table.js';
import { evaluate, isSession, type Outcome } from './evaluate.js';
import { errorAnswer, outcomeAnswer, writeAnswer, type Answer } from './respond.js';
import { forwardAuth } from './forward-auth.js';
import { upstreamIdentity, type UpstreamIdentity } from './upstream-identity.js';
import { OutageLog } from '../logging.js';
import { requestSpan, tracingEnabled, type RequestSpan } from '../tracing.js';

export type ResponseObserver = (route: string, status: number, seconds: number) => void;

/** The normalised target rides on the raw request to Fastify's rewriteUrl and handlers. */
export const TARGET = Symbol('portcullis.target');
export type TargetCarrier = IncomingMessage & { [TARGET]?: NormalizedTarget };

/** Paths served by Portcullis itself through Fastify (forward-auth aside). */
function isOwnEndpoint(path: string): boolean {
  return path.startsWith('/oauth2/') || path === '/healthz' || path === '/readyz';
}

/**
 * Fastify's rewriteUrl for own endpoints: the target the doorway normalised (it hands Fastify only
 * requests whose target normalised; anything else was answered 400 there).
 */
export function rewriteUrl(req: IncomingMessage): string {
  const t = (req as TargetCarrier)[TARGET];
  return t && t.ok ? t.path + t.query : '/oauth2/';
}

/**
 * HTTP/1.1 pipelining: node:http hands over every request a client sent on one connection without
 * waiting, all at once. They are handled one at a time, in order — each once the answer before it
 * is complete, so an upstream sees them in the order sent — and when that answer closed the
 * connection (a refused upload whose body was not read, the client's own `Connection: close`,
 * draining), the requests behind it are not handled at all (RFC 9112 §9.6): no upstream acts on a
 * request whose answer can no longer reach the client, who would send it again.
 */
/**
 * Per connection, kept on the socket (symbol-keyed properties: no WeakMap entry per request):
 * `WAITING` while a request is in progress — the requests waiting behind it, or `null` when none
 * (no array for the usual one-at-a-time client) — and `CLOSING` once an answer has closed the
 * connection (node:http may still parse and hand over requests already read from it).
 */
const WAITING = Symbol('portcullis.waiting');
const CLOSING = Symbol('portcullis.closing');
type Connection = Socket & { [WAITING]?: Array<[IncomingMessage, ServerResponse]> | null; [CLOSING]?: true };

function inOrder(serve: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  const start = (req: IncomingMessage, res: ServerResponse): void => {
    const socket: Connection = req.socket;
    res.on('close', () => { // 'close' comes once: on() spares once()'s wrapper per request
      if (!res.shouldKeepAlive || !socket.writable) {
        socket[CLOSING] = true;
        socket[WAITING] = undefined;
        return;
      }
      const next = socket[WAITING]?.shift();
      if (next === undefined) socket[WAITING] = undefined; else start(next[0], next[1]);
    });
    serve(req, res);
  };
  return (req, res) => {
    const socket: Connection = req.socket;
    if (socket[CLOSING] === true || !socket.writable) return; // never answered: the connection is closing
    const queue = socket[WAITING];
    if (queue !== undefined) {
      if (queue === null) socket[WAITING] = [[req, res]]; else queue.push([req, res]);
      return;
    }
    socket[WAITING] = null;
    start(req, res);
  };
}

export function createHttpDoorway(rt: Runtime, fastify: (req: IncomingMessage, res: ServerResponse) => void, observe: ResponseObserver) {
  return inOrder(function onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (!tracingEnabled()) return handle(req, res, undefined);
    // Tracing on: the request's span is active for everything this request starts (IdP calls,
    // refreshes) and ends when the response does.
    const span = requestSpan('http', req.method ?? 'GET', req.url ?? '/', req.headers, rt.origin.peerTrusted(req.socket.remoteAddress), requestIdOf(req, rt.origin.peerTrusted));
    if (!span) return handle(req, res, undefined);
    res.once('close', () => span.end(res.statusCode, res.writableFinished ? undefined : 'connection closed before the response ended'));
    span.run(() => handle(req, res, span));
  });

  function handle(req: IncomingMessage, res: ServerResponse, span: RequestSpan | undefined): void {
    const started = performance.now();
    let route = 'none';
    let id: string | undefined;
    const finish = (status: number) => observe(route, status, (performance.now() - started) / 1000);
    const answer = (a: Answer) => {
      // A body still on its way (an `Expect: 100-continue` upload that was not continued, or a
      // large one) would be read as the next request: this connection ends with the answer.
      if (!req.complete && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)) res.setHeader('connection', 'close');
      writeAnswer(res, a);
      finish(a.status);
    };
    const fail = (err: unknown, r?: Pick<Inbound, 'id' | 'headers'>): void => {
      try {
        const e = asPortcullisError(err);
        const at = r ?? { id: id ?? requestIdOf(req, rt.origin.peerTrusted), headers: req.headers };
        logFailure(rt, e, at.id, route);
        if (res.headersSent) { res.destroy(); finish(e.statusCode); return; }
        answer(errorAnswer(e, at));
      } catch (again) {
        // Even the error answer failed: nothing honest is left to send on this connection.
        rt.log.error({ reqId: id, err: again }, 'error answer failed; connection closed');
        res.destroy();
      }
    };
    /** Runs `then` on a value that may still be coming; whatever throws ends in `fail`. */
    const settle = <T>(v: T | Promise<T>, then: (t: T) => void, r: Inbound): void => {
      if (v instanceof Promise) v.then(then).catch((err) => fail(err, r));
      else then(v);
    };
    try {
      const n = normalizeTarget(req.url ?? '/');
      // RFC 9112 §3.2: more than one Host is a 400 (Node keeps the first; a proxy in front may have read another).
      if (hostCount(req.rawHeaders) > 1) return fail(errors.badRequest('more than one Host header'));
      if (n.ok && n.authority !== undefined && !sameAuthority(n.authority, req.headers.host)) {
        return fail(errors.badPath('the request target names another host'));
      }
      if (n.ok && isOwnEndpoint(n.path) && n.path !== '/oauth2/auth') {
        (req as TargetCarrier)[TARGET] = n;
        span?.decided('portcullis', 'endpoint');
        // An upload to an own endpoint (back-channel logout…): Fastify reads the body itself.
        if (expectsContinue(req)) res.writeContinue();
        return fastify(req, res);
      }
      if (!n.ok) return fail(errors.badPath(n.reason));
      if (rt.draining) {
        res.setHeader('connection', 'close');
        return fail(errors.draining());
      }
      if (n.path === '/oauth2/auth') {
        route = 'portcullis';
        span?.decided(route, 'forward-auth');
        const r = rt.origin.inbound(req, n);
        id = r.id;
        return settle(forwardAuth(rt, r), answer, r);
      }
      const r = rt.origin.inbound(req, n);
      id = r.id;
      const proceed = (o: Outcome): void => {
        rt.audit.record(r, o);
        if (o.kind !== 'no-route') route = o.route.name;
        span?.decided(route, o.kind);
        if (o.kind !== 'allow') {
          const a = outcomeAnswer(rt, r, o, 'proxy', `${rt.origin.originOf(r)}${r.path}${r.query}`);
          return settle(a, answer, r);
        }
        settle(upstreamIdentity(rt, o), (u) => forward(o, u), r);
      };
      const forward = (o: Extract<Outcome, { kind: 'allow' }>, u: UpstreamIdentity): void => {
        const plan = rt.upstreamRules.plan({ inbound: r, route: o.route, identity: tableOf(o.route, rt.table).headers, who: u.who, assertion: u.assertion, trace: span?.upstreamHeaders() });
        // The client waits for 100 Continue before sending its body: now that the request is
        // authorized it may (a denied one is answered without reading it, and the connection closed).
        if (plan.hasBody && expectsContinue(req)) res.writeContinue();
        const who = o.who;
        rt.forwarder.http(plan, req, res, {
          route: o.route.name,
          timeoutMs: o.route.timeoutMs,
          done: finish,
          setCookies: o.setCookies,
          fail: (e, kind, err) => {
            rt.metrics.upstreamErrors.inc({ route: o.route.name, kind });
            rt.log.warn({ reqId: r.id, route: o.route.name, err: err.message }, `upstream ${kind}`);
            answer(errorAnswer(e, r, { setCookies: o.setCookies }));
          },
          // Server-sent events live as long as a WebSocket: cut them off when the session ends too.
          onEventStream: isSession(who) ? () => rt.connections.track(who, req.socket, res) : undefined,
        });
      };
      settle(evaluate(rt, r), proceed, r);
    } catch (err) {
      fail(err);
    }
  }
}

/** How many Host header lines a request has (Node's parsed headers keep only the first). */
export function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!;
    if (k.length === 4 && k.toLowerCase() === 'host') n++;
  }
  return n;
}

/** `Expect: 100-continue` (any case). */
export function expectsContinue(req: IncomingMessage): boolean {
  const e = req.headers.expect;
  return typeof e === 'string' && e.toLowerCase() === '100-continue';
}

/** Codes that mean a dependency is down, so they come by the thousand: logged as outages (OutageLog). */
const OUTAGE_CODES: ReadonlySet<string> = new Set(['ERR_SESSION_STORE_UNAVAILABLE', 'ERR_IDP_UNAVAILABLE', 'ERR_IDP_TIMEOUT']);
const outages = new WeakMap<Runtime, OutageLog>();

/** 5xx are the operator's business (error level, with the cause); 4xx are the client's (debug); outages once (OutageLog). */
export function logFailure(rt: Runtime, e: PortcullisError, reqId: string, route: string): void {
  if (OUTAGE_CODES.has(e.code)) {
    let o = outages.get(rt);
    if (!o) { o = new OutageLog(rt.log, { everyMs: 30_000, quietMs: 5_000, now: rt.now }); outages.set(rt, o); }
    o.failed(e.code, e.message, { reqId, route, err: e.cause ?? e });
    return;
  }
  // A 503 while draining is the drain working, not a failure (one line per request at debug).
  if (e.statusCode >= 500 && e.code !== 'ERR_DRAINING') rt.log.error({ reqId, route, code: e.code, err: e.cause ?? e }, e.message);
  else rt.log.debug({ reqId, route, code: e.code, detail: e.cause instanceof Error ? e.cause.message : undefined }, e.message);
}
