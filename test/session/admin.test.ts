// Operators list and end a user's sessions on the metrics/admin listener (never the public port),
// with a bearer token from admin.tokenFile: Redis store (entries deleted, WebSocket cut) and cookie
// store (list 501, revoke by sub through the revocation list).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { startStack, type Stack } from '../helpers/stack.js';
import { startRedis } from '../helpers/redis.js';
import { loginViaHttp, CookieJar } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';
import { adminRequest } from '../helpers/admin.js';

const ALICE = { user: 'alice', password: 'alice-password' };
export const ADMIN_TOKEN = 'admin-token-0123456789-abcdefghij';

export function tokenFile(token = ADMIN_TOKEN): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-admin-'));
  const file = join(dir, 'token');
  writeFileSync(file, `${token}\n`);
  return file;
}

async function status(url: string, jar: CookieJar): Promise<number> {
  const r = await request(url, { headers: { cookie: jar.header(url), accept: 'application/json' } });
  await r.body.dump();
  return r.statusCode;
}

async function admin(s: Stack, method: 'GET' | 'POST', path: string, body?: unknown, token: string | null = ADMIN_TOKEN) {
  return adminRequest(s.server.metricsUrl!, token, method, path, body);
}


test('admin, Redis store: two sessions of alice listed (no tokens); revoke by sub refuses both, deletes them from Redis, cuts her WebSocket, audit-logged', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const file = tokenFile();
  const s = await startStack(t, { edit: (raw) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); raw.admin = { tokenFile: file }; } });
  await until('redis ready', 5000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  const one = await loginViaHttp(`${s.url}/`, ALICE);
  const two = await loginViaHttp(`${s.url}/`, { ...ALICE, jar: new CookieJar() });
  const bob = await loginViaHttp(`${s.url}/`, { user: 'bob', password: 'bob-password', jar: new CookieJar() });
  assert.equal(bob.status, 200);
  for (const j of [one.jar, two.jar]) assert.equal(await status(`${s.url}/x`, j), 200);

  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: one.jar.header(s.url) } });
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject); });
  const closed = new Promise((resolve) => ws.once('close', resolve));

  const list = await admin(s, 'GET', '/admin/sessions?sub=alice');
  assert.equal(list.status, 200, list.text);
  assert.equal(list.headers['cache-control'], 'no-store');
  assert.equal(list.json.sessions.length, 2);
  for (const x of list.json.sessions) {
    assert.equal(x.sub, 'alice');
    assert.match(x.id, /^[0-9a-f]{64}$/);
    for (const k of ['createdAt', 'lastSeenAt', 'idleExpiresAt', 'absoluteExpiresAt']) assert.ok(!Number.isNaN(Date.parse(x[k])), k);
    assert.ok(Date.parse(x.absoluteExpiresAt) > Date.parse(x.createdAt));
  }
  assert.doesNotMatch(list.text, /eyJ|token/i, 'never a token');
  assert.equal((await admin(s, 'GET', '/admin/sessions?sub=nobody')).json.sessions.length, 0);

  const revoke = await admin(s, 'POST', '/admin/sessions/revoke', { sub: 'alice' });
  assert.equal(revoke.status, 200, revoke.text);
  assert.equal(revoke.json.sessions, 2);
  await closed;
  for (const j of [one.jar, two.jar]) assert.equal(await status(`${s.url}/x`, j), 401);
  assert.equal(await status(`${s.url}/x`, bob.jar), 200, "bob's session is untouched");

  const raw = new Redis(redis.url);
  t.after(() => raw.disconnect());
  const bodies = (await raw.keys('portcullis:*')).filter((k) => /^portcullis:[0-9a-f]{64}$/.test(k));
  assert.equal(bodies.length, 1, "only bob's session is left in Redis");
  assert.equal(await raw.exists('portcullis:idx:sub:alice'), 0);
  assert.equal((await admin(s, 'GET', '/admin/sessions?sub=alice')).json.sessions.length, 0);

  const audit = s.logs.map((l) => JSON.parse(l)).find((l) => l.audit === true && l.action === 'revoke');
  assert.ok(audit, 'the revocation is audit-logged');
  assert.equal(audit.by, 'admin');
  assert.equal(audit.sub, 'alice');
  assert.equal(audit.sessions, 2);

  // Signing in again afterwards works.
  const again = await loginViaHttp(`${s.url}/`, { ...ALICE, jar: new CookieJar() });
  assert.equal(again.status, 200);
  assert.equal((await admin(s, 'GET', '/admin/sessions?sub=alice')).json.sessions.length, 1);
});

test('admin: wrong or missing token → 401; bad requests → 400; never on the public port', async (t) => {
  const file = tokenFile();
  const s = await startStack(t, { edit: (raw) => { raw.admin = { tokenFile: file }; } });
  for (const token of [null, 'wrong', `${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1), '']) {
    const l = await admin(s, 'GET', '/admin/sessions?sub=alice', undefined, token);
    assert.equal(l.status, 401, `list with ${JSON.stringify(token)}`);
    assert.match(String(l.headers['www-authenticate']), /^Bearer/);
    const r = await admin(s, 'POST', '/admin/sessions/revoke', { sub: 'alice' }, token);
    assert.equal(r.status, 401, `revoke with ${JSON.stringify(token)}`);
  }
  assert.ok(!s.logs.some((l) => l.includes(ADMIN_TOKEN)), 'the token is never logged');
  assert.equal((await admin(s, 'GET', '/admin/sessions')).status, 400);
  assert.equal((await admin(s, 'POST', '/admin/sessions/revoke', { sub: 'a', sid: 'b' })).status, 400);
  assert.equal((await admin(s, 'POST', '/admin/sessions/revoke', {})).status, 400);

  // The public port has no admin endpoints: /admin/sessions there is an ordinary (protected) route.
  const pub = await request(`${s.url}/admin/sessions?sub=alice`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, accept: 'application/json' } });
  const text = await pub.body.text();
  assert.equal(pub.statusCode, 401);
  assert.doesNotMatch(text, /"sessions"/);
  const pubRevoke = await request(`${s.url}/admin/sessions/revoke`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json' }, body: '{"sub":"alice"}' });
  await pubRevoke.body.dump();
  assert.notEqual(pubRevoke.statusCode, 200);
  assert.ok(!s.logs.some((l) => l.includes('"action":"revoke"')));
});

test('admin: without admin.tokenFile the endpoints answer 404', async (t) => {
  const s = await startStack(t);
  assert.equal((await admin(s, 'GET', '/admin/sessions?sub=alice')).status, 404);
  assert.equal((await admin(s, 'POST', '/admin/sessions/revoke', { sub: 'alice' })).status, 404);
});

test('admin, cookie store: list answers 501; revoke by sub refuses her sessions (revocation list) and a new sign-in works', async (t) => {
  const file = tokenFile();
  const s = await startStack(t, { edit: (raw) => { raw.admin = { tokenFile: file }; } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: jar.header(s.url) } });
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject); });
  const closed = new Promise((resolve) => ws.once('close', resolve));
  const list = await admin(s, 'GET', '/admin/sessions?sub=alice');
  assert.equal(list.status, 501);
  assert.equal(list.json.error, 'ERR_ADMIN_LIST_UNSUPPORTED');
  const r = await admin(s, 'POST', '/admin/sessions/revoke', { sub: 'alice' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.store, 'cookie');
  assert.match(r.json.note, /absolute timeout/);
  await closed;
  assert.equal(await status(`${s.url}/x`, jar), 401, 'the cookie still exists but its session is revoked');
  const again = await loginViaHttp(`${s.url}/`, { ...ALICE, jar: new CookieJar() });
  assert.equal(again.status, 200);
  assert.ok(s.logs.some((l) => l.includes('"audit":true') && l.includes('"action":"revoke"') && l.includes('"by":"admin"')));
});

test('config: admin.tokenFile is read at start (first line); a short token, an unreadable file or metrics: false are refused', async () => {
  const { validateConfigObject } = await import('../../src/config/index.js');
  const base = { publicUrl: 'https://apps.example.com', oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' }, session: { secrets: ['s'.repeat(40)] }, routes: [{ name: 'app', match: { path: '/' }, upstream: 'http://127.0.0.1:3000' }] };
  const ok = validateConfigObject({ ...base, admin: { tokenFile: tokenFile() } }, {});
  assert.ok(ok.ok);
  assert.equal(ok.ok && ok.config.admin.token, ADMIN_TOKEN);
  const none = validateConfigObject(base, {});
  assert.ok(none.ok && none.config.admin.token === undefined);
  const issues = (raw: object) => { const r = validateConfigObject(raw, {}); return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`); };
  assert.match(issues({ ...base, admin: { tokenFile: tokenFile('short') } }).join('\n'), /admin\.tokenFile: .*at least 16/);
  assert.match(issues({ ...base, admin: { tokenFile: '/nonexistent/token' } }).join('\n'), /admin\.tokenFile: cannot read/);
  assert.match(issues({ ...base, metrics: false, admin: { tokenFile: tokenFile() } }).join('\n'), /admin\.tokenFile: .*metrics: false/);
  assert.match(issues({ ...base, admin: { token: 'x' } }).join('\n'), /admin\.token/);
});
