// No secrets in logs: a full sign-in, refresh, API calls with credentials and sign-out at
// logLevel: trace (with and without the session cache; WebSocket upgrades and an upstream that is
// down included), then every captured log line is searched for every secret the run handled —
// cookie values, the client secret, the session secret, ID/access/refresh tokens (before and after
// the refresh), the authorization code and Authorization header values. Every field of every line
// is searched, decoded (byte arrays, base64, percent-encoding, hex: test/helpers/log-scan.ts), not
// just the text of the line. Further tests: requests Node's HTTP parser rejects, sent with a
// cookie and an Authorization header, to the proxy, to a Fastify server with Fastify's own
// client-error handler (which logs the raw request bytes at trace) and to a cluster (whose
// primary's /metrics server is such a server); and the error objects of the libraries Portcullis
// uses, through its redaction list (src/logging.ts).
import { test, type TestContext } from 'node:test';
import { Writable } from 'node:stream';
import { connect, type AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import { request, errors as undiciErrors } from 'undici';
import Fastify from 'fastify';
import { ResponseBodyError } from 'openid-client';
import { ReplyError } from 'ioredis';
import { REDACT, loggerOptions } from '../../src/logging.js';
import WebSocket from 'ws';
import { DEFAULT_ROUTES, freePort, startStack, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestIdp, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { alive, configFile, get, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor } from './support.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import type { ActiveSession } from '../../src/session/sessions.js';
import { findSecretsInLogs } from '../helpers/log-scan.js';
import { rawRequest } from '../security/support.js';

test('a full session at logLevel trace leaves no cookie, token, secret or Authorization value in any log field', (t) => fullSession(t, true));

test('a full session at logLevel trace without the session cache (every request opens its cookie) leaves no secret in any log field', (t) => fullSession(t, false));

async function fullSession(t: TestContext, sessionCache: boolean): Promise<void> {
  const dead = `http://127.0.0.1:${await freePort()}`; // nothing listens there: upstream errors get logged
  // 62 s tokens are due for refresh 12.4 s before they expire: the dev IdP and the proxy share this
  // process's Date.now(), moved past that point below (no sleeping, no refresh before then).
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.after(() => { Date.now = realNow; });
  const s = await startStack(t, {
    now: () => Date.now(),
    idp: { ttl: { AccessToken: 62, IdToken: 62 } },
    edit: (raw) => { raw.logLevel = 'trace'; },
    sessionCache,
    routes: [{ name: 'dead', match: { path: '/dead' }, upstream: dead, websocket: true }, ...DEFAULT_ROUTES],
  });
  const secrets = new Map<string, string>([
    ['client secret', TEST_CLIENT_SECRET],
    ['session secret', TEST_SESSION_SECRET],
    ['token endpoint Basic credentials', Buffer.from(`${s.idp.clientId}:${TEST_CLIENT_SECRET}`).toString('base64')],
  ]);
  const rt = s.server.runtime;
  const remember = async (label: string, cookieHeader: string) => {
    for (const part of cookieHeader.split(/;\s*/)) {
      const [name, value = ''] = part.split('=');
      if (value.length >= 16) secrets.set(`${label} cookie ${name}`, value);
    }
    const cookies = Object.fromEntries(cookieHeader.split(/;\s*/).map((p) => p.split('=') as [string, string]));
    const lookup = await rt.sessions.lookup(cookies);
    assert.equal(lookup.kind, 'valid', `${label}: a live session`);
    const record = await rt.sessions.record((lookup as { session: ActiveSession }).session, cookies);
    assert.ok(record?.idToken && record.accessToken && record.refreshToken, `${label}: tokens in the session`);
    secrets.set(`${label} ID token`, record.idToken);
    secrets.set(`${label} ID token signature`, record.idToken.split('.')[2]!);
    secrets.set(`${label} access token`, record.accessToken);
    secrets.set(`${label} refresh token`, record.refreshToken);
  };

  const login = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  assert.equal(login.status, 200);
  const callback = login.hops.find((h) => h.url.startsWith(`${s.url}/oauth2/callback`));
  const code = callback && new URL(callback.url).searchParams.get('code');
  assert.ok(code, 'the authorization code');
  secrets.set('authorization code', code);
  await remember('first', login.jar.header(s.url));

  // API calls carrying credentials of their own: they must not be echoed either.
  const bearer = 'Bearer client-sent-credential-0123456789abcdef';
  secrets.set('client Authorization header', bearer.slice(7));
  for (const path of ['/x', '/admin/y', '/public/z']) {
    const r = await request(`${s.url}${path}`, { headers: { accept: 'application/json', authorization: bearer, cookie: login.jar.header(s.url), 'proxy-authorization': bearer } });
    await r.body.dump();
  }
  await (await request(`${s.url}/x`, { headers: { accept: 'application/json', authorization: bearer } })).body.dump();

  // The session's cookie on a WebSocket upgrade, and on requests and an upgrade whose upstream is down (502s, logged with their error).
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: login.jar.header(s.url), authorization: bearer } });
  await new Promise<void>((resolve, reject) => { ws.once('message', () => resolve()); ws.once('error', reject); });
  ws.close();
  for (const accept of ['application/json', 'text/html']) {
    const r = await request(`${s.url}/dead/x?k=v`, { headers: { accept, cookie: login.jar.header(s.url), authorization: bearer } });
    await r.body.dump();
    assert.equal(r.statusCode, 502);
  }
  const deadWs = new WebSocket(`${s.url.replace('http', 'ws')}/dead/socket`, { headers: { cookie: login.jar.header(s.url) } });
  await new Promise<void>((resolve) => { deadWs.once('unexpected-response', () => resolve()); deadWs.once('error', () => resolve()); });
  deadWs.terminate();

  // Refresh: the tokens are now within their refresh margin.
  offset += 51_000;
  const refreshed = await request(`${s.url}/after-refresh`, { headers: { accept: 'application/json', cookie: login.jar.header(s.url) } });
  login.jar.store(refreshed.headers['set-cookie'], s.url);
  await refreshed.body.dump();
  assert.equal(refreshed.statusCode, 200);
  assert.ok(s.logs.length > 0);
  await remember('refreshed', login.jar.header(s.url));
  assert.notEqual(secrets.get('first access token'), secrets.get('refreshed access token'), 'a refresh happened');

  // A tampered cookie, a bad callback, sign-out.
  await (await request(`${s.url}/x`, { headers: { accept: 'application/json', cookie: `portcullis=${secrets.get('first ID token')!.slice(0, 60)}` } })).body.dump();
  await (await request(`${s.url}/oauth2/callback?code=${code}&state=forged`, { headers: { cookie: login.jar.header(s.url) } })).body.dump();
  // Malformed escapes next to the code and the cookie: error details must not quote the URL's secrets.
  for (const path of [`/oauth2/callback?code=${code}&state=%zz`, `/oauth2/callback%zz?code=${code}`, `/x%zz/${code}?code=${code}`, `/x?code=${code}&bad=%E0%A4%A`]) {
    const r = await rawRequest(s.url, { path, headers: { accept: 'application/json', cookie: login.jar.header(s.url) } });
    assert.ok(r.status >= 200, path);
  }
  const out = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { origin: s.url, cookie: login.jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
  assert.equal(out.statusCode, 303);

  assert.ok(s.logs.some((l) => l.includes('"level":10') || l.includes('"level":20')), 'trace/debug lines were written');
  assert.ok(s.logs.some((l) => l.includes('signed in')) && s.logs.some((l) => l.includes('signed out')));
  assertNoSecrets(s.logs, secrets);
}

/** Raw requests Node's HTTP parser rejects, each carrying `credentials` (header lines) after the request line. */
function unparsable(host: string, credentials: string): Array<{ label: string; text: string; status: number; code: string }> {
  return [
    // Headers beyond Node's 16 KiB limit.
    { label: 'oversized header', text: `GET /x HTTP/1.1\r\nHost: ${host}\r\n${credentials}X-Padding: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431, code: 'HPE_HEADER_OVERFLOW' },
    // A malformed request line: the parser fails on the first line; the packet holds the rest.
    { label: 'malformed request line', text: `GET /x HTTP/1.1 junk\r\nHost: ${host}\r\n${credentials}\r\n`, status: 400, code: 'HPE_INVALID_VERSION' },
    // A control character in a header value after the credentials.
    { label: 'invalid header value', text: `GET /x HTTP/1.1\r\nHost: ${host}\r\n${credentials}X-Bad: a\x01b\r\n\r\n`, status: 400, code: 'HPE_INVALID_HEADER_TOKEN' },
    // A bad request pipelined behind a good one (the packet holds both).
    { label: 'bad pipelined request', text: `GET /healthz HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /x HTTP/1.1\r\nHost: ${host}\r\n${credentials}Content-Length: nope\r\n\r\n`, status: 400, code: 'HPE_INVALID_CONTENT_LENGTH' },
  ];
}

/** Writes `text` to a fresh connection; everything the server sent until it closed (or `ms` passed). */
function exchange(port: number, text: string, ms = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (e) => { if (chunks.length === 0) { clearTimeout(timer); reject(e); } });
    socket.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
  });
}

/** Sends each unparsable request on its own connection; checks the last status line of each answer. */
async function sendUnparsable(port: number, credentials: string): Promise<string[]> {
  const codes: string[] = [];
  for (const c of unparsable(`127.0.0.1:${port}`, credentials)) {
    const answer = await exchange(port, c.text);
    // (A pipelined answer's status line follows the previous body directly, not at a line start.)
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.equal(statuses.at(-1), c.status, `${c.label}: answered ${c.status} (got ${statuses.join(', ') || 'nothing'})`);
    codes.push(c.code);
  }
  return codes.sort();
}

/** The HPE_* codes the log lines name (as `code` or `err.code`), sorted. */
function parserCodesLogged(lines: readonly string[]): string[] {
  return lines.map((l) => JSON.parse(l) as { code?: unknown; err?: { code?: unknown } })
    .map((l) => String(l.err?.code ?? l.code ?? ''))
    .filter((c) => c.startsWith('HPE_')).sort();
}

test('requests Node\'s HTTP parser rejects (431, 400), sent with a live session cookie at logLevel trace, leave no cookie or token in any log field, decoded', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.logLevel = 'trace'; } });
  const login = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  assert.equal(login.status, 200);
  const cookieHeader = login.jar.header(s.url);
  const secrets = new Map<string, string>();
  for (const part of cookieHeader.split(/;\s*/)) {
    const [name, value = ''] = part.split('=');
    if (value.length >= 16) secrets.set(`cookie ${name}`, value);
  }
  assert.ok([...secrets.keys()].some((k) => k.includes(s.config.session.cookieName)), 'the session cookie');
  const bearer = 'client-sent-credential-0123456789abcdef';
  secrets.set('client Authorization header', bearer);
  const sent = await sendUnparsable(Number(new URL(s.url).port), `Cookie: ${cookieHeader}\r\nAuthorization: Bearer ${bearer}\r\n`);
  assert.deepEqual(parserCodesLogged(s.logs), sent, 'each rejected request was logged');
  assertNoSecrets(s.logs, secrets);
});

// Fastify's own client-error handler logs the parse error at trace with Node's err.rawPacket: the
// request's bytes as {"type":"Buffer","data":[…]}, cookies included. The proxy's server answers
// parse errors itself (src/app.ts clientErrorHandler), but the cluster primary's /metrics server
// (src/cluster.ts) keeps Fastify's handler with the same redaction list.
test('Fastify\'s own client-error log at trace, with Portcullis\'s redaction list, keeps the parse error and censors the raw request bytes', async () => {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const app = Fastify({ logger: { level: 'trace', ...loggerOptions, stream } });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const cookie = 'portcullis=sealed-session-cookie-0123456789abcdefghijklmnop';
    const bearer = 'client-sent-credential-0123456789abcdef';
    const sent = await sendUnparsable((app.server.address() as AddressInfo).port, `Cookie: ${cookie}\r\nAuthorization: Bearer ${bearer}\r\n`);
    const clientErrors = lines.map((l) => JSON.parse(l) as { level: number; msg?: string; err?: { code?: string; rawPacket?: unknown } })
      .filter((l) => l.level === 10 && /^client (error|header_overflow)$/.test(l.msg ?? ''));
    assert.deepEqual(clientErrors.map((l) => l.err?.code).sort(), sent, 'each rejected request was logged at trace by Fastify');
    for (const l of clientErrors) assert.equal(l.err?.rawPacket, '[redacted]', 'the packet is censored, the error kept');
    assertNoSecrets(lines, new Map([['cookie', cookie.slice('portcullis='.length)], ['Authorization header', bearer]]));
  } finally {
    await app.close();
  }
});

test('workers: 2 at logLevel trace: unparsable requests with credentials to the primary\'s /metrics server and to the public port leave no cookie or token in any log field', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const idp = await startTestIdp(t, { redirectUris: [`http://127.0.0.1:${port}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({
    port, metricsPort, issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret,
    routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }],
    extra: { workers: 2, logLevel: 'trace' },
  }));
  const p = spawnPortcullis(t, file.path);
  const workers = () => new Set(p.logs.filter((l) => l.msg === 'portcullis listening').map((l) => l.pid!));
  t.after(() => { for (const pid of workers()) if (alive(pid)) process.kill(pid, 'SIGKILL'); });
  await waitFor(() => workers().size === 2, PROCESS_START_MS, 'two workers listening');
  await waitFor(async () => (await get(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200, 15_000, 'the primary to report ready');
  const cookie = 'portcullis=sealed-session-cookie-0123456789abcdefghijklmnop';
  const bearer = 'client-sent-credential-0123456789abcdef';
  const credentials = `Cookie: ${cookie}\r\nAuthorization: Bearer ${bearer}\r\n`;
  const sent = [...await sendUnparsable(metricsPort, credentials), ...await sendUnparsable(port, credentials)].sort();
  const lines = () => p.logs.map((l) => JSON.stringify(l));
  await waitFor(() => parserCodesLogged(lines()).length >= sent.length, 10_000, 'the rejected requests logged');
  assert.deepEqual(parserCodesLogged(lines()), sent, 'each rejected request was logged');
  assertNoSecrets(lines(), new Map([['cookie', cookie.slice('portcullis='.length)], ['Authorization header', bearer]]));
});

test('errors from the libraries Portcullis uses, logged with its redaction list, keep their diagnostics and lose their secrets', async () => {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const app = Fastify({ logger: { level: 'trace', ...loggerOptions, stream } });
  const secret = 'secret-value-0123456789abcdefghij';
  const secrets = new Map([['secret', secret]]);
  const log = app.log;
  // Node's ERR_INVALID_URL keeps the string that did not parse (a callback URL holds the code).
  let invalidUrl: unknown;
  try { new URL(`http://[bad/oauth2/callback?code=${secret}`); } catch (e) { invalidUrl = e; }
  assert.ok(invalidUrl instanceof Error && (invalidUrl as { input?: string }).input?.includes(secret));
  log.error({ err: invalidUrl }, 'invalid url');
  // oauth4webapi keeps the IdP's parsed response body as an enumerable `cause`.
  log.error({ err: new ResponseBodyError('server responded with an error in the response body', { cause: { error: 'server_error', error_description: 'down', access_token: secret }, response: new Response(null, { status: 500 }) }) }, 'token endpoint');
  // undici keeps a response's headers and body.
  log.error({ err: new undiciErrors.ResponseError('Response Error', 502, { headers: { 'set-cookie': `s=${secret}`, 'x-api-key': secret }, body: { token: secret } }) }, 'upstream');
  // ioredis keeps the failed command and its arguments.
  const reply = Object.assign(new ReplyError('OOM command not allowed'), { command: { name: 'set', args: [`portcullis:${secret}`, Buffer.from(secret)] } });
  log.error({ err: reply }, 'redis');
  // An AggregateError of parse errors carrying raw packets.
  log.error({ err: new AggregateError([Object.assign(new Error('Parse Error'), { code: 'HPE_INVALID_METHOD', rawPacket: Buffer.from(`X / HTTP/1.1\r\nCookie: s=${secret}\r\n`) })], 'many') }, 'aggregate');
  // Request/response-shaped objects and secret fields at the top level or one level down.
  log.info({ req: { method: 'GET', url: '/x', headers: { cookie: `s=${secret}`, 'x-api-key': secret } }, res: { statusCode: 200, headers: { 'set-cookie': [`s=${secret}`] } } }, 'req/res');
  log.info({ cookie: `s=${secret}`, authorization: `Bearer ${secret}`, 'x-forwarded-access-token': secret, 'x-portcullis-assertion': secret, setCookies: [`s=${secret}`], verifier: secret, tokens: { access_token: secret } }, 'top level');
  log.info({ record: { idToken: secret, accessToken: secret, refreshToken: secret, sub: 'alice' }, request: { cookies: { s: secret }, rawHeaders: ['Cookie', secret], url: '/x' } }, 'one level down');
  await app.close();
  const leaks = findSecretsInLogs(lines, secrets);
  assert.deepEqual(leaks.map((l) => `${l.where} in: ${l.line}`), []);
  const oneDown = JSON.parse(lines.find((l) => l.includes('"one level down"'))!) as Record<string, Record<string, unknown>>;
  assert.deepEqual(oneDown.record, { idToken: '[redacted]', accessToken: '[redacted]', refreshToken: '[redacted]', sub: 'alice' });
  assert.deepEqual(oneDown.request, { cookies: '[redacted]', rawHeaders: '[redacted]', url: '/x' });
  // Diagnostics stay: codes, statuses, messages.
  const byMsg = (m: string) => JSON.parse(lines.find((l) => l.includes(`"msg":"${m}"`))!) as { err: Record<string, unknown> };
  assert.equal(byMsg('invalid url').err.code, 'ERR_INVALID_URL');
  assert.deepEqual([byMsg('token endpoint').err.error, byMsg('token endpoint').err.status], ['server_error', 500]);
  assert.equal(byMsg('upstream').err.statusCode, 502);
  assert.match(String(byMsg('redis').err.message), /OOM/);
});

test('the log scan finds a secret in a serialized Buffer, behind base64, percent-encoding and hex, and in keys', () => {
  const secret = 'portcullis-session-cookie-value-0123';
  const secrets = new Map([['secret', secret]]);
  const lines = [
    JSON.stringify({ err: { rawPacket: Buffer.from(`GET / HTTP/1.1\r\nCookie: s=${secret}\r\n\r\n`) } }),
    JSON.stringify({ bytes: [...Buffer.from(`x${secret}`)] }),
    JSON.stringify({ h: `Basic ${Buffer.from(`id:${secret}`).toString('base64')}` }),
    JSON.stringify({ q: `/cb?c=${encodeURIComponent(`"${secret}"`)}` }),
    JSON.stringify({ q: `/cb?c=${encodeURIComponent(Buffer.from(`{"v":"${secret}"}`).toString('base64url'))}` }),
    JSON.stringify({ hex: Buffer.from(`--${secret}--`).toString('hex') }),
    JSON.stringify({ [`k${secret}`]: 1 }),
  ];
  for (const line of lines) assert.equal(findSecretsInLogs([line], secrets).length, 1, line.slice(0, 120));
  assert.deepEqual(findSecretsInLogs([JSON.stringify({ err: { rawPacket: '[redacted]' }, msg: 'client error' })], secrets), []);
});

/** Fails listing every secret found in any log line, in any field, in any decoded form. */
function assertNoSecrets(logs: readonly string[], secrets: ReadonlyMap<string, string>): void {
  const leaks = findSecretsInLogs(logs, secrets).map((l) => `${l.what} at ${l.where} in: ${l.line}`);
  assert.deepEqual(leaks, [], `secrets in ${leaks.length} place(s)`);
}
