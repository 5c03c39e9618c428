// Demo and test upstream behind the proxy: echoes what it received (HTML for browsers, JSON otherwise) and misbehaves on request.
import { listenOn } from './net.js';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface RecordedRequest {
  method: string;
  /** req.url exactly as received: not normalised, so path-handling tests see what the proxy sent. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
}

export interface EchoUpstream {
  url: string;
  port: number;
  /** Every request received, WebSocket upgrades included, in arrival order. */
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Shown first on the HTML page: what the proxy says about the caller. */
const IDENTITY_HEADERS = [
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-preferred-username',
  'x-forwarded-groups',
  'x-portcullis-assertion',
];
const STREAM_INTERVAL_MS = 100;
const STREAM_MAX_CHUNKS = 100; // 10 s
const SLOW_MAX_MS = 120_000;

/**
 * Special paths, for tests of the proxy's failure handling:
 *   /__slow?ms=N    the echo, after N ms
 *   /__hang         never answers (ended by close())
 *   /__reset        destroys the socket without a response
 *   /__stream       text/plain, one chunk every 100 ms for 10 s (`?chunks=N` for fewer)
 *   /__events       the same as server-sent events (text/event-stream)
 *   /__status/NNN   the echo with that status
 * Any path with `Upgrade: websocket`: a WebSocket whose first message is `{ method, url, headers }` as
 * JSON, then an echo of every message.
 */
export async function startEchoUpstream(opts: { host?: string; port?: number } = {}): Promise<EchoUpstream> {
  const host = opts.host ?? '127.0.0.1';
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const upgradedSockets = new Set<Socket>();
  const wss = new WebSocketServer({ noServer: true });

  const later = (ms: number, fn: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
    return timer;
  };

  const server = createServer((req, res) => {
    const recorded = record(req);
    requests.push(recorded);
    // Drain the body first so keep-alive connections stay usable; its bytes are not echoed.
    req.resume();
    req.on('end', () => route(req, res, recorded));
  });
  // Longer than any proxy's idle pool timeout: Node's 5 s default races connection reuse and shows up as stray 502s.
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;

  function route(req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest): void {
    const url = new URL(recorded.url, 'http://upstream.invalid');
    const path = url.pathname;
    if (path === '/__hang') return;
    if (path === '/__reset') {
      req.socket.destroy();
      return;
    }
    if (path === '/__slow') {
      const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 0, 0), SLOW_MAX_MS);
      const timer = later(ms, () => echo(req, res, recorded, 200));
      res.on('close', () => {
        clearTimeout(timer);
        timers.delete(timer);
      });
      return;
    }
    if (path === '/__stream' || path === '/__events') {
      stream(res, Math.min(Number(url.searchParams.get('chunks')) || STREAM_MAX_CHUNKS, STREAM_MAX_CHUNKS), path === '/__events');
      return;
    }
    const status = /^\/__status\/(\d{3})$/.exec(path);
    if (status) {
      const code = Number(status[1]);
      echo(req, res, recorded, code >= 200 && code <= 599 ? code : 400);
      return;
    }
    echo(req, res, recorded, 200);
  }

  function stream(res: ServerResponse, chunks: number, events = false): void {
    res.writeHead(200, { 'content-type': events ? 'text/event-stream' : 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    let sent = 0;
    const tick = (): void => {
      if (res.destroyed) return;
      sent += 1;
      res.write(events ? `data: chunk ${sent}\n\n` : `chunk ${sent}\n`);
      if (sent >= chunks) res.end();
      else later(STREAM_INTERVAL_MS, tick);
    };
    tick();
  }

  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const recorded = record(req);
    requests.push(recorded);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      socket.destroy();
      return;
    }
    upgradedSockets.add(socket);
    socket.on('close', () => upgradedSockets.delete(socket));
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      ws.send(JSON.stringify({ method: recorded.method, url: recorded.url, headers: recorded.headers }));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', () => ws.terminate());
    });
  });

  await listenOn(server, host, opts.port ?? 0);
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        for (const client of wss.clients) client.terminate();
        for (const socket of upgradedSockets) socket.destroy();
        wss.close();
        server.close(() => resolve());
        // Also ends /__hang and /__stream responses still in flight.
        server.closeAllConnections();
      }),
  };
}

function record(req: IncomingMessage): RecordedRequest {
  return {
    method: req.method ?? 'GET',
    url: req.url ?? '',
    headers: { ...req.headers },
    rawHeaders: [...req.rawHeaders],
  };
}

function echo(req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest, status: number): void {
  if (res.destroyed) return;
  const noBody = status === 204 || status === 304 || req.method === 'HEAD';
  const wantsHtml = /\btext\/html\b/i.test(String(req.headers.accept ?? ''));
  const body = wantsHtml
    ? htmlEcho(recorded)
    : JSON.stringify({ method: recorded.method, url: recorded.url, headers: recorded.headers });
  const headers: Record<string, string | number> = {
    'content-type': wantsHtml ? 'text/html; charset=utf-8' : 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  };
  if (wantsHtml) headers['content-security-policy'] = "default-src 'none'; style-src 'unsafe-inline'";
  if (noBody) {
    res.writeHead(status, headers).end();
    return;
  }
  headers['content-length'] = Buffer.byteLength(body);
  res.writeHead(status, headers).end(body);
}

function htmlEcho(r: RecordedRequest): string {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i + 1 < r.rawHeaders.length; i += 2) pairs.push([r.rawHeaders[i]!, r.rawHeaders[i + 1]!]);
  const identity = IDENTITY_HEADERS.map((name) => {
    const value = r.headers[name];
    const shown = value === undefined ? '<em>(not sent)</em>' : esc(Array.isArray(value) ? value.join(', ') : value);
    return `<tr><th>${esc(name)}</th><td>${shown}</td></tr>`;
  }).join('\n');
  const all = pairs
    .map(([name, value]) => {
      const mark = name.toLowerCase().startsWith('x-forwarded-') || IDENTITY_HEADERS.includes(name.toLowerCase());
      return `<tr${mark ? ' class="identity"' : ''}><th>${esc(name)}</th><td>${esc(value)}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portcullis demo upstream</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;font-family:ui-monospace,monospace;font-size:.9rem}
td{word-break:break-all}.identity{background:#fff6d5}h2{margin-top:2rem}</style></head>
<body><h1>Portcullis demo upstream</h1>
<p>This app has no login of its own. It shows what it received from the proxy in front of it.</p>
<h2>Identity from the proxy</h2>
<table class="identity">${identity}</table>
<h2>Request</h2>
<p><code>${esc(r.method)} ${esc(r.url)}</code></p>
<h2>All headers, as received</h2>
<table>${all}</table>
</body></html>`;
}

function esc(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
