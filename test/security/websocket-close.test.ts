// Issue 13 item 10, first half: a WebSocket whose session ends gets a proper Close frame (1008
// policy violation, "session ended") — not a cut connection (1006) — and the frame is never put
// inside one the upstream or the client was in the middle of sending.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket, type Server } from 'node:net';
import { once } from 'node:events';
import { request } from 'undici';
import WebSocket from 'ws';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { CLOSE_GRACE_MS, FrameCursor, LiveConnections, closeFrame, type ConnectionOwner } from '../../src/proxy/connections.js';
import { ALICE } from './support.js';

async function signOut(url: string, cookie: string): Promise<void> {
  const out = await request(`${url}/oauth2/sign_out`, { method: 'POST', headers: { origin: url, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
}

test('a WebSocket whose session signs out is closed with 1008 "session ended", not cut (1006)', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: jar.header(s.url) } });
  const errors: Error[] = [];
  ws.on('error', (e) => errors.push(e));
  const messages: string[] = [];
  ws.on('message', (m) => messages.push(String(m)));
  await once(ws, 'open');
  // The relay works both ways before the session ends.
  ws.send('ping-1');
  while (!messages.includes('ping-1')) await new Promise((r) => setTimeout(r, 10));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const t0 = Date.now();
  await signOut(s.url, jar.header(s.url));
  const { code, reason } = await closed;
  assert.equal(code, 1008, 'policy violation, as RFC 6455 §7.4.1 names it');
  assert.equal(reason, 'session ended');
  assert.deepEqual(errors, [], 'a clean close: no protocol error on the client');
  assert.ok(Date.now() - t0 < CLOSE_GRACE_MS + 1000, 'promptly');
});

test('a big message in flight when the session ends arrives whole, then the Close frame', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: jar.header(s.url) }, perMessageDeflate: false });
  const errors: Error[] = [];
  ws.on('error', (e) => errors.push(e));
  await once(ws, 'message'); // the upstream's greeting
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  // 8 MB echoed back: the sign-out lands while frames are on the wire (in one direction or both).
  const big = Buffer.alloc(8 * 1024 * 1024, 0x61);
  ws.send(big);
  ws.send(big);
  await new Promise((r) => setTimeout(r, 5));
  await signOut(s.url, jar.header(s.url));
  assert.equal(await closed, 1008);
  assert.deepEqual(errors.map((e) => e.message), [], 'no frame was cut or interleaved');
});

// ---- Frame boundaries, byte for byte: a relay like proxy/relay.ts between two raw sockets ----

interface Pair { near: Socket; far: Socket; server: Server }
async function socketPair(farHalfOpen = false): Promise<Pair> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const far = connect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', allowHalfOpen: farHalfOpen });
  await once(far, 'connect');
  const [near] = await accepted;
  return { near, far, server };
}

function collect(s: Socket): { bytes: () => Buffer; ended: Promise<unknown> } {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => {});
  return { bytes: () => Buffer.concat(chunks), ended: once(s, 'close') };
}

const until = async (cond: () => boolean) => { while (!cond()) await new Promise((r) => setTimeout(r, 5)); };

function unmask(frame: Buffer): { fin: boolean; opcode: number; masked: boolean; payload: Buffer } {
  const masked = (frame[1]! & 0x80) !== 0;
  const len = frame[1]! & 0x7f;
  const key = masked ? frame.subarray(2, 6) : undefined;
  const payload = Buffer.from(frame.subarray(masked ? 6 : 2, (masked ? 6 : 2) + len));
  if (key) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return { fin: (frame[0]! & 0x80) !== 0, opcode: frame[0]! & 0x0f, masked, payload };
}

const SESSION: ConnectionOwner = { sid: 's1', sub: 'alice', idpSid: undefined, createdAt: 0 };

test('the Close frame waits for the end of the frame under way, in each direction, and nothing follows it', async (t) => {
  const browser = await socketPair(); // browser.far: the browser; browser.near: Portcullis's client socket
  const upstream = await socketPair(); // upstream.near: Portcullis's upstream socket; upstream.far: the app
  t.after(() => { browser.server.close(); upstream.server.close(); for (const s of [browser.near, browser.far, upstream.near, upstream.far]) s.destroy(); });
  const conns = new LiveConnections<ConnectionOwner>(() => false);
  const client = browser.near;
  const upSocket = upstream.near;
  conns.trackWebSocket(SESSION, client, Buffer.alloc(0));
  // What the relay does once the upstream answers 101 (an upstream frame arriving with the head included).
  const greeting = Buffer.from([0x81, 0x02, 0x68, 0x69]); // text "hi"
  const head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  client.write(head);
  client.write(greeting);
  upSocket.pipe(client).pipe(upSocket);
  const atBrowser = collect(browser.far);
  const atApp = collect(upstream.far);

  // The app starts a 200-byte binary frame (16-bit length) and sends only part of it; the browser
  // starts a masked 10-byte text frame and sends only its header and 3 bytes.
  const appFrame = Buffer.concat([Buffer.from([0x82, 126, 0, 200]), Buffer.alloc(200, 0x41)]);
  const key = Buffer.from([1, 2, 3, 4]);
  const text = Buffer.from('0123456789');
  const maskedText = Buffer.from(text.map((b, i) => b ^ key[i & 3]!));
  const browserFrame = Buffer.concat([Buffer.from([0x81, 0x80 | 10]), key, maskedText]);
  upstream.far.write(appFrame.subarray(0, 50));
  browser.far.write(browserFrame.subarray(0, 9));
  await until(() => atBrowser.bytes().length >= head.length + greeting.length + 50 && atApp.bytes().length >= 9);

  assert.equal(conns.endSession('s1'), 1);
  // The rest of each frame, then a frame that must never be relayed.
  upstream.far.write(Buffer.concat([appFrame.subarray(50), Buffer.from([0x81, 0x03, 0x6e, 0x6f, 0x21])]));
  browser.far.write(Buffer.concat([browserFrame.subarray(9), Buffer.from([0x81, 0x80, 9, 9, 9, 9])]));

  // The browser: the whole app frame, then the Close frame, then its connection ends.
  await until(() => atBrowser.bytes().length >= head.length + greeting.length + appFrame.length + 15);
  assert.equal(atBrowser.bytes().subarray(0, head.length).toString(), head);
  const frames = atBrowser.bytes().subarray(head.length);
  assert.deepEqual(frames.subarray(0, greeting.length), greeting);
  assert.deepEqual(frames.subarray(greeting.length, greeting.length + appFrame.length), appFrame, 'the frame under way arrives whole');
  const close = frames.subarray(greeting.length + appFrame.length);
  assert.deepEqual(close, closeFrame({ code: 1008, reason: 'session ended' }, false), 'then the Close frame, and nothing after it');
  const c = unmask(close);
  assert.equal(c.opcode, 8);
  assert.equal(c.payload.readUInt16BE(0), 1008);
  assert.equal(c.payload.subarray(2).toString(), 'session ended');
  // The browser answers with its Close frame, as RFC 6455 §5.5.1 asks; it is not relayed.
  browser.far.end(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xf0]));

  // The app: the whole browser frame, then a masked Close frame 1008, then its connection ends.
  await until(() => atApp.bytes().length >= browserFrame.length + 2 + 4 + 15);
  assert.deepEqual(atApp.bytes().subarray(0, browserFrame.length), browserFrame, 'the frame under way arrives whole');
  const upClose = unmask(atApp.bytes().subarray(browserFrame.length));
  assert.equal(upClose.masked, true, 'client-to-server frames are masked');
  assert.equal(upClose.opcode, 8);
  assert.equal(upClose.payload.readUInt16BE(0), 1008);
  assert.equal(atApp.bytes().length, browserFrame.length + 6 + upClose.payload.length, 'nothing after it');
  upstream.far.end();
  await Promise.all([atBrowser.ended, atApp.ended]);
});

test('a peer that never answers the Close frame is cut after the grace period', async (t) => {
  const browser = await socketPair(true);
  const upstream = await socketPair();
  t.after(() => { browser.server.close(); upstream.server.close(); for (const s of [browser.near, browser.far, upstream.near, upstream.far]) s.destroy(); });
  const conns = new LiveConnections<ConnectionOwner>(() => false);
  conns.trackWebSocket(SESSION, browser.near);
  browser.near.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
  upstream.near.pipe(browser.near).pipe(upstream.near);
  // The browser keeps its side open (half-open allowed) and never answers.
  const atBrowser = collect(browser.far);
  collect(upstream.far);
  const t0 = Date.now();
  conns.close();
  await once(browser.near, 'close');
  const took = Date.now() - t0;
  assert.ok(took >= CLOSE_GRACE_MS - 50 && took <= CLOSE_GRACE_MS + 500, `cut after ${took} ms`);
  assert.equal(unmask(atBrowser.bytes().subarray(atBrowser.bytes().indexOf('\r\n\r\n') + 4)).payload.readUInt16BE(0), 1001, 'shutdown says "going away"');
  await until(() => upstream.near.destroyed);
});

test('a session ending before the upstream has answered the upgrade cuts the socket (no Close frame before a 101)', async (t) => {
  const browser = await socketPair();
  t.after(() => { browser.server.close(); browser.near.destroy(); browser.far.destroy(); });
  const conns = new LiveConnections<ConnectionOwner>(() => false);
  conns.trackWebSocket(SESSION, browser.near);
  const atBrowser = collect(browser.far);
  conns.endSession('s1');
  await atBrowser.ended;
  assert.equal(atBrowser.bytes().length, 0);
});

test('FrameCursor follows 7-, 16- and 64-bit lengths and masking keys across any split', () => {
  const frames = [
    Buffer.from([0x81, 0x00]),
    Buffer.concat([Buffer.from([0x82, 0x85, 1, 2, 3, 4]), Buffer.alloc(5)]),
    Buffer.concat([Buffer.from([0x02, 126, 0x01, 0x00]), Buffer.alloc(256)]),
    Buffer.concat([Buffer.from([0x80, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9]), Buffer.alloc(65536)]),
    Buffer.from([0x89, 0x00]),
  ];
  const stream = Buffer.concat(frames);
  const ends = new Set<number>();
  let at = 0;
  for (const f of frames) { at += f.length; ends.add(at); }
  for (const step of [1, 2, 3, 7, 13, 1000, stream.length]) {
    const cur = new FrameCursor();
    let offset = 0;
    const boundaries: number[] = [];
    while (offset < stream.length) {
      const chunk = stream.subarray(offset, Math.min(stream.length, offset + step));
      let i = 0;
      while (i < chunk.length) {
        i += cur.consume(chunk.subarray(i), true);
        if (cur.atBoundary) boundaries.push(offset + i);
      }
      offset += chunk.length;
    }
    assert.deepEqual(new Set(boundaries), ends, `chunks of ${step}`);
  }
});
