// A refresh that falls due on a WebSocket upgrade: the 101 carries the new session cookie (as any
// other response carrying a refresh does), so the browser's next request uses the refreshed session
// instead of refreshing again with the old cookie. Also on the upstream refusing the upgrade (502).
//
// The dev IdP and the proxy run in this process and both read Date.now(), which the test moves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { processClock } from '../helpers/clock.js';

const ALICE = { user: 'alice', password: 'alice-password' };


/** A raw WebSocket handshake: resolves with the status line's code and headers of the first answer. */
function upgrade(url: string, cookie: string): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      headers: {
        cookie,
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
      timeout: 10_000,
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode ?? 0, headers: res.headers }); });
    req.on('response', (res) => { res.resume(); resolve({ status: res.statusCode ?? 0, headers: res.headers }); });
    req.on('timeout', () => { req.destroy(new Error('upgrade timed out')); });
    req.on('error', reject);
    req.end();
  });
}

function sessionCookies(headers: IncomingHttpHeaders): string[] {
  return (headers['set-cookie'] ?? []).filter((c) => /^portcullis(_\d+)?=/.test(c) && !/max-age=0/i.test(c));
}

test('a refresh due on a WebSocket upgrade: the 101 carries the refreshed session cookie, and the next request does not refresh again', async (t) => {
  const clock = processClock(t);
  const s = await startStack(t, { now: clock.now, idp: { ttl: { AccessToken: 60, IdToken: 60 } } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  let refreshes = 0;
  s.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') refreshes += 1;
  });

  clock.advance(50_000); // inside the 12 s margin of the 60 s token
  const ws = await upgrade(`${s.url}/socket`, jar.header(`${s.url}/`));
  assert.equal(ws.status, 101);
  assert.equal(refreshes, 1, 'the upgrade refreshed the session');
  const fresh = sessionCookies(ws.headers);
  assert.ok(fresh.length > 0, `the 101 sets the refreshed session cookie (got ${JSON.stringify(ws.headers['set-cookie'])})`);
  jar.store(ws.headers['set-cookie'], `${s.url}/`);

  clock.advance(2_000);
  const r = await request(`${s.url}/after`, { headers: { accept: 'application/json', cookie: jar.header(`${s.url}/`) }, reset: true });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
  assert.equal(refreshes, 1, 'the next request used the refreshed session: no second refresh');
});

test('a refresh due on an upgrade the upstream refuses: the 502 still carries the refreshed session cookie', async (t) => {
  const clock = processClock(t);
  const s = await startStack(t, {
    now: clock.now,
    idp: { ttl: { AccessToken: 60, IdToken: 60 } },
    // An upstream that is not listening: the upgrade fails with 502 after the refresh was done.
    routes: [{ name: 'gone', match: { path: '/gone' }, upstream: 'http://127.0.0.1:9', websocket: true },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true }],
  });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  clock.advance(50_000);
  const ws = await upgrade(`${s.url}/gone/socket`, jar.header(`${s.url}/`));
  assert.equal(ws.status, 502);
  assert.ok(sessionCookies(ws.headers).length > 0, `the 502 sets the refreshed session cookie (got ${JSON.stringify(ws.headers['set-cookie'])})`);
});
