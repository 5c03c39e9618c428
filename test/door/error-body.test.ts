// One JSON error body everywhere (issue 15): every doorway and endpoint that can answer an error in
// JSON — the door's proxy route, bearer routes, forward-auth, an upgrade refused, /oauth2/* with bad
// input, back-channel logout, body-parser failures, the sign-in rate limit, requests Node cannot
// parse, the admin endpoints — answers `{ "error": <registry code>, "message": …, "requestId": … }`
// (plus the few documented extra fields), with the registry's status for that code and the same
// request id in X-Request-Id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { REGISTRY, isErrorCode, type ErrorCode } from '../../src/errors.js';
import { startStack } from '../helpers/stack.js';

/** Fields an error body may carry besides error, message and requestId (docs/errors.md). */
const EXTRA_FIELDS = new Set(['signInUrl', 'route', 'error_description']);
const ADMIN_TOKEN = 'error-body-admin-token-0123456789';

interface Seen { status: number; headers: Record<string, string | string[] | undefined>; body: string }

function assertShape(what: string, r: Seen, code: ErrorCode): Record<string, unknown> {
  assert.match(String(r.headers['content-type']), /^application\/json/, `${what}: JSON (${r.status} ${r.body.slice(0, 200)})`);
  const body = JSON.parse(r.body) as Record<string, unknown>;
  assert.equal(body.error, code, `${what}: ${r.body}`);
  assert.ok(typeof body.error === 'string' && isErrorCode(body.error), `${what}: the code is the registry's`);
  assert.equal(r.status, REGISTRY[code].status, `${what}: the registry's status for ${code}`);
  assert.equal(typeof body.message, 'string', what);
  assert.ok((body.message as string).length > 0, what);
  assert.equal(typeof body.requestId, 'string', what);
  assert.equal(body.requestId, r.headers['x-request-id'], `${what}: requestId is the response's X-Request-Id`);
  for (const k of Object.keys(body)) {
    assert.ok(k === 'error' || k === 'message' || k === 'requestId' || EXTRA_FIELDS.has(k), `${what}: unexpected field ${k}`);
  }
  return body;
}

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Seen> {
  const r = await request(url, { method: (init.method ?? 'GET') as 'GET', headers: { accept: 'application/json', ...init.headers }, body: init.body });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

/** A raw exchange on a fresh connection (what fetch and undici would not send); the response parsed by hand. */
function raw(url: string, bytes: string): Promise<Seen> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d) => { data += d; });
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) { const i = l.indexOf(':'); headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim(); }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
  });
}

/** A WebSocket upgrade the door refuses: the answer written on the socket (node:http parses it). */
function upgrade(url: string, path: string): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('every doorway and endpoint answers errors in one JSON shape, with X-Request-Id', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-error-body-'));
  writeFileSync(join(dir, 'token'), `${ADMIN_TOKEN}\n`);
  const s = await startStack(t, {
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true },
    ],
    edit: (c) => {
      c.trustProxy = ['127.0.0.1'];
      c.admin = { tokenFile: join(dir, 'token') };
      c.rateLimit = { signIn: 1 };
      (c.oidc as Record<string, unknown>).bearerAudiences = ['urn:error-body'];
    },
  });
  const u = s.url;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const cases: Array<[string, () => Promise<Seen>, ErrorCode]> = [
    // The door (proxied routes).
    ['proxy route, no session', () => call(`${u}/app`), 'unauthenticated'],
    ['proxy route, bad path', () => call(`${u}/a%2fb`), 'ERR_REQUEST_BAD_PATH'],
    ['bearer route, invalid token', () => call(`${u}/api/x`, { headers: { authorization: 'Bearer not.a.jwt' } }), 'invalid_token'],
    // Forward-auth.
    ['forward-auth, no original URI', () => call(`${u}/oauth2/auth`), 'ERR_FORWARD_AUTH_BAD_REQUEST'],
    ['forward-auth, no session', () => call(`${u}/oauth2/auth`, { headers: { 'x-forwarded-uri': '/app', 'x-forwarded-host': '127.0.0.1' } }), 'unauthenticated'],
    // A refused upgrade.
    ['upgrade at an own endpoint', () => upgrade(u, '/oauth2/start'), 'ERR_UPGRADE_REFUSED'],
    // Portcullis's own endpoints (Fastify).
    ['callback without state', () => call(`${u}/oauth2/callback`), 'ERR_CALLBACK_STATE_MISSING'],
    ['unknown /oauth2/ endpoint', () => call(`${u}/oauth2/nope`), 'ERR_ROUTE_NOT_FOUND'],
    ['userinfo without a session', () => call(`${u}/oauth2/userinfo`), 'unauthenticated'],
    ['cross-site sign-out', () => call(`${u}/oauth2/sign_out`, { method: 'POST', headers: { ...form, origin: 'https://evil.example' }, body: '' }), 'ERR_SIGN_OUT_CROSS_SITE'],
    ['sign-in rate limit', async () => { await call(`${u}/oauth2/start`); return call(`${u}/oauth2/start`); }, 'ERR_RATE_LIMITED'],
    // Back-channel logout, and body-parser failures there.
    ['back-channel logout, no token', () => call(`${u}/oauth2/backchannel_logout`, { method: 'POST', headers: form, body: 'x=1' }), 'ERR_LOGOUT_TOKEN_MISSING'],
    ['back-channel logout, bad token', () => call(`${u}/oauth2/backchannel_logout`, { method: 'POST', headers: form, body: 'logout_token=a.b.c' }), 'ERR_LOGOUT_TOKEN_INVALID'],
    ['body too large', () => call(`${u}/oauth2/backchannel_logout`, { method: 'POST', headers: form, body: `logout_token=${'a'.repeat(20_000)}` }), 'ERR_REQUEST_BODY_TOO_LARGE'],
    ['unsupported Content-Type', () => call(`${u}/oauth2/backchannel_logout`, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<logout_token/>' }), 'ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE'],
    ['malformed JSON', () => call(`${u}/oauth2/backchannel_logout`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"logout_token":' }), 'ERR_REQUEST_BODY_MALFORMED'],
    // Requests Node itself refuses (answered on the socket).
    ['headers too large', () => raw(u, `GET /app HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 'ERR_REQUEST_HEADERS_TOO_LARGE'],
    ['not HTTP', () => raw(u, 'GET /app HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n'), 'ERR_REQUEST_MALFORMED'],
    // The admin endpoints (metrics/admin listener).
    ['admin, wrong token', () => call(`${s.server.metricsUrl}/admin/sessions?sub=alice`, { headers: { authorization: 'Bearer wrong' } }), 'ERR_ADMIN_UNAUTHORIZED'],
    ['admin, no subject', () => call(`${s.server.metricsUrl}/admin/sessions`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }), 'ERR_ADMIN_BAD_REQUEST'],
    ['admin, list with the cookie store', () => call(`${s.server.metricsUrl}/admin/sessions?sub=alice`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }), 'ERR_ADMIN_LIST_UNSUPPORTED'],
    ['admin, malformed JSON', () => call(`${s.server.metricsUrl}/admin/sessions/revoke`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{' }), 'ERR_REQUEST_BODY_MALFORMED'],
    ['admin listener, unknown path', () => call(`${s.server.metricsUrl}/nope`), 'ERR_ROUTE_NOT_FOUND'],
  ];
  const ids = new Set<string>();
  for (const [what, send, code] of cases) {
    const body = assertShape(what, await send(), code);
    ids.add(body.requestId as string);
  }
  assert.equal(ids.size, cases.length, 'each answer has its own request id');

  // The extra fields where they help: the back-channel logout mirrors message as OAuth's error_description.
  const bcl = assertShape('back-channel logout', await call(`${u}/oauth2/backchannel_logout`, { method: 'POST', headers: form, body: 'x=1' }), 'ERR_LOGOUT_TOKEN_MISSING');
  assert.equal(bcl.error_description, bcl.message);
  const fa = assertShape('forward-auth', await call(`${u}/oauth2/auth`, { headers: { 'x-forwarded-uri': '/app', 'x-forwarded-host': '127.0.0.1' } }), 'unauthenticated');
  assert.match(String(fa.signInUrl), /\/oauth2\/start\?rd=/);
  // A trusted proxy's X-Request-Id is the one answered (and logged).
  const given = await call(`${u}/app`, { headers: { 'x-request-id': 'from-the-ingress-1' } });
  assert.equal(assertShape('trusted request id', given, 'unauthenticated').requestId, 'from-the-ingress-1');
  assert.ok(s.logs.some((l) => l.includes('"reqId":"from-the-ingress-1"')), 'the log line names the same id');
});

test('browsers get the error page, not JSON, with the same request id', async (t) => {
  const s = await startStack(t);
  const r = await call(`${s.url}/oauth2/callback`, { headers: { accept: 'text/html' } });
  assert.equal(r.status, 400);
  assert.match(String(r.headers['content-type']), /^text\/html/);
  assert.ok(r.body.includes(String(r.headers['x-request-id'])), 'the page shows the request id');
  assert.match(r.body, /ERR_CALLBACK_STATE_MISSING/);
});

test('while draining, own endpoints answer ERR_DRAINING in the same shape; /readyz says draining', async (t) => {
  const s = await startStack(t);
  s.server.runtime.draining = true;
  t.after(() => { s.server.runtime.draining = false; });
  for (const path of ['/oauth2/userinfo', '/healthz', '/app']) {
    const r = await call(`${s.url}${path}`);
    assertShape(`${path} while draining`, r, 'ERR_DRAINING');
    assert.equal(r.headers.connection, 'close', path);
    assert.equal(r.headers['retry-after'], '1', path);
  }
  const ready = await call(`${s.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.equal(JSON.parse(ready.body).status, 'draining');
});
