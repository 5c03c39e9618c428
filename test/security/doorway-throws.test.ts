// No exception inside request handling may end the process: each doorway (plain request, with the
// throw synchronous and asynchronous; WebSocket upgrade; forward-auth) is made to throw on purpose,
// must answer that one request with a 500 naming its request id, log it at error level with that
// id, and keep serving the next request. (Before the one door, a throw on the hot path ran inside
// node:http's request listener and ended the process for every user.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { rawRequest, rawSocket, statusOf, ALICE } from './support.js';

test('a throw in any doorway answers that request with a 500 and a request id; the process keeps serving', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.trustProxy = ['127.0.0.1']; } });
  const rt = s.server.runtime;
  const cookie = (await loginViaHttp(`${s.url}/`, ALICE)).jar.header(s.url);
  const port = Number(new URL(s.url).port);
  const realPlan = rt.upstreamRules.plan.bind(rt.upstreamRules);
  const realLookup = rt.sessions.lookup.bind(rt.sessions);
  const realRecord = rt.audit.record.bind(rt.audit);

  const expect500 = (label: string, status: number, body: string) => {
    assert.equal(status, 500, `${label}: ${body.slice(0, 200)}`);
    const id = /"requestId":"([^"]+)"/.exec(body)?.[1];
    assert.ok(id, `${label}: the answer names its request id`);
    const logged = s.logs.map((l) => JSON.parse(l) as { level: number; reqId?: string }).find((l) => l.level === 50 && l.reqId === id);
    assert.ok(logged, `${label}: an error-level log line carries request id ${id}`);
  };
  const stillServing = async (label: string) => {
    const ok = await rawRequest(s.url, { path: '/app/after', headers: { cookie, accept: 'application/json' } });
    assert.equal(ok.status, 200, `${label}: the next request is served`);
  };

  // 1. Plain request, synchronous throw while building the upstream request (cached session).
  await rawRequest(s.url, { path: '/app/warm', headers: { cookie } });
  rt.upstreamRules.plan = () => { throw new TypeError('planted: plan'); };
  const sync = await rawRequest(s.url, { path: '/app/x', headers: { cookie, accept: 'application/json' } });
  rt.upstreamRules.plan = realPlan;
  expect500('plain request, sync', sync.status, sync.body);
  await stillServing('plain request, sync');

  // 2. Plain request, asynchronous throw (the session step rejects with a foreign error).
  const realPeek = rt.sessions.peek.bind(rt.sessions);
  rt.sessions.peek = () => undefined; // as for a session not (or no longer) in the cache
  rt.sessions.lookup = async () => { throw new RangeError('planted: lookup'); };
  const async_ = await rawRequest(s.url, { path: '/app/y', headers: { cookie, accept: 'application/json' } });
  rt.sessions.lookup = realLookup;
  rt.sessions.peek = realPeek;
  expect500('plain request, async', async_.status, async_.body);
  await stillServing('plain request, async');

  // 3. WebSocket upgrade.
  rt.upstreamRules.plan = () => { throw new TypeError('planted: upgrade plan'); };
  const ws = await rawSocket(port, `GET /app/ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAccept: application/json\r\nCookie: ${cookie}\r\n\r\n`, 3000);
  rt.upstreamRules.plan = realPlan;
  expect500('upgrade', statusOf(ws), ws.slice(ws.indexOf('\r\n\r\n') + 4));
  await stillServing('upgrade');

  // 4. Forward-auth.
  rt.audit.record = () => { throw new Error('planted: audit'); };
  const fa = await rawRequest(s.url, { path: '/oauth2/auth', headers: { cookie, accept: 'application/json', 'x-forwarded-method': 'GET', 'x-forwarded-host': '127.0.0.1', 'x-forwarded-uri': '/app/z' } });
  rt.audit.record = realRecord;
  expect500('forward-auth', fa.status, fa.body);
  await stillServing('forward-auth');

  // 5. A browser gets the error page, with the id, not a stack trace.
  rt.upstreamRules.plan = () => { throw new Error('planted: secret detail'); };
  const page = await rawRequest(s.url, { path: '/app/page', headers: { cookie, accept: 'text/html' } });
  rt.upstreamRules.plan = realPlan;
  assert.equal(page.status, 500);
  assert.match(page.body, /request id <code>[^<]+<\/code>/);
  assert.doesNotMatch(page.body, /planted|secret detail|at .*\.ts/, 'no internal detail shown');
});
