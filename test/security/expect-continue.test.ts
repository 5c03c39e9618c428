// `Expect: 100-continue`: Portcullis says 100 Continue only once the request is authorized, and a
// refused upload's connection ends with the answer — the body it never asked for would otherwise
// be read as the next request on that connection. (Before the one door, every such upload got 502:
// the Expect header was handed to undici, which refuses it.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { BOB } from './support.js';

/** Sends the head only, waits for what comes back (and whether the server closes), then sends the body if told 100. */
async function upload(port: number, head: string, body: string): Promise<{ text: string; closed: boolean }> {
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  let text = '';
  let closed = false;
  sock.on('data', (d: Buffer) => {
    text += d.toString('latin1');
    if (text.startsWith('HTTP/1.1 100')) { text = text.replace(/^HTTP\/1\.1 100[^\r]*\r\n\r\n/, '[100]'); sock.write(body); }
  });
  sock.on('close', () => { closed = true; });
  sock.write(head);
  const deadline = Date.now() + 3000;
  const complete = () => {
    const end = text.indexOf('\r\n\r\n');
    const len = /\r\ncontent-length:\s*(\d+)/i.exec(text);
    return end !== -1 && len !== null && text.length >= end + 4 + Number(len[1]);
  };
  while (!closed && Date.now() < deadline && !complete()) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100));
  sock.destroy();
  return { text, closed };
}

test('100 Continue only for an authorized upload; a refused one is answered without reading the body, and the connection ends', async (t) => {
  const s = await startStack(t);
  const port = Number(new URL(s.url).port);
  const bob = (await loginViaHttp(`${s.url}/`, BOB)).jar.header(s.url);
  const body = '{"hello":"world"}';
  const head = (path: string) => `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: ${bob}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`;

  const before = s.upstream.requests.length;
  const ok = await upload(port, head('/app/upload'), body);
  assert.match(ok.text, /^\[100\]HTTP\/1\.1 200/, 'continued, then the upstream answered');
  assert.equal(s.upstream.requests.length, before + 1);
  const seen = s.upstream.requests.at(-1)!;
  assert.equal(seen.method, 'PUT');
  assert.equal(seen.headers.expect, undefined, 'Expect stays on the client hop');

  const refused = await upload(port, head('/admin/upload'), body);
  assert.match(refused.text, /^HTTP\/1\.1 403/, 'no 100 Continue for a request that is refused');
  assert.match(refused.text, /\r\nconnection: close\r\n/i);
  assert.equal(s.upstream.requests.length, before + 1, 'nothing reached the upstream');
});
