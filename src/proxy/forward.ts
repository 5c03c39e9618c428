// Forward stage: hand the (already authorized, already rewritten) request to the route's upstream
// with @fastify/reply-from over pooled undici keep-alive connections, and WebSocket upgrades over a
// raw socket pipe. Upstream failures become coded 502/504 answers, never a 500 or a hang.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import replyFrom from '@fastify/reply-from';
import { errors, type PortcullisError } from '../errors.js';
import type { HeaderBag } from '../identity/headers.js';

export interface ForwardTarget {
  routeName: string;
  /** Upstream origin + base path, no trailing slash. */
  upstream: string;
  /** Path, already normalised (and prefix-stripped when configured). */
  path: string;
  /** The raw query including its `?`, or ''. Passed through byte for byte, never decoded. */
  query: string;
  timeoutMs: number;
  rewriteHeaders: (headers: HeaderBag) => void;
  onUpstreamError: (err: PortcullisError, kind: string) => void;
  /** Called when the upstream answers with a server-sent-event stream (a long-lived response). */
  onEventStream?: () => void;
}

/** Headers that describe one hop only (RFC 9110 §7.6.1): never relayed, in either direction. */
export const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings'];
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, 'host']);

/** Whether a response header from the upstream stays on its own hop; `listed`: the names in its Connection header. */
export function isHopByHopResponseHeader(lowerName: string, listed: readonly string[] | undefined): boolean {
  return RESPONSE_DROPPED.has(lowerName) || (listed !== undefined && listed.includes(lowerName));
}

/**
 * The names a Connection header lists, lower case; undefined when it names none beyond the fixed
 * hop-by-hop list (`keep-alive` / `close`, nearly every request and response, skip the parsing).
 */
export function connectionTokens(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined;
  return (Array.isArray(value) ? value.join(',') : value).toLowerCase().split(',').map((s) => s.trim()).filter(Boolean);
}

/**
 * The upstream's response headers minus its hop-by-hop ones. reply-from strips these only for HTTP/2
 * clients; over HTTP/1 it would relay e.g. the upstream's `Connection: close` or `Upgrade` to the client.
 */
function responseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[] | undefined> {
  const listed = connectionTokens(headers.connection);
  const out: Record<string, string | string[] | undefined> = {};
  for (const k in headers) if (!isHopByHopResponseHeader(k, listed)) out[k] = headers[k];
  return out;
}

/** Registers reply-from on the proxy's encapsulated context. */
export async function registerForwarding(app: FastifyInstance): Promise<void> {
  await app.register(replyFrom, {
    disableRequestLogging: true,
    undici: { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 },
    // The body is streamed through untouched; the proxy context never parses it.
    contentTypesToEncode: [],
  });
  // Pass every body through as a stream, whatever its type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
}

export function forward(request: FastifyRequest, reply: FastifyReply, t: ForwardTarget): FastifyReply {
  // The query goes separately: reply-from decodes its source URL to look for traversal, which would
  // turn a malformed escape in a query string into a 500 and a `../` in a query value into a 400.
  const qs = t.query.length > 1 ? t.query.slice(1) : '';
  return reply.from(t.upstream + t.path, {
    queryString: () => qs,
    timeout: t.timeoutMs,
    onResponse: (_req, rep, raw) => {
      const res = raw as unknown as { headers: Record<string, string | string[] | undefined>; stream: NodeJS.ReadableStream };
      const type = res.headers['content-type'];
      if (t.onEventStream && typeof type === 'string' && type.startsWith('text/event-stream')) t.onEventStream();
      rep.send(res.stream);
    },
    // Never retry: a 503 from the upstream is the upstream's answer, and replays are not ours to make.
    retryDelay: () => null,
    rewriteHeaders: (headers) => responseHeaders(headers as Record<string, string | string[] | undefined>) as typeof headers,
    rewriteRequestHeaders: (_req, headers) => {
      t.rewriteHeaders(headers as HeaderBag);
      return headers;
    },
    onError: (rep, { error }) => {
      const status = (error as { statusCode?: number }).statusCode;
      const code = (error as { code?: string }).code ?? '';
      const timeout = status === 504 || code.includes('TIMEOUT');
      const e = timeout ? errors.upstreamTimeout(error) : errors.upstreamUnavailable(error);
      t.onUpstreamError(e, timeout ? 'timeout' : 'unavailable');
      // Response headers may already be out (reset mid-body): then only aborting the client is honest.
      if (rep.sent || rep.raw.headersSent) {
        rep.raw.destroy();
        return;
      }
      rep.send(e);
    },
  });
}

export interface UpgradeTarget {
  upstream: string;
  pathAndQuery: string;
  headers: HeaderBag;
  timeoutMs: number;
}

/**
 * Proxies an authorized WebSocket upgrade: opens the upgrade to the upstream and, once it answers
 * 101, pipes the two sockets. Returns the client socket for session-bound tracking.
 */
export function forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, t: UpgradeTarget, onError: (status: number, err: unknown) => void): void {
  const url = new URL(t.upstream + t.pathAndQuery);
  const headers = { ...t.headers, host: url.host };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const up = send(url, { method: req.method, headers, timeout: t.timeoutMs });
  let settled = false;
  const fail = (status: number, err: unknown) => { if (!settled) { settled = true; onError(status, err); } };
  up.on('upgrade', (res, upSocket, upHead) => {
    settled = true;
    upSocket.setTimeout(0);
    const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}`];
    for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
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
    // The upstream refused the upgrade: relay its status line and close.
    fail(res.statusCode && res.statusCode >= 400 ? res.statusCode : 502, new Error(`upstream answered ${res.statusCode} to an upgrade`));
    res.resume();
  });
  up.on('timeout', () => { fail(504, new Error('upstream upgrade timed out')); up.destroy(); });
  up.on('error', (err) => fail(502, err));
  socket.on('error', () => up.destroy());
  up.end();
}
