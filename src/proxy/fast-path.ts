// Forward stage, hot path: the commonest request — an allowed route, and a session already
// verified and cached (or a public route) — forwarded straight from node:http to an undici Pool,
// without Fastify's per-request machinery or @fastify/reply-from. It runs the same stages as the
// door (normalise → route → session → policy → identity headers → forward) with the same compiled
// pieces. Anything else — a cache miss, a cookie to re-seal, a refresh due, a denial, Portcullis's
// own endpoints, bearer tokens, assertions, upgrades, a drain — returns false and takes the full
// Fastify path, which stays the reference behaviour.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';
import { parseCookie } from 'cookie';
import type { FastifyRequest } from 'fastify';
import type { Runtime } from '../runtime.js';
import type { RouteConfig } from '../config/index.js';
import { normalizeTarget } from '../routing/normalize.js';
import { authorize } from '../policy/decide.js';
import type { HeaderBag } from '../identity/headers.js';
import { errors, type PortcullisError } from '../errors.js';
import { errorPage } from '../pages.js';

/** Request headers that describe this hop only (RFC 9110 §7.6.1), never forwarded. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];
/** Response headers Node manages for its own connection. */
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

export type ResponseObserver = (route: string, status: number, seconds: number) => void;

export interface FastPath {
  /** Serves the request and returns true, or returns false (untouched) for the full path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  close(): Promise<void>;
  enabled: boolean;
}

export function createFastPath(rt: Runtime, observe: ResponseObserver): FastPath {
  const pools = new Map<string, Pool>();
  const poolFor = (origin: string): Pool => {
    let p = pools.get(origin);
    if (!p) pools.set(origin, (p = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 })));
    return p;
  };
  const cookieBase = rt.config.session.cookieName;

  const fast: FastPath = {
    enabled: true,
    async close() {
      fast.enabled = false;
      await Promise.all([...pools.values()].map((p) => p.close().catch(() => {})));
    },
    handle(req, res) {
      if (!fast.enabled || rt.draining || req.headers.upgrade !== undefined) return false;
      const url = req.url;
      if (!url || url.charCodeAt(0) !== 47 /* / */) return false;
      const n = normalizeTarget(url);
      if (!n.ok || n.authority !== undefined) return false;
      const path = n.path;
      if (path.startsWith('/oauth2/') || path === '/healthz' || path === '/readyz') return false;
      if (path.includes('..')) return false; // the full path explains the `..`-segment 400
      const table = rt.table;
      const host = rt.hostOfRaw(req);
      const idx = table.matcher(host, path, req.method ?? 'GET');
      if (idx < 0) return false;
      const route = table.routes[idx]!;
      if (route.assertion || route.stripPrefix || (route.bearer && req.headers.authorization !== undefined)) return false;
      // Identity headers a client sent are removed first, before anything reads the request.
      const headers = { ...req.headers } as HeaderBag;
      table.headers.strip(headers);
      const cookieHeader = req.headers.cookie;
      let session;
      if (cookieHeader !== undefined && cookieHeader.includes(cookieBase)) {
        const cookies = parseCookie(cookieHeader) as Record<string, string | undefined>;
        if (rt.sessions.cookieValue(cookies) !== undefined) {
          session = rt.sessions.peek(cookies);
          if (!session || rt.sessions.needsWrite(session) || rt.isRefreshDue(session)) return false;
        }
      }
      const decision = authorize(route, session?.claims);
      if (!decision.allowed) return false;

      // From here on the request is ours.
      rt.metrics.fastPath.inc();
      const started = performance.now();
      const id = requestId(rt, req);
      rt.metrics.decisions.inc({ route: route.name, decision: 'allow' });
      if (rt.audit.allows) {
        rt.log.info({ reqId: id, audit: true, route: route.name, decision: 'allow', reason: decision.reasons.join(','), sub: session?.claims.sub, email: session?.claims.email, ip: req.socket.remoteAddress }, 'auth decision allow');
      }
      const conn = headers.connection;
      if (typeof conn === 'string') for (const token of conn.split(',')) delete headers[token.trim().toLowerCase()];
      for (const h of HOP_BY_HOP) delete headers[h];
      const trusted = rt.peerTrusted(req.socket.remoteAddress);
      const xfProto = headers['x-forwarded-proto'];
      const from = {
        socket: req.socket,
        headers: req.headers,
        host,
        id,
        protocol: trusted && typeof xfProto === 'string' && xfProto ? xfProto.split(',')[0]!.trim() : rt.publicProtocol,
      } as unknown as FastifyRequest;
      rt.rewriteUpstreamHeaders(route, session, headers, from);
      forward(rt, poolFor, route, path + n.query, req, res, headers, session ? () => rt.trackConnection(session, req.socket, res) : undefined,
        (status) => observe(route.name, status, (performance.now() - started) / 1000), id);
      return true;
    },
  };
  return fast;
}

function requestId(rt: Runtime, req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) && rt.peerTrusted(req.socket.remoteAddress) ? given : randomUUID();
}

function forward(
  rt: Runtime, poolFor: (origin: string) => Pool, route: RouteConfig, pathAndQuery: string,
  req: IncomingMessage, res: ServerResponse, headers: HeaderBag, onEventStream: (() => void) | undefined,
  done: (status: number) => void, id: string,
): void {
  const upstream = new URL(route.upstream);
  headers.host = upstream.host;
  const basePath = upstream.pathname === '/' ? '' : upstream.pathname.replace(/\/+$/, '');
  const abort = new AbortController();
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);
  res.once('close', () => { if (!res.writableFinished) abort.abort(); });
  poolFor(upstream.origin).request({
    path: basePath + pathAndQuery,
    method: req.method as 'GET',
    headers: headers as Record<string, string>,
    body: hasBody ? req : undefined,
    headersTimeout: route.timeoutMs,
    bodyTimeout: route.timeoutMs,
    signal: abort.signal,
  }).then((up) => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !RESPONSE_HOP_BY_HOP.has(k)) out[k] = v;
    const type = up.headers['content-type'];
    if (onEventStream && typeof type === 'string' && type.startsWith('text/event-stream')) onEventStream();
    res.writeHead(up.statusCode, out);
    pipeline(up.body, res, (err) => {
      // A reset after the response started: aborting the client is the only honest answer.
      if (err && !res.writableFinished) res.destroy();
      done(up.statusCode);
    });
  }, (err: { code?: string; name?: string }) => {
    if (abort.signal.aborted) { done(499); return; }
    const timeout = err?.code === 'UND_ERR_HEADERS_TIMEOUT' || err?.code === 'UND_ERR_BODY_TIMEOUT' || err?.code === 'UND_ERR_CONNECT_TIMEOUT';
    const e = timeout ? errors.upstreamTimeout(err) : errors.upstreamUnavailable(err);
    rt.metrics.upstreamErrors.inc({ route: route.name, kind: timeout ? 'timeout' : 'unavailable' });
    rt.log.warn({ reqId: id, route: route.name, err: (err as Error)?.message }, `upstream ${timeout ? 'timeout' : 'unavailable'}`);
    sendError(req, res, e, id);
    done(e.statusCode);
  });
}

function sendError(req: IncomingMessage, res: ServerResponse, e: PortcullisError, id: string): void {
  if (res.headersSent) { res.destroy(); return; }
  const html = typeof req.headers.accept === 'string' && req.headers.accept.includes('text/html');
  const body = html
    ? errorPage({ status: e.statusCode, title: 'Service problem', message: e.message, code: e.code, requestId: id })
    : JSON.stringify({ error: e.code, message: e.message, requestId: id });
  res.writeHead(e.statusCode, { 'content-type': html ? 'text/html; charset=utf-8' : 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
