// The relay (src/proxy/relay.ts) answers the client with exactly what the upstream said: the same
// status, the same headers (hop-by-hop ones and those named in Connection dropped, repeated
// Set-Cookie kept), the same body — for odd upstream answers too: 204, HEAD, 1xx, chunked, large
// bodies under backpressure — and with coded 502/504s for a reset or a timeout, and an abort
// upstream for a client that goes away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { Client } from 'undici';
import { startStack } from '../helpers/stack.js';
import { listenOn } from '../../dev/devidp/net.js';
import { loginViaHttp } from '../helpers/browserless-login.js';

const BIG = Buffer.alloc(4 * 1024 * 1024, 'x');

/** An upstream that answers in the awkward ways real apps do. */
async function oddUpstream(t: { after(fn: () => unknown): void }): Promise<{ url: string; server: Server; hung: () => number; aborted: () => number }> {
  let aborted = 0;
  let hung = 0;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').replace(/^\/public/, '').split('?')[0];
    req.resume();
    switch (path) {
      case '/hop':
        res.writeHead(200, [
          'Content-Type', 'text/plain', 'Connection', 'x-secret, keep-alive', 'X-Secret', 'hidden', 'Keep-Alive', 'timeout=5',
          'Set-Cookie', 'a=1; Path=/', 'Set-Cookie', 'b=2; Path=/', 'X-Multi', 'one', 'X-Multi', 'two', 'Content-Length', '2',
          'Proxy-Connection', 'close', 'Http2-Settings', 'x', 'Upgrade', 'h2c',
        ]);
        res.end('ok');
        return;
      case '/chunked':
        res.writeHead(201, { 'content-type': 'text/plain' });
        res.write('part one, ');
        setTimeout(() => res.end('part two'), 20);
        return;
      case '/empty':
        res.writeHead(204, { 'x-empty': 'yes' });
        res.end();
        return;
      case '/early-hints':
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
        res.end('hints');
        return;
      case '/big':
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG.length) });
        res.end(BIG);
        return;
      case '/reset':
        req.socket.destroy();
        return;
      case '/hang':
        hung += 1;
        res.on('close', () => { if (!res.writableFinished) aborted += 1; });
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('no such thing');
    }
  });
  await listenOn(server, '127.0.0.1', 0);
  t.after(() => { server.closeAllConnections(); server.close(); });
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, server, hung: () => hung, aborted: () => aborted };
}

async function ask(url: string, path: string, method = 'GET', headers: Record<string, string> = {}) {
  const c = new Client(url);
  try {
    const r = await c.request({ path, method: method as 'GET', headers });
    const body = Buffer.from(await r.body.arrayBuffer());
    const h = { ...r.headers };
    delete h.date;
    return { status: r.statusCode, headers: h, body };
  } finally {
    await c.close();
  }
}

const HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'x-secret'];

test('the client gets what the upstream answered, minus its hop-by-hop headers; failures are coded', async (t) => {
  const up = await oddUpstream(t);
  const routes = [{ name: 'public', match: { path: '/public' }, upstream: up.url, auth: 'public', timeout: '1s' }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }];
  const s = await startStack(t, { routes });
  for (const [method, path] of [['GET', '/public/hop'], ['GET', '/public/chunked'], ['GET', '/public/empty'], ['HEAD', '/public/hop'],
    ['GET', '/public/early-hints'], ['GET', '/public/big'], ['GET', '/public/missing']] as const) {
    const a = await ask(s.url, path, method, { accept: 'application/json' });
    const direct = await ask(up.url, path, method, { accept: 'application/json' });
    const label = `${method} ${path}`;
    assert.equal(a.status, direct.status, label);
    for (const h of HOP) delete direct.headers[h];
    delete a.headers.connection; delete a.headers['keep-alive']; delete a.headers['transfer-encoding'];
    assert.deepEqual(a.headers, direct.headers, label);
    assert.ok(a.body.equals(direct.body), `${label}: bodies differ (${a.body.length} vs ${direct.body.length} bytes)`);
  }
  for (const [path, status, code] of [['/public/reset', 502, 'ERR_UPSTREAM_UNAVAILABLE'], ['/public/hang', 504, 'ERR_UPSTREAM_TIMEOUT']] as const) {
    const a = await ask(s.url, path, 'GET', { accept: 'application/json' });
    assert.equal(a.status, status, path);
    const body = JSON.parse(a.body.toString());
    assert.equal(body.error, code, path);
    assert.ok(body.requestId, `${path}: the error names its request id`);
    assert.equal(a.headers['cache-control'], 'no-store', path);
  }

  const hop = await ask(s.url, '/public/hop');
  assert.equal(hop.headers['x-secret'], undefined, 'a header named in Connection is hop-by-hop');
  for (const h of ['proxy-connection', 'http2-settings', 'upgrade']) assert.equal(hop.headers[h], undefined, h);
  assert.notEqual(hop.headers['keep-alive'], 'timeout=5', "the upstream's Keep-Alive is its own hop's");
  assert.deepEqual(hop.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'], 'repeated Set-Cookie kept apart');
  assert.deepEqual(hop.headers['x-multi'], ['one', 'two'], 'repeated header lines kept');
  assert.equal((await ask(s.url, '/public/big')).body.length, BIG.length);
});

test('a client that goes away aborts the upstream request', async (t) => {
  const up = await oddUpstream(t);
  const s = await startStack(t, { routes: [{ name: 'public', match: { path: '/public' }, upstream: up.url, auth: 'public', timeout: '30s' }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }] });
  const port = Number(new URL(s.url).port);
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write('GET /public/hang HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  // Wait until the upstream has the request, then hang up.
  const deadline = Date.now() + 5000;
  while (up.hung() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100));
  sock.destroy();
  while (up.aborted() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(up.aborted(), 1, 'the upstream saw its request aborted');
});

test('cached and uncached sessions alike: an upstream that answers before the request body is in closes the client connection', async (t) => {
  const up = await oddUpstream(t);
  const routes = [{ name: 'public', match: { path: '/public' }, upstream: up.url, auth: 'public' }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }];
  const fast = await startStack(t, { routes });
  const full = await startStack(t, { routes, existingIdp: fast.idp, sessionCache: false });
  for (const s of [fast, full]) {
    // A raw socket: the headers and a first part of the body, then a pause the upstream does not wait for.
    const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(sock, 'connect');
    sock.write('POST /public/hop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n');
    sock.write('x'.repeat(1000));
    let head = '';
    sock.on('data', (d: Buffer) => { head += d.toString('latin1'); });
    const deadline = Date.now() + 5000;
    while (!head.includes('\r\n\r\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    sock.destroy();
    const label = s === fast ? 'session cache on' : 'session cache off';
    assert.match(head, /^HTTP\/1\.1 200/, label);
    // The rest of the body would otherwise be read as the next request on this connection.
    assert.match(head, /\r\nconnection: close\r\n/i, `${label}: the connection is not reused`);
  }
});


test("a response that re-seals the session keeps the upstream's own Set-Cookie lines and ours, and is no-store", async (t) => {
  const up = await oddUpstream(t);
  let offset = 0;
  const now = () => Date.now() + offset;
  const routes = [{ name: 'public', match: { path: '/public' }, upstream: up.url, auth: 'public' }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }];
  const s = await startStack(t, { routes, now });
  const cookie = (await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' })).jar.header(s.url);
  offset += 61_000; // past the once-a-minute last-seen write: this response re-seals the session cookie
  const r = await ask(s.url, '/public/hop', 'GET', { cookie });
  assert.equal(r.status, 200);
  const lines = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
  assert.ok(lines.includes('a=1; Path=/') && lines.includes('b=2; Path=/'), `the upstream's cookies: ${lines.join(' | ')}`);
  assert.ok(lines.some((l) => l.startsWith('portcullis=')), `the re-sealed session cookie: ${lines.join(' | ')}`);
  assert.equal(r.headers['cache-control'], 'no-store');
});

test('a client that goes away in the middle of its request body aborts the upstream request too', async (t) => {
  const up = await oddUpstream(t);
  const s = await startStack(t, { routes: [{ name: 'public', match: { path: '/public' }, upstream: up.url, auth: 'public', timeout: '30s' }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }] });
  const port = Number(new URL(s.url).port);
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write('POST /public/hang HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 17\r\n\r\na');
  const deadline = Date.now() + 5000;
  while (up.hung() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  sock.destroy();
  while (up.aborted() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(up.aborted(), 1, 'the upstream saw its request aborted (it was left waiting for the rest of the body)');
});
