// Hot reload: SIGHUP (or server.reload()) re-reads the config, validates it and swaps routes, rules
// and identity headers at once; an invalid config changes nothing and is logged with every problem;
// settings that need a restart are named, not applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { validateConfigObject } from '../../src/config/index.js';
import { compileRouteTable, tableOf } from '../../src/door/route-table.js';
import type { HeaderBag } from '../../src/identity/headers.js';
import { configFile, get, processConfig, spawnPortcullis, waitFor } from './support.js';

const BOB = { user: 'bob', password: 'bob-password' };

async function api(url: string, jar: CookieJar) {
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, body: await r.body.text() };
}

type Raw = Record<string, unknown> & { routes: Array<Record<string, unknown>> };

test('reload(): a new route appears and a rule tightens; an invalid config keeps the old one; restart-only keys are named', async (t) => {
  let raw!: Raw;
  const s = await startStack(t, {
    routes: [{ name: 'app', match: { path: '/app' }, upstream: '{upstream}' }],
    edit: (r) => { raw = structuredClone(r) as Raw; },
  });
  const { jar } = await loginViaHttp(`${s.url}/app/`, BOB);
  assert.equal((await api(`${s.url}/app/x`, jar)).status, 200, 'bob may use app');
  assert.equal((await api(`${s.url}/reports/x`, jar)).status, 404, 'no reports route yet');

  // Valid: a new route, and app only for group admin (bob has none).
  const next: Raw = structuredClone(raw);
  next.routes = [
    { ...raw.routes[0], allow: { claim: 'groups', contains: 'admin' }, headers: { 'X-Who': '{email}' } },
    { name: 'reports', match: { path: '/reports' }, upstream: raw.routes[0]!.upstream },
  ];
  const ok = s.server.reload(validateConfigObject(next, {}));
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.ok(ok.ok && ok.added.includes('reports') && ok.needsRestart.length === 0, JSON.stringify(ok));
  assert.equal((await api(`${s.url}/app/x`, jar)).status, 403, 'the tightened rule applies at once');
  assert.equal((await api(`${s.url}/reports/x`, jar)).status, 200, 'the new route serves');
  assert.ok(s.logs.some((l) => l.includes('config reloaded')), 'reload logged');

  // Invalid: two problems; both are logged with their key paths, nothing changes.
  const bad: Raw = structuredClone(next);
  bad.routes = [
    { ...next.routes[0], allow: { claim: 'groups', containz: 'admin' } },
    { ...next.routes[1], upstream: 'not a url' },
    { name: 'extra', match: { path: '/extra' }, upstream: raw.routes[0]!.upstream },
  ];
  const refused = s.server.reload(validateConfigObject(bad, {}));
  assert.equal(refused.ok, false);
  const line = s.logs.find((l) => l.includes('config reload refused'));
  assert.ok(line, 'refusal logged');
  assert.match(line, /routes\[0\]\.allow/);
  assert.match(line, /routes\[1\]\.upstream/);
  assert.equal((await api(`${s.url}/app/x`, jar)).status, 403, 'old rules keep serving');
  assert.equal((await api(`${s.url}/reports/x`, jar)).status, 200);
  assert.equal((await api(`${s.url}/extra/x`, jar)).status, 404, 'nothing of the invalid config applied');

  // Restart-only settings: routes apply, the rest is named (never with its value).
  const moved: Raw = structuredClone(next);
  moved.listen = { host: '127.0.0.1', port: 1 };
  (moved.oidc as Record<string, unknown>).clientSecret = 'a-new-client-secret-value';
  (moved.session as Record<string, unknown>).idleTimeout = '1h';
  moved.workers = 4;
  moved.shutdownGracePeriod = '3s';
  moved.routes = [...next.routes, { name: 'extra', match: { path: '/extra' }, upstream: raw.routes[0]!.upstream }];
  const partly = s.server.reload(validateConfigObject(moved, {}));
  assert.ok(partly.ok);
  assert.deepEqual([...partly.needsRestart].sort(), ['listen.port', 'oidc.clientSecret', 'session.idleTimeout', 'workers']);
  assert.equal(s.server.config.shutdownGracePeriodMs, 3000, 'the grace period is applied');
  assert.equal((await api(`${s.url}/extra/x`, jar)).status, 200, 'routes applied');
  const warn = s.logs.find((l) => l.includes('only after a restart'));
  assert.ok(warn && warn.includes('oidc.clientSecret') && warn.includes('listen.port'), warn);
  assert.ok(!s.logs.some((l) => l.includes('a-new-client-secret-value')), 'no secret value in the logs');
});

test('a request keeps the route table it was matched against while a reload swaps it', async (t) => {
  const s = await startStack(t, {
    routes: [{ name: 'app', match: { path: '/' }, upstream: '{upstream}', headers: { 'X-Team': 'old:{email}' } }],
  });
  const rt = s.server.runtime;
  const before = rt.table.routes[0]!;
  const next = validateConfigObject({
    listen: { host: '127.0.0.1', port: 1 }, publicUrl: s.url, metrics: false,
    oidc: { issuer: s.idp.issuer, clientId: 'x', clientSecret: 'y' }, session: { secrets: ['s'.repeat(32)] },
    routes: [{ name: 'app', match: { path: '/' }, upstream: 'http://127.0.0.1:1', headers: { 'X-Other': 'new:{email}' } }],
  }, {});
  assert.ok(next.ok);
  rt.replaceRoutes(next.config.routes);
  assert.notEqual(rt.table.routes[0], before, 'swapped');
  // The in-flight request holds `before`: its identity headers come from the table it matched in.
  const upstreamHeaders = (route: typeof before, sent: HeaderBag): HeaderBag => rt.upstreamRules.plan({
    inbound: { id: 'req-1', method: 'GET', path: '/', query: '', host: 'app.example', proto: 'https', port: '443', peer: '127.0.0.1', clientIp: '127.0.0.1', trusted: false, headers: sent as Record<string, string>, cookies: {} },
    route, identity: tableOf(route, rt.table).headers, who: { claims: { sub: 'alice', email: 'a@example.com' } },
  }).headers;
  const h = upstreamHeaders(before, { 'x-team': 'forged', 'x-other': 'kept?' });
  assert.equal(h['x-team'], 'old:a@example.com');
  assert.equal(h['x-other'], 'kept?', 'a header only the new table knows is not the old request’s business');
  // A new request gets the new table.
  const h2 = upstreamHeaders(rt.table.routes[0]!, { 'x-team': 'forged' });
  assert.equal(h2['x-other'], 'new:a@example.com');
  assert.equal(h2['x-team'], 'forged', 'names from the old table are no longer ours after the swap');
  assert.ok(compileRouteTable(next.config.routes).routes.length === 1);
});

test('SIGHUP on a running process: a valid change applies, an invalid file is refused and the old routes keep serving', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const idp = await startTestIdp(t, { redirectUris: [`http://127.0.0.1:${port}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  const routes = [{ name: 'public', match: { path: '/public' }, upstream: upstream.url, auth: 'public' }];
  const raw = processConfig({ port, metricsPort, issuer: idp.issuer, routes });
  const file = configFile(t, raw);
  const p = spawnPortcullis(t, file.path);
  await p.waitForLog((l) => l.msg === 'portcullis listening');
  const base = `http://127.0.0.1:${port}`;
  assert.equal((await get(`${base}/public/x`)).status, 200);
  assert.equal((await get(`${base}/extra/x`)).status, 404);

  file.write({ ...raw, routes: [...routes, { name: 'extra', match: { path: '/extra' }, upstream: upstream.url, auth: 'public' }] });
  p.signal('SIGHUP');
  await p.waitForLog((l) => l.msg === 'config reloaded: routes, rules and identity headers swapped');
  assert.equal((await get(`${base}/extra/x`)).status, 200, 'the new route serves after SIGHUP');

  file.writeText('routes:\n  - name: broken\n    upstrem: http://127.0.0.1:1\nlisten: [not, a, mapping]\n');
  p.signal('SIGHUP');
  const refused = await p.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload refused'));
  const paths = (refused.issues as Array<{ path: string }>).map((i) => i.path);
  assert.ok(paths.includes('routes[0].upstrem'), JSON.stringify(paths));
  assert.ok(paths.includes('listen'), JSON.stringify(paths));
  assert.ok(paths.includes('oidc'), 'every problem, not only the first');
  assert.equal((await get(`${base}/extra/x`)).status, 200, 'the running config keeps serving');
  assert.equal((await get(`${base}/public/x`)).status, 200);
  assert.equal((await get(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200, 'still alive');

  p.signal('SIGTERM');
  const { code } = await waitFor(() => p.exited, 10_000, 'exit');
  assert.equal(code, 0);
});
