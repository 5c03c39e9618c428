// `portcullis sessions list|revoke` end to end: the real command (a child process) against a
// running stack's admin listener, Redis store; flags, config defaults, --json and exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { entryArgs } from '../helpers/entry.js';
import { startStack } from '../helpers/stack.js';
import { startRedis } from '../helpers/redis.js';
import { loginViaHttp, CookieJar } from '../helpers/browserless-login.js';

const ADMIN_TOKEN = 'cli-admin-token-0123456789-abcdefghij';

function tokenFile(token = ADMIN_TOKEN): string {
  const file = join(mkdtempSync(join(tmpdir(), 'portcullis-admin-')), 'token');
  writeFileSync(file, `${token}\n`);
  return file;
}

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...entryArgs('src/main.ts'), 'sessions', ...args], { env: { ...process.env, PORTCULLIS_CONFIG: '' }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out: stdout, err: stderr });
    });
  });
}

async function status(url: string, jar: CookieJar): Promise<number> {
  const r = await request(url, { headers: { cookie: jar.header(url), accept: 'application/json' } });
  await r.body.dump();
  return r.statusCode;
}

test('cli: sessions list / revoke against a running Portcullis (Redis store): human output, --json, config defaults, exit codes', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const file = tokenFile();
  const s = await startStack(t, { edit: (raw) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); raw.admin = { tokenFile: file }; } });
  const one = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  const two = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password', jar: new CookieJar() });
  const admin = s.server.metricsUrl!;
  const flags = ['--url', admin, '--token-file', file];

  const list = await cli(['list', '--sub', 'alice', ...flags]);
  assert.equal(list.code, 0, list.err);
  assert.match(list.out, /^alice: 2 sessions\n/);
  assert.equal(list.out.match(/created \S+ {2}last seen \S+ {2}idle expiry \S+ {2}absolute expiry \S+/g)?.length, 2);

  // The listener and token file from a config file (read leniently: no secrets needed).
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-sessions-'));
  const config = join(dir, 'portcullis.yaml');
  writeFileSync(config, `metrics: { host: 0.0.0.0, port: ${new URL(admin).port} }\nadmin: { tokenFile: ${file} }\noidc: { clientSecret: \${NOT_SET_HERE} }\n`);
  const json = await cli(['list', '--sub', 'alice', '--config', config, '--json']);
  assert.equal(json.code, 0, json.err);
  const parsed = JSON.parse(json.out);
  assert.equal(parsed.sessions.length, 2);
  assert.doesNotMatch(json.out, /eyJ/, 'never a token');

  // Three refusals that change nothing, run side by side (each CLI run is a process start).
  const [wrong, usage, unreachable, unknownProvider, namedProvider] = await Promise.all([
    cli(['list', '--sub', 'alice', '--url', admin, '--token-file', tokenFile('not-the-admin-token-at-all')]),
    cli(['revoke', '--sub', 'alice', '--sid', 'x', ...flags]),
    cli(['list', '--sub', 'alice', '--url', 'http://127.0.0.1:9', '--token-file', file]),
    // --provider names whose "alice" (docs/providers.md): an id the config lacks is refused by the endpoint.
    cli(['revoke', '--sub', 'alice', '--provider', 'partners', ...flags]),
    cli(['list', '--sub', 'alice', '--provider', 'default', ...flags]),
  ]);
  assert.equal(unknownProvider.code, 1);
  assert.match(unknownProvider.err, /400 .*provider: one of default/);
  assert.equal(namedProvider.code, 0, namedProvider.err);
  assert.match(namedProvider.out, /^alice: 2 sessions\n/);
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /401/);
  assert.equal(usage.code, 1);
  assert.match(usage.err, /exactly one of --sub or --sid/);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.err, /cannot reach the admin endpoint/);

  const revoke = await cli(['revoke', '--sub', 'alice', ...flags]);
  assert.equal(revoke.code, 0, revoke.err);
  assert.match(revoke.out, /revoked: sessions of subject alice \(2 sessions deleted from Redis\)/);
  for (const j of [one.jar, two.jar]) assert.equal(await status(`${s.url}/x`, j), 401);
  const after = await cli(['list', '--sub', 'alice', ...flags, '--json']);
  assert.equal(after.code, 0);
  assert.deepEqual(JSON.parse(after.out).sessions, []);
  assert.ok(s.logs.some((l) => l.includes('"audit":true') && l.includes('"by":"admin"')));
  assert.ok(!s.logs.some((l) => l.includes(ADMIN_TOKEN)));
});

test('cli: sessions list with the cookie store exits 1 with the reason; revoke --sub exits 0', async (t) => {
  const file = tokenFile();
  const s = await startStack(t, { edit: (raw) => { raw.admin = { tokenFile: file }; } });
  const flags = ['--url', s.server.metricsUrl!, '--token-file', file];
  const list = await cli(['list', '--sub', 'alice', ...flags]);
  assert.equal(list.code, 1);
  assert.match(list.err, /501 Sessions live in browsers' cookies: list is not possible/);
  const revoke = await cli(['revoke', '--sub', 'alice', ...flags]);
  assert.equal(revoke.code, 0, revoke.err);
  assert.match(revoke.out, /revoked: sessions of subject alice\n.*absolute timeout/);
  const json = await cli(['revoke', '--sid', 'some-idp-sid', ...flags, '--json']);
  assert.equal(json.code, 0);
  assert.equal(JSON.parse(json.out).sid, 'some-idp-sid');
});
