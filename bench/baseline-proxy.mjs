// Bench child process (opt-in scenario `baseline`): the bare stack Portcullis is built on — a node:http
// server relaying every request through an undici Pool's dispatch() with the pool settings of
// src/proxy/relay.ts (256 connections, pipelining 1, keep-alive 60 s), status, headers and body chunks
// written straight into the ServerResponse. No auth, no cookies, no logging, no metrics, no request id,
// no X-Forwarded-*: only what any HTTP/1.1 proxy must do (hop-by-hop headers dropped both ways, Host set
// to the upstream's, backpressure passed on). Tells the stack's cost apart from Portcullis's own.
// Prints `READY <url>` when listening.
//   node bench/baseline-proxy.mjs PORT UPSTREAM_URL   (plain JavaScript: no loader, like dist/)
import http from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2] ?? 0);
const upstream = new URL(process.argv[3] ?? 'http://127.0.0.1:9100');
const pool = new Pool(upstream.origin, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
const TIMEOUT_MS = 30_000;

// As src/proxy/hop-by-hop.ts (the list is short and fixed; copied so this stays plain JavaScript).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, 'host', 'expect']);
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, 'host']);
const tokens = (v) => (v === undefined || v === 'keep-alive' || v === 'close' ? undefined : String(v).toLowerCase().split(',').map((s) => s.trim()));

const server = http.createServer((req, res) => {
  const sent = req.headers;
  const listed = tokens(sent.connection);
  const headers = {};
  for (const k in sent) if (!REQUEST_DROPPED.has(k) && !(listed && listed.includes(k))) headers[k] = sent[k];
  headers.host = upstream.host;
  const cl = sent['content-length'];
  const hasBody = sent['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');

  let abort;
  let resume;
  const onDrain = () => resume?.();
  res.once('close', () => { if (!res.writableFinished) abort?.(new Error('client went away')); });
  pool.dispatch({
    path: req.url, method: req.method, headers, body: hasBody ? req : null, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS,
  }, {
    onConnect(a) { if (res.destroyed) a(new Error('client went away')); else abort = a; },
    onHeaders(status, raw, r) {
      if (status < 200) return true;
      resume = r;
      const out = [];
      let listedUp;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toString('latin1').toLowerCase();
        const value = raw[i + 1].toString('latin1');
        if (name === 'connection') listedUp = tokens(value);
        out.push(name, value);
      }
      for (let i = out.length - 2; i >= 0; i -= 2) if (RESPONSE_DROPPED.has(out[i]) || (listedUp && listedUp.includes(out[i]))) out.splice(i, 2);
      if (!req.complete) out.push('connection', 'close');
      res.writeHead(status, out);
      return true;
    },
    onData(chunk) {
      if (res.write(chunk)) return true;
      res.once('drain', onDrain);
      return false;
    },
    onComplete() { res.end(); },
    onError(err) {
      if (res.destroyed) return;
      if (res.headersSent) { res.destroy(); return; }
      const timeout = /TIMEOUT/.test(err.code ?? '');
      res.writeHead(timeout ? 504 : 502, { 'content-type': 'text/plain' });
      res.end(timeout ? 'upstream timeout\n' : 'bad gateway\n');
    },
  });
});
server.keepAliveTimeout = 72_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`READY http://127.0.0.1:${port}\n`));

const stop = () => {
  server.close();
  server.closeAllConnections();
  void pool.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
