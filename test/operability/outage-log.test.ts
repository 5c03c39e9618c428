// A dependency outage is logged as an outage, not one error line per request: while Redis is down
// every request that needs the session store is answered 503, and in a chaos soak that wrote 1,380
// error lines in 15 s. Now: one error line when it starts, a warn line with the count every 30 s
// while it lasts, an info line with the total once none has come for 5 s; each request at debug.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { OutageLog } from '../../src/logging.js';
import { startStack } from '../helpers/stack.js';
import { startRedis } from '../helpers/redis.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';
import { SESSION_CACHE_WINDOW_MS } from '../../src/session/sessions.js';

type Line = { level: string; o: Record<string, unknown>; msg: string };

function recorder() {
  const lines: Line[] = [];
  const at = (level: string) => (o: object, msg: string) => { lines.push({ level, o: o as Record<string, unknown>, msg }); };
  return { lines, log: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') } };
}

test('OutageLog: one error line to start, one warn per interval with the count, one info line at the end; per code', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const { lines, log } = recorder();
  const outages = new OutageLog(log, { everyMs: 30_000, quietMs: 5_000 });
  const fail = (code = 'ERR_SESSION_STORE_UNAVAILABLE', n = 1) => { for (let i = 0; i < n; i++) outages.failed(code, 'store down', { reqId: `r${i}`, route: 'app', err: new Error('ECONNREFUSED') }); };

  fail(undefined, 100);
  assert.deepEqual(lines.map((l) => l.level).filter((l) => l !== 'debug'), ['error'], 'one error line for 100 failures');
  assert.equal(lines[0]!.o.reqId, 'r0', 'the first request id and cause are on the start line');
  assert.equal(lines.filter((l) => l.level === 'debug').length, 99, 'every other request at debug, with its id');

  for (let s = 0; s < 31; s++) { t.mock.timers.tick(1_000); fail(undefined, 10); }
  const warns = lines.filter((l) => l.level === 'warn');
  assert.equal(warns.length, 1, 'one warn line in 31 s');
  assert.equal(warns[0]!.o.outage, 'ongoing');
  assert.equal(warns[0]!.o.requests, 99 + 29 * 10 + 1, 'the requests since the start line, up to the one 30 s later that reports');

  fail('ERR_IDP_UNAVAILABLE');
  assert.equal(lines.filter((l) => l.level === 'error').length, 2, 'another code is another outage');

  t.mock.timers.tick(4_000);
  assert.equal(lines.filter((l) => l.level === 'info').length, 0, 'not over while failures are recent');
  t.mock.timers.tick(2_000);
  const ended = lines.filter((l) => l.level === 'info');
  assert.equal(ended.length, 2, 'both outages end once quiet for 5 s');
  const store = ended.find((l) => l.o.code === 'ERR_SESSION_STORE_UNAVAILABLE')!;
  assert.equal(store.o.total, 410);
  assert.equal(store.o.outage, 'ended');

  fail();
  assert.equal(lines.filter((l) => l.level === 'error').length, 3, 'a new outage after the end starts with an error line again');
  outages.close();
});

test('Redis down: 40 requests answered 503 write one error line, not 40', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  let offset = 0;
  const s = await startStack(t, { now: () => Date.now() + offset, edit: (raw) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); } });
  await until('redis ready', 5000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  await redis.stop();
  await until('readyz 503', 5000, async () => (await request(`${s.url}/readyz`)).statusCode === 503);
  offset += SESSION_CACHE_WINDOW_MS + 1; // past the in-memory cache: every request needs the store
  s.logs.splice(0);
  for (let i = 0; i < 40; i++) {
    const r = await request(`${s.url}/x/${i}`, { headers: { accept: 'application/json', cookie: jar.header(s.url) } });
    await r.body.dump();
    assert.equal(r.statusCode, 503);
  }
  const parsed = s.logs.map((l) => JSON.parse(l) as { level: number; code?: string; reqId?: string });
  const about = parsed.filter((l) => l.code === 'ERR_SESSION_STORE_UNAVAILABLE');
  assert.equal(about.filter((l) => l.level >= 50).length, 1, 'one error-level line for the outage');
  assert.equal(about.filter((l) => l.level === 20).length, 39, 'the other requests at debug, each with its request id');
  assert.ok(about.every((l) => typeof l.reqId === 'string' && l.reqId.length > 0));
});
