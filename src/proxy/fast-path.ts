// Forward stage, hot path: the commonest request — an allowed route, and a session already
// verified and cached (or a public route) — forwarded straight from node:http to an undici Pool,
// without Fastify's per-request machinery or @fastify/reply-from. It runs the same stages as the
// door (normalise → route → session → policy → identity headers → forward) with the same compiled
// pieces. Anything else — a cache miss, a cookie to re-seal, a refresh due, a denial, Portcullis's
// own endpoints, bearer tokens, assertions, upgrades, a drain — returns false and takes the full
// Fastify path, which stays the reference behaviour (test/integration/fast-path.test.ts compares
// the two request for request).
//
// Why it exists: per allowed request it costs about half the CPU of the full path (measured in
// bench/README.md). The upstream exchange is an undici `dispatch` with a handler that writes the
// response straight into the ServerResponse: no Readable for the body, no stream.pipeline (whose
// per-call AbortController and DOMException were the largest single cost of an earlier version).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { parseCookie } from 'cookie';
import type { FastifyRequest } from 'fastify';
import type { Runtime } from '../runtime.js';
import { normalizeTarget } from '../routing/normalize.js';
import { authorize } from '../policy/decide.js';
import type { HeaderBag } from '../identity/headers.js';
import { errors, type PortcullisError } from '../errors.js';
import { renderError } from '../pages.js';
import { requestIdOf } from '../request-id.js';
import { HOP_BY_HOP, connectionTokens, isHopByHopResponseHeader } from './forward.js';


const REQUEST_DROPPED = new Set(HOP_BY_HOP);

export type ResponseObserver = (route: string, status: number, seconds: number) => void;

export interface FastPath {
  /** Serves the request and returns true, or returns false (untouched) for the full path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  close(): Promise<void>;
  enabled: boolean;
}

/** An upstream as the hot path uses it, parsed once per distinct `upstream` string. */
interface Upstream {
  pool: Pool;
  /** host[:port] for the Host header. */
  host: string;
  /** The upstream URL's path without a trailing slash ('' for the root). */
  basePath: string;
}

export function createFastPath(rt: Runtime, observe: ResponseObserver): FastPath {
  const upstreams = new Map<string, Upstream>();
  const upstreamOf = (base: string): Upstream => {
    let u = upstreams.get(base);
    if (!u) {
      const url = new URL(base);
      u = {
        pool: new Pool(url.origin, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 }),
        host: url.host,
        basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/+$/, ''),
      };
      upstreams.set(base, u);
    }
    return u;
  };
  const cookieBase = rt.config.session.cookieName;
  const served = rt.metrics.fastPath.tally();

  const fast: FastPath = {
    enabled: true,
    async close() {
      fast.enabled = false;
      await Promise.all([...upstreams.values()].map((u) => u.pool.close().catch(() => {})));
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
      const started = performance.now();
      served.n += 1;
      const id = requestIdOf(req, rt.peerTrusted);
      rt.countDecision(route.name, 'allow');
      if (rt.audit.allows) {
        rt.log.info({ reqId: id, audit: true, route: route.name, decision: 'allow', reason: decision.reasons.join(','), sub: session?.claims.sub, email: session?.claims.email, ip: req.socket.remoteAddress }, 'auth decision allow');
      }
      // Identity headers a client sent are removed (by rewriteUpstreamHeaders) before the upstream sees anything.
      // One pass: the client's headers minus hop-by-hop ones and those its Connection header names.
      const listed = connectionTokens(req.headers.connection);
      const headers: HeaderBag = {};
      const sent = req.headers;
      for (const k in sent) if (!REQUEST_DROPPED.has(k) && (listed === undefined || !listed.includes(k))) headers[k] = sent[k];
      // The few request fields rewriteUpstreamHeaders reads, as the full path's FastifyRequest has them.
      const from = { socket: req.socket, headers: req.headers, host, id, protocol: rt.protocolOfRaw(req) } as unknown as FastifyRequest;
      rt.rewriteUpstreamHeaders(route, session, headers, from);
      const up = upstreamOf(route.upstream);
      headers.host = up.host;
      const method = req.method ?? 'GET';
      const hasBody = method !== 'GET' && method !== 'HEAD' && (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);
      const relay = new Relay(rt, req, res, route.name, id, started, observe,
        session ? () => rt.trackConnection(session, req.socket, res) : undefined);
      up.pool.dispatch({
        path: up.basePath + path + n.query,
        method,
        headers: headers as Record<string, string>,
        body: hasBody ? req : null,
        headersTimeout: route.timeoutMs,
        bodyTimeout: route.timeoutMs,
      }, relay);
      return true;
    },
  };
  return fast;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * One upstream exchange (undici's dispatch handler interface): the upstream's status and headers go
 * out as soon as they arrive, body chunks are written as they come with the client's backpressure
 * passed back to the upstream socket, and a client that goes away aborts the upstream request.
 */
class Relay {
  private abort: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private status = 0;
  private done = false;
  private readonly onDrain = () => this.resume?.();

  constructor(
    private readonly rt: Runtime,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly route: string,
    private readonly id: string,
    private readonly started: number,
    private readonly observe: ResponseObserver,
    private readonly onEventStream: (() => void) | undefined,
  ) {
    res.once('close', () => {
      if (!res.writableFinished) this.abort?.(new Error('client went away'));
      this.finish(this.status || 499);
    });
  }

  private finish(status: number): void {
    if (this.done) return;
    this.done = true;
    this.observe(this.route, status, (performance.now() - this.started) / 1000);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.res.destroyed) abort(new Error('client went away'));
    else this.abort = abort;
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx (but 101): informational, not relayed — as on the full path
    this.resume = resume;
    this.status = statusCode;
    const out: string[] = [];
    let listed: string[] | undefined;
    let eventStream = false;
    for (let i = 0; i < raw.length; i += 2) {
      const lower = raw[i]!.toString('latin1').toLowerCase();
      const value = raw[i + 1]!.toString('latin1');
      if (lower === 'connection') listed = [...(listed ?? []), ...(connectionTokens(value) ?? [])];
      if (lower === 'content-type' && value.startsWith('text/event-stream')) eventStream = true;
      out.push(lower, value);
    }
    // Hop-by-hop headers, and those the Connection header names, stay on the upstream's hop.
    for (let i = out.length - 2; i >= 0; i -= 2) if (isHopByHopResponseHeader(out[i]!, listed)) out.splice(i, 2);
    // As on the full path: a request body the upstream did not wait for leaves the connection unusable.
    if (!this.req.complete) out.push('connection', 'close');
    if (eventStream) this.onEventStream?.();
    this.res.writeHead(statusCode, out);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.onDrain);
    return false;
  }

  onComplete(): void {
    this.res.end();
  }

  onError(err: Error & { code?: string }): void {
    const res = this.res;
    if (res.destroyed) { this.finish(499); return; }
    // Response headers already out (reset mid-body): aborting the client is the only honest answer.
    if (res.headersSent) { res.destroy(); return; }
    const timeout = err.code !== undefined && TIMEOUT_CODES.has(err.code);
    const e = timeout ? errors.upstreamTimeout(err) : errors.upstreamUnavailable(err);
    this.rt.metrics.upstreamErrors.inc({ route: this.route, kind: timeout ? 'timeout' : 'unavailable' });
    this.rt.log.warn({ reqId: this.id, route: this.route, err: err.message }, `upstream ${timeout ? 'timeout' : 'unavailable'}`);
    this.status = e.statusCode;
    sendError(this.req, res, e, this.id);
  }
}

function sendError(req: IncomingMessage, res: ServerResponse, e: PortcullisError, id: string): void {
  const { type, body } = renderError(e, req.headers.accept, id);
  res.writeHead(e.statusCode, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
