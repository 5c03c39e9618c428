// One audit line per authorization decision: route, user, decision, stable reason id, client IP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';

const audits = (logs: string[]) => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true);

async function hit(url: string, cookie?: string) {
  const r = await request(url, { headers: { accept: 'application/json', ...(cookie ? { cookie } : {}) } });
  await r.body.dump();
  return r.statusCode;
}

test('every decision is audited with route, user, decision, reason and client IP', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.logLevel = 'info'; } });
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'bob', password: 'bob-password' });
  const before = audits(s.logs).length;
  assert.equal(await hit(`${s.url}/app`, jar.header(s.url)), 200);
  assert.equal(await hit(`${s.url}/admin`, jar.header(s.url)), 403);
  assert.equal(await hit(`${s.url}/app`), 401);
  const lines = audits(s.logs).slice(before);
  assert.equal(lines.length, 3, JSON.stringify(lines));
  const [allow, deny, anon] = lines as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  assert.deepEqual([allow.route, allow.decision, allow.reason, allow.sub, allow.email], ['app', 'allow', 'any-authenticated-user', 'bob', 'bob@example.com']);
  assert.deepEqual([deny.route, deny.decision, deny.reason, deny.sub], ['admin', 'deny', 'claim-unauthorized', 'bob']);
  assert.deepEqual([anon.route, anon.decision, anon.reason, anon.sub], ['app', 'unauthenticated', 'user-unauthenticated', undefined]);
  for (const l of lines) assert.equal(l.ip, '127.0.0.1');
  assert.ok(lines.every((l) => typeof l.reqId === 'string'), 'request id on every audit line');
});

test('auditLog: denials keeps only denials', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.logLevel = 'info'; raw.auditLog = 'denials'; } });
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'bob', password: 'bob-password' });
  const before = audits(s.logs).length;
  await hit(`${s.url}/app`, jar.header(s.url));
  await hit(`${s.url}/admin`, jar.header(s.url));
  assert.deepEqual(audits(s.logs).slice(before).map((l) => l.decision), ['deny']);
});

test('forward-auth decisions are audited too', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.logLevel = 'info'; raw.trustProxy = ['127.0.0.1']; } });
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'bob', password: 'bob-password' });
  const before = audits(s.logs).length;
  const r = await request(`${s.url}/oauth2/auth`, { headers: { cookie: jar.header(s.url), 'x-forwarded-uri': '/admin', 'x-forwarded-host': '127.0.0.1' } });
  await r.body.dump();
  assert.equal(r.statusCode, 403);
  const lines = audits(s.logs).slice(before);
  assert.deepEqual(lines.map((l) => [l.route, l.decision, l.reason, l.sub]), [['admin', 'deny', 'claim-unauthorized', 'bob']]);
});
