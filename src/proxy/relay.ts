// Forward stage, the wire: sends an `UpstreamPlan` to its upstream and relays the answer. HTTP goes
// through one undici Pool per upstream origin with a dispatch handler that writes status, headers
// and body chunks straight into the ServerResponse (no body Readable, no stream.pipeline — whose
// per-call AbortController was the largest single cost in an earlier profile); WebSocket upgrades
// through node:http and a socket pipe. Upstream failures are reported to the caller as coded
// 502/504 errors before any byte went out, or end the client connection after — never a 500 or a hang.
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { Pool } from 'undici';
import { errors, type PortcullisError } from '../errors.js';
import { connectionTokens, isHopByHopResponseHeader } from './hop-by-hop.js';
import type { UpstreamPlan } from './plan.js';

export interface RelayContext {
  readonly route: string;
  readonly timeoutMs: number;
  /** The upstream could not be reached or timed out before the response started: answer with `e`. */
  fail(e: PortcullisError, kind: 'timeout' | 'unavailable', err: Error): void;
  /** The response is over (or the client left): the status sent, 499 for a client that went away. */
  done(status: number): void;
  /** The upstream answered with a server-sent-event stream (a long-lived response). */
  onEventStream?: (() => void) | undefined;
  /**
   * Session cookies this response must carry (a refresh or re-seal): added to the upstream's own
   * Set-Cookie lines, and the response made `Cache-Control: no-store` so no cache keeps them.
   */
  setCookies?: readonly string[] | undefined;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export class Forwarder {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  private pool(origin: string): Pool {
    let p = this.pools.get(origin);
    if (!p) {
      p = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
      this.pools.set(origin, p);
    }
    return p;
  }

  /** Relays one HTTP request. `req`'s body (if the plan says there is one) is streamed upstream. */
  http(plan: UpstreamPlan, req: IncomingMessage, res: ServerResponse, ctx: RelayContext): void {
    const relay = new Relay(req, res, ctx);
    this.pool(plan.upstream.origin).dispatch({
      path: plan.path,
      method: plan.method,
      headers: plan.headers as Record<string, string>,
      body: plan.hasBody ? req : null,
      headersTimeout: ctx.timeoutMs,
      bodyTimeout: ctx.timeoutMs,
    }, relay);
  }

  /**
   * Proxies an authorized WebSocket upgrade: opens the upgrade to the upstream and, once it answers
   * 101, pipes the two sockets.
   */
  upgrade(plan: UpstreamPlan, socket: Duplex, head: Buffer, ctx: Pick<RelayContext, 'timeoutMs' | 'fail' | 'setCookies'> & { upgraded?: () => void }): void {
    const url = new URL(plan.upstream.origin + plan.path);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const up = send(url, { method: plan.method, headers: plan.headers, timeout: ctx.timeoutMs });
    let settled = false;
    const fail = (status: 502 | 504, err: Error) => {
      if (settled) return;
      settled = true;
      ctx.fail(status === 504 ? errors.upstreamTimeout(err) : errors.upstreamUnavailable(err), status === 504 ? 'timeout' : 'unavailable', err);
    };
    up.on('upgrade', (res, upSocket, upHead) => {
      settled = true;
      upSocket.setTimeout(0);
      const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}`];
      for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
      // A refresh or re-seal decided on this upgrade: the 101 carries the new session cookie, as any
      // other response would (browsers store cookies from the WebSocket handshake response), so the
      // next request does not refresh again with the old one.
      for (const c of ctx.setCookies ?? []) lines.push(`Set-Cookie: ${c}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      ctx.upgraded?.();
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.pipe(socket).pipe(upSocket);
      const end = () => { upSocket.destroy(); socket.destroy(); };
      upSocket.on('error', end);
      socket.on('error', end);
      upSocket.on('close', end);
      socket.on('close', end);
    });
    up.on('response', (res) => {
      // The upstream refused the upgrade.
      fail(502, new Error(`upstream answered ${res.statusCode} to an upgrade`));
      res.resume();
    });
    up.on('timeout', () => { fail(504, new Error('upstream upgrade timed out')); up.destroy(); });
    up.on('error', (err) => fail(502, err));
    socket.on('error', () => up.destroy());
    up.end();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => {})));
  }
}

/**
 * One upstream exchange (undici's dispatch handler interface): the upstream's status and headers go
 * out as soon as they arrive, body chunks are written as they come with the client's backpressure
 * passed back to the upstream socket, and a client that goes away aborts the upstream request.
 */
class Relay {
  private abort: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private status = 0;
  private finished = false;
  private readonly onDrain = () => this.resume?.();

  constructor(private readonly req: IncomingMessage, private readonly res: ServerResponse, private readonly ctx: RelayContext) {
    res.on('close', () => { // 'close' comes once (on(): no once() wrapper per request)
      if (!res.writableFinished) this.abort?.(new Error('client went away'));
      this.finish(res.writableFinished ? this.status || res.statusCode : 499);
    });
  }

  private finish(status: number): void {
    if (this.finished) return;
    this.finished = true;
    this.ctx.done(status);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.res.destroyed) abort(new Error('client went away'));
    else this.abort = abort;
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx (but 101): informational, not relayed
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
    const ours = this.ctx.setCookies;
    if (ours !== undefined && ours.length > 0) {
      for (let i = out.length - 2; i >= 0; i -= 2) if (out[i] === 'cache-control') out.splice(i, 2);
      out.push('cache-control', 'no-store');
      for (const c of ours) out.push('set-cookie', c);
    }
    // A request body the upstream did not wait for leaves the client connection unusable.
    if (!this.req.complete) out.push('connection', 'close');
    if (eventStream) this.ctx.onEventStream?.();
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
    this.status = e.statusCode;
    this.ctx.fail(e, timeout ? 'timeout' : 'unavailable', err);
  }
}
