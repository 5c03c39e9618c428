// RFC 9112 §3.2: a request with more than one Host header is answered 400. Node keeps the first
// one; a proxy in front may have routed by another — the two must never disagree about the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from '../helpers/stack.js';
import { rawSocket, statusOf } from './support.js';

test('two Host headers: 400 on plain requests and upgrades, nothing reaches the upstream', async (t) => {
  const s = await startStack(t);
  const port = Number(new URL(s.url).port);
  const before = s.upstream.requests.length;
  for (const [label, extra] of [['plain', ''], ['upgrade', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n']] as const) {
    for (const hosts of [`Host: 127.0.0.1:${port}\r\nHost: evil.example\r\n`, `Host: 127.0.0.1:${port}\r\nhost: 127.0.0.1:${port}\r\n`]) {
      const answer = await rawSocket(port, `GET /public/x HTTP/1.1\r\n${hosts}${extra}Accept: application/json\r\n\r\n`, 3000);
      assert.equal(statusOf(answer), 400, `${label}: ${answer.slice(0, 300)}`);
      assert.match(answer, /more than one Host/);
    }
  }
  assert.equal(s.upstream.requests.length, before);
  const one = await rawSocket(port, `GET /public/x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`, 3000);
  assert.equal(statusOf(one), 200);
});
