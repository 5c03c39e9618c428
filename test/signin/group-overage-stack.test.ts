// Entra ID group overage end to end over HTTP: the dev IdP issues ID tokens with
// `_claim_names`/`_claim_sources` instead of `groups` (as Entra does past 200 groups), Portcullis
// fetches them from a loopback Graph-shaped server with the user's access token (the server checks
// it is one the IdP issued), and rules, identity headers and /oauth2/userinfo see them. A refresh
// fetches them again; every failure signs the user in without groups and the 403 says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { startTestGraph, type TestGraph } from '../helpers/graph.js';
import { entraGroupIds } from '../session/ad-groups.js';
import { startRedis } from '../helpers/redis.js';
import { startRogueStack } from '../helpers/rogue-stack.js';
import { processClock } from '../helpers/clock.js';
import { followRedirects } from '../helpers/browserless-login.js';
import type { DevUser } from '../../dev/devidp/provider.js';

const FINANCE = '22222222-2222-2222-2222-222222222222';
const DORA = { user: 'dora', password: 'dora-password' };

const ROUTES = [
  { name: 'finance', match: { path: '/finance' }, upstream: '{upstream}', allow: { claim: 'groups', contains: FINANCE } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
];

/** Dora, in too many groups for a token: her ID token points at the legacy AAD Graph instead. */
function users(): Record<string, DevUser> {
  return {
    dora: {
      password: DORA.password,
      claims: {
        email: 'dora@example.com', email_verified: true, preferred_username: 'dora',
        _claim_names: { groups: 'src1' },
        _claim_sources: { src1: { endpoint: 'https://graph.windows.net/00000000-0000-0000-0000-000000000000/users/dora/getMemberObjects' } },
      },
    },
    alice: { password: 'alice-password', claims: { email: 'alice@example.com', preferred_username: 'alice', groups: [FINANCE] } },
  };
}

async function get(s: Stack, path: string, jar: CookieJar, accept = 'application/json') {
  const url = `${s.url}${path}`;
  const r = await request(url, { headers: { accept, cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, body: await r.body.text() };
}

async function overageStack(t: Parameters<typeof startStack>[0], o: { groups?: string[]; now?: () => number; timeout?: string; redis?: string; trustProxy?: boolean } = {}): Promise<{ s: Stack; graph: TestGraph }> {
  const graph = await startTestGraph(t, { groups: { dora: o.groups ?? [...entraGroupIds(299), FINANCE] } });
  const s = await startStack(t, {
    routes: ROUTES,
    now: o.now,
    idp: { users: users() },
    edit: (raw) => {
      const oidc = raw.oidc as Record<string, unknown>;
      oidc.groupOverage = { graphUrl: graph.url };
      if (o.timeout) oidc.timeout = o.timeout;
      if (o.redis) Object.assign(raw.session as Record<string, unknown>, { store: 'redis', redis: { url: o.redis } });
      if (o.trustProxy) raw.trustProxy = ['127.0.0.1', '::1'];
    },
  });
  graph.idp = s.idp; // Graph accepts only access tokens this IdP issued and still holds active
  return { s, graph };
}

async function metric(s: Stack, result: string): Promise<number> {
  const text = await s.server.runtime.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`portcullis_group_overage_fetches_total{result="${result}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

test('a user in 300 groups (overage) signs in with the cookie store: the rule, X-Forwarded-Groups and userinfo see the groups from Graph', { timeout: 60_000 }, async (t) => {
  const groups = [...entraGroupIds(299), FINANCE];
  const { s, graph } = await overageStack(t, { groups });
  const { status, jar } = await loginViaHttp(`${s.url}/finance/report`, DORA);
  assert.equal(status, 200, 'the group rule lets her in');
  assert.equal(graph.requests.length, 1, 'one Graph call at sign-in');
  assert.equal(graph.requests[0]!.account, 'dora', 'with her own access token, as the IdP issued it');
  assert.equal((await get(s, '/finance/x', jar)).status, 200);
  const info = JSON.parse((await get(s, '/oauth2/userinfo', jar)).body) as { groups: string[] };
  assert.deepEqual(info.groups, groups);
  const sent = String(s.upstream.requests.at(-1)!.headers['x-forwarded-groups']);
  assert.ok(sent.startsWith(`${groups[0]},${groups[1]},`), 'X-Forwarded-Groups carries them (cut to identityHeaderBudget)');
  assert.equal(graph.requests.length, 1, 'cached with the session: no call per request');
  assert.equal(await metric(s, 'ok'), 1);
});

test('with the cookie store, past ~350 group ids (development IdP tokens) the session cannot fit: ERR_SESSION_TOO_LARGE; with Redis, 3,000 work', { timeout: 60_000 }, async (t) => {
  const { s } = await overageStack(t, { groups: [...entraGroupIds(999), FINANCE] });
  const tooBig = await loginViaHttp(`${s.url}/finance`, DORA);
  assert.equal(tooBig.status, 500);
  assert.match(tooBig.body, /ERR_SESSION_TOO_LARGE/);
  const redis = await startRedis(t);
  if (!redis) return;
  const groups = [...entraGroupIds(2999), FINANCE];
  const { s: r } = await overageStack(t, { groups, redis: redis.url });
  const { status, jar } = await loginViaHttp(`${r.url}/finance`, DORA);
  assert.equal(status, 200);
  assert.deepEqual((JSON.parse((await get(r, '/oauth2/userinfo', jar)).body) as { groups: string[] }).groups, groups);
});

test('a user without overage never causes a Graph call', { timeout: 60_000 }, async (t) => {
  const { s, graph } = await overageStack(t);
  const { status } = await loginViaHttp(`${s.url}/finance`, { user: 'alice', password: 'alice-password' });
  assert.equal(status, 200, 'her token\'s own groups claim');
  assert.equal(graph.requests.length, 0);
});

test('a refresh fetches the groups again with the new access token: removed from the group → 403; Graph down at refresh → no groups (not the old list); back → groups again', { timeout: 60_000 }, async (t) => {
  let offset = 0;
  const groups = [...entraGroupIds(20), FINANCE];
  const { s, graph } = await overageStack(t, { groups, now: () => Date.now() + offset });
  const { jar } = await loginViaHttp(`${s.url}/`, DORA);
  assert.equal((await get(s, '/finance', jar)).status, 200);
  const firstToken = graph.requests.length;

  graph.groups.set('dora', groups.filter((g) => g !== FINANCE));
  offset += 2 * 3600_000; // the 1 h tokens are due: this request refreshes
  assert.equal((await get(s, '/finance', jar)).status, 403, 'the new list no longer has the group');
  assert.equal(graph.requests.length, firstToken + 1, 'fetched again at the refresh');
  assert.equal(graph.requests.at(-1)!.account, 'dora');

  graph.groups.set('dora', groups);
  graph.mode = 500;
  offset += 2 * 3600_000;
  const denied = await get(s, '/finance', jar, 'text/html');
  assert.equal(denied.status, 403, 'Graph failed: no groups at all, not the previous list');
  assert.match(denied.body, /could not be fetched from Microsoft Graph/);
  assert.equal((await get(s, '/', jar)).status, 200, 'still signed in');
  assert.equal(JSON.parse((await get(s, '/oauth2/userinfo', jar)).body).groups, undefined);

  graph.mode = 'ok';
  offset += 2 * 3600_000;
  assert.equal((await get(s, '/finance', jar)).status, 200, 'the next refresh fetched them again');
  assert.equal(await metric(s, 'graph-error'), 1);
});

test('Graph failures at sign-in: signed in without groups, the group route is a 403 saying why (page and JSON), never a 500', { timeout: 90_000 }, async (t) => {
  const { s, graph } = await overageStack(t, { timeout: '1s' });
  const modes: Array<[TestGraph['mode'], RegExp]> = [
    [401, /refused the access token/],
    [403, /did not allow reading them/],
    [500, /answered with an error/],
    ['slow', /did not answer in time/],
    ['garbage', /could not be read/],
    ['huge', /more groups than this site accepts/],
    ['foreign-next', /pointed to another site/],
  ];
  for (const [mode, why] of modes) {
    graph.mode = mode;
    const { status, jar } = await loginViaHttp(`${s.url}/`, DORA);
    assert.equal(status, 200, `${String(mode)}: signed in`);
    const page = await get(s, '/finance', jar, 'text/html');
    assert.equal(page.status, 403, String(mode));
    assert.match(page.body, /id="groups-unavailable"/);
    assert.match(page.body, why, String(mode));
    const json = await get(s, '/finance', jar);
    assert.equal(json.status, 403);
    const body = JSON.parse(json.body) as { error: string; groupsUnavailable?: string };
    assert.equal(body.error, 'forbidden');
    assert.match(body.groupsUnavailable ?? '', why);
  }
  assert.ok(s.logs.some((l) => l.includes('group overage: signed in without groups') && l.includes('User.Read')), 'the operator is told what to do');
  assert.ok(s.logs.some((l) => l.includes('"audit":true') && l.includes('"decision":"deny"') && l.includes('"groupsUnavailable":"unauthorized"')), 'the audit line of the denial names the reason');
  assert.ok(!s.logs.some((l) => /"level":(50|60)/.test(l)), 'no error-level lines');
});

test('a session with its groups gets the usual 403 page, without the Graph sentence', { timeout: 60_000 }, async (t) => {
  const { s } = await overageStack(t, { groups: entraGroupIds(5) });
  const { jar } = await loginViaHttp(`${s.url}/`, DORA);
  const page = await get(s, '/finance', jar, 'text/html');
  assert.equal(page.status, 403);
  assert.doesNotMatch(page.body, /Microsoft Graph|groups-unavailable/);
  assert.equal(JSON.parse((await get(s, '/finance', jar)).body).groupsUnavailable, undefined);
});

test('oidc.groupOverage not configured: no Graph call, no groups, and the 403 says this site is not set up to fetch them', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t, { routes: ROUTES, idp: { users: users() } });
  const { jar } = await loginViaHttp(`${s.url}/`, DORA);
  const page = await get(s, '/finance', jar, 'text/html');
  assert.equal(page.status, 403);
  assert.match(page.body, /not set up to fetch them/);
  assert.ok(s.logs.some((l) => l.includes('oidc.groupOverage is not configured')));
});

test('forward-auth judges by the same groups: 202 with X-Forwarded-Groups from Graph; without them a 403 whose JSON says why', { timeout: 60_000 }, async (t) => {
  const { s, graph } = await overageStack(t, { groups: [FINANCE, 'other-group'], trustProxy: true });
  const ask = async (cookie: string) => {
    const r = await request(`${s.url}/oauth2/auth`, { headers: { cookie, 'x-forwarded-method': 'GET', 'x-forwarded-host': '127.0.0.1', 'x-forwarded-uri': '/finance/x' } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };
  const { jar } = await loginViaHttp(`${s.url}/`, DORA);
  const ok = await ask(jar.header(s.url));
  assert.equal(ok.status, 202);
  assert.equal(ok.headers['x-forwarded-groups'], `${FINANCE},other-group`);

  graph.mode = 401;
  const { jar: without } = await loginViaHttp(`${s.url}/`, DORA);
  const denied = await ask(without.header(s.url));
  assert.equal(denied.status, 403);
  assert.match((JSON.parse(denied.body) as { groupsUnavailable: string }).groupsUnavailable, /refused the access token/);
});

test('a refresh that returns no new ID token fetches the groups again too (the session kept _claim_names), with the new access token', { timeout: 60_000 }, async (t) => {
  const clock = processClock(t); // before the proxy starts: it reads Date.now as its clock
  const tokens: string[] = [];
  const graph = await startTestGraph(t, { acceptToken: (token) => { tokens.push(token); return 'user'; }, groups: { user: [FINANCE] } });
  const s = await startRogueStack(t, {
    rogue: { claims: { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.windows.net/t/users/u/getMemberObjects' } } } },
    routes: (upstream) => ROUTES.map((r) => ({ ...r, upstream })),
    edit: (raw) => { (raw.oidc as Record<string, unknown>).groupOverage = { graphUrl: graph.url }; },
  });
  s.rogue.refreshMode = 'no-id-token';
  const jar = new CookieJar();
  assert.equal((await followRedirects(`${s.url}/finance`, jar)).status, 200);
  assert.equal(tokens.length, 1);

  graph.groups.set('user', ['another-group']);
  clock.advance(2 * 3600_000);
  const r = await request(`${s.url}/finance`, { headers: { accept: 'application/json', cookie: jar.header(s.url) } });
  jar.store(r.headers['set-cookie'], s.url);
  await r.body.dump();
  assert.equal(s.rogue.refreshes, 1, 'refreshed, without an ID token');
  assert.equal(r.statusCode, 403, 'Graph\'s new answer counts');
  assert.equal(tokens.length, 2, 'fetched again');
  assert.notEqual(tokens[1], tokens[0], 'with the refreshed access token');
});
