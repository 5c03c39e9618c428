// Entra ID group overage, the Graph side (src/signin/group-overage.ts) against a loopback
// Graph-shaped server: claims that announce `groups` in `_claim_names` get them from the configured
// Graph origin only — paged, bounded, and on any failure no `groups` at all (fail closed) with a
// reason. Claims without the marker never cause a call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GroupOverage, groupsUnavailableText, hasGroupOverage, MAX_PAGES, type GroupOverageSettings } from '../../src/signin/group-overage.js';
import { startTestGraph, startTrap, type TestGraph } from '../helpers/graph.js';
import type { CleanupScope } from '../helpers/idp.js';

const TOKEN = 'access-token-of-dora';

/** Claims as Entra sends them past 200 groups: no `groups`, a pointer to the (legacy) Graph instead. */
function overageClaims(endpoint = 'https://graph.windows.net/tenant/users/oid/getMemberObjects'): Record<string, unknown> {
  return { sub: 'dora', email: 'dora@example.com', _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint } } };
}

const ids = (n: number, prefix = 'g') => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(4, '0')}-0000-0000-0000-000000000000`);

interface Logged { level: 'info' | 'warn'; o: Record<string, unknown>; m: string }

async function setup(t: CleanupScope, o: { settings?: Partial<GroupOverageSettings>; groups?: string[]; pageSize?: number } = {}) {
  const graph = await startTestGraph(t, { acceptToken: (tok) => (tok === TOKEN ? 'dora' : undefined), groups: { dora: o.groups ?? ids(300) }, pageSize: o.pageSize });
  const counted: string[] = [];
  const logs: Logged[] = [];
  const overage = new GroupOverage({ graphUrl: graph.url, securityEnabledOnly: false, maxGroups: 5000, timeoutMs: 2000, ...o.settings }, {
    count: (r) => counted.push(r),
    log: { info: (obj, m) => logs.push({ level: 'info', o: obj as Record<string, unknown>, m }), warn: (obj, m) => logs.push({ level: 'warn', o: obj as Record<string, unknown>, m }) },
  });
  return { graph, overage, counted, logs };
}

function assertFailedClosed(r: { claims: Record<string, unknown>; groupsUnavailable?: string }, reason: string): void {
  assert.equal(r.groupsUnavailable, reason);
  assert.ok(!('groups' in r.claims), 'no groups claim at all');
  assert.ok(!('_claim_sources' in r.claims));
  assert.equal(r.claims.sub, 'dora', 'the rest of the claims stay');
}

test('hasGroupOverage: only `_claim_names.groups` announces it', () => {
  assert.equal(hasGroupOverage(overageClaims()), true);
  assert.equal(hasGroupOverage({ sub: 'x', groups: ['a'] }), false);
  assert.equal(hasGroupOverage({ sub: 'x', _claim_names: { roles: 'src1' } }), false);
  assert.equal(hasGroupOverage({ sub: 'x', _claim_names: ['groups'] }), false);
  assert.equal(hasGroupOverage({ sub: 'x', _claim_names: null }), false);
  assert.equal(hasGroupOverage({ sub: 'x', _claim_names: 'groups' }), false);
});

test('300 group ids from getMemberObjects (POST, the configured securityEnabledOnly, the bearer token); _claim_sources dropped, _claim_names kept', async (t) => {
  const { graph, overage, counted } = await setup(t, { settings: { securityEnabledOnly: true } });
  const r = await overage.resolve(overageClaims(), TOKEN);
  assert.equal(r.groupsUnavailable, undefined);
  assert.deepEqual(r.claims.groups, ids(300));
  assert.equal(r.claims._claim_sources, undefined);
  assert.deepEqual(r.claims._claim_names, { groups: 'src1' });
  assert.equal(graph.requests.length, 1);
  assert.equal(graph.requests[0]!.method, 'POST');
  assert.equal(graph.requests[0]!.path, '/v1.0/me/getMemberObjects');
  assert.equal(graph.requests[0]!.account, 'dora');
  assert.deepEqual(JSON.parse(graph.requests[0]!.body), { securityEnabledOnly: true });
  assert.deepEqual(counted, ['ok']);
});

test('claims without the marker are returned as they are and Graph is never called (also with a `groups` claim)', async (t) => {
  const { graph, overage, counted } = await setup(t);
  const plain = { sub: 'dora', groups: ['a', 'b'] };
  const r = await overage.resolve(plain, TOKEN);
  assert.equal(r.claims, plain);
  assert.equal(r.groupsUnavailable, undefined);
  assert.equal(graph.requests.length, 0);
  assert.deepEqual(counted, []);
});

test('a `groups` claim arriving with the marker (userinfo, say) is never kept: only Graph\'s answer counts', async (t) => {
  const { overage } = await setup(t, { groups: ['real-1'] });
  const r = await overage.resolve({ ...overageClaims(), groups: ['admin'] }, TOKEN);
  assert.deepEqual(r.claims.groups, ['real-1']);
  const { overage: failing, graph } = await setup(t);
  graph.mode = 500;
  assertFailedClosed(await failing.resolve({ ...overageClaims(), groups: ['admin'] }, TOKEN), 'graph-error');
});

test('paging: @odata.nextLink on the same origin is followed (GET, with the token) until the list is whole', async (t) => {
  const { graph, overage } = await setup(t, { groups: ids(250), pageSize: 100 });
  const r = await overage.resolve(overageClaims(), TOKEN);
  assert.deepEqual(r.claims.groups, ids(250));
  assert.deepEqual(graph.requests.map((q) => `${q.method} ${q.path} ${q.account}`), [
    'POST /v1.0/me/getMemberObjects dora',
    'GET /v1.0/me/getMemberObjects/page?skip=100 dora',
    'GET /v1.0/me/getMemberObjects/page?skip=200 dora',
  ]);
});

test('security: a forged _claim_sources URL is never called; only the configured Graph origin gets the token', async (t) => {
  const trap = await startTrap(t);
  const { graph, overage } = await setup(t, { groups: ['real-1'] });
  const r = await overage.resolve(overageClaims(`${trap.url}/steal`), TOKEN);
  assert.deepEqual(r.claims.groups, ['real-1']);
  assert.equal(trap.requests.length, 0, 'the forged endpoint received nothing');
  assert.equal(graph.requests.length, 1);
});

test('security: a nextLink to another origin is not followed — no groups at all (not the first page), reason foreign-link', async (t) => {
  const trap = await startTrap(t);
  const { graph, overage, counted, logs } = await setup(t, { groups: ids(10) });
  graph.mode = 'foreign-next';
  graph.foreignOrigin = trap.url;
  assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), 'foreign-link');
  assert.equal(trap.requests.length, 0);
  assert.deepEqual(counted, ['foreign-link']);
  assert.match(logs[0]!.m, /nextLink\) points outside oidc\.groupOverage\.graphUrl/);
  // Same host, another port is another origin too.
  graph.foreignOrigin = graph.url.replace(/:(\d+)$/, (_m, p: string) => `:${Number(p) + 1}`);
  assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), 'foreign-link');
});

test('security: a redirect is not followed (the token would go elsewhere)', async (t) => {
  const trap = await startTrap(t);
  const { graph, overage } = await setup(t);
  graph.mode = 'redirect';
  graph.foreignOrigin = trap.url;
  assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), 'bad-answer');
  assert.equal(trap.requests.length, 0);
});

test('Graph failures fail closed with their reason: 401, 403, 429, 500, garbage, wrong shape, down, slow, huge', async (t) => {
  const cases: Array<[TestGraph['mode'], string]> = [[401, 'unauthorized'], [403, 'forbidden'], [429, 'graph-error'], [500, 'graph-error'], ['garbage', 'bad-answer'], ['wrong-shape', 'bad-answer'], ['huge', 'too-many']];
  for (const [mode, reason] of cases) {
    const { graph, overage, counted } = await setup(t, { settings: { maxGroups: 100 } });
    graph.mode = mode;
    assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), reason);
    assert.deepEqual(counted, [reason], String(mode));
  }
  // A token Graph does not accept (another API's): 401 from the server's own check.
  const { overage: o2 } = await setup(t);
  assertFailedClosed(await o2.resolve(overageClaims(), 'a-token-for-another-api'), 'unauthorized');
  // Down: nothing listens there.
  const down = new GroupOverage({ graphUrl: 'http://127.0.0.1:9', securityEnabledOnly: false, maxGroups: 10, timeoutMs: 2000 });
  assertFailedClosed(await down.resolve(overageClaims(), TOKEN), 'unreachable');
  // Slow: bounded by the timeout (oidc.timeout), for the whole fetch.
  const { graph, overage } = await setup(t, { settings: { timeoutMs: 300 } });
  graph.mode = 'slow';
  const t0 = Date.now();
  assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), 'timeout');
  assert.ok(Date.now() - t0 < 5000);
});

test('more groups than maxGroups: none at all (never a cut list), reason too-many — also across pages', async (t) => {
  const { overage } = await setup(t, { groups: ids(101), settings: { maxGroups: 100 } });
  assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), 'too-many');
  const { overage: paged } = await setup(t, { groups: ids(101), pageSize: 50, settings: { maxGroups: 100 } });
  assertFailedClosed(await paged.resolve(overageClaims(), TOKEN), 'too-many');
  const { overage: exact } = await setup(t, { groups: ids(100), settings: { maxGroups: 100 } });
  assert.equal((await exact.resolve(overageClaims(), TOKEN)).claims.groups instanceof Array, true);
});

test(`paging is bounded: more than ${MAX_PAGES} pages fails closed`, async (t) => {
  const { graph, overage } = await setup(t, { groups: ids(MAX_PAGES + 5), pageSize: 1 });
  assertFailedClosed(await overage.resolve(overageClaims(), TOKEN), 'too-many');
  assert.equal(graph.requests.length, MAX_PAGES);
});

test('not configured: no Graph call, no groups, reason off; no access token: reason no-access-token', async (t) => {
  const off = new GroupOverage(undefined);
  assertFailedClosed(await off.resolve(overageClaims(), TOKEN), 'off');
  const { graph, overage } = await setup(t);
  assertFailedClosed(await overage.resolve(overageClaims(), undefined), 'no-access-token');
  assert.equal(graph.requests.length, 0);
});

test('logging: the first failure of a streak is a warning saying what to do, the rest info; never the token', async (t) => {
  const { graph, overage, logs } = await setup(t);
  graph.mode = 401;
  await overage.resolve(overageClaims(), TOKEN);
  await overage.resolve(overageClaims(), TOKEN);
  assert.deepEqual(logs.map((l) => l.level), ['warn', 'info']);
  assert.match(logs[0]!.m, /User\.Read/);
  assert.equal(logs[0]!.o.sub, 'dora');
  graph.mode = 'ok';
  await overage.resolve(overageClaims(), TOKEN);
  graph.mode = 401;
  await overage.resolve(overageClaims(), TOKEN);
  assert.equal(logs.at(-1)!.level, 'warn', 'a success ends the streak');
  assert.ok(!JSON.stringify(logs).includes(TOKEN));
});

test('the 403 page\'s sentence: per reason, plain words; nothing for a session with its groups', () => {
  assert.equal(groupsUnavailableText(undefined), undefined);
  assert.match(groupsUnavailableText('unauthorized')!, /could not be fetched from Microsoft Graph \(Microsoft Graph refused the access token\)/);
  assert.match(groupsUnavailableText('off')!, /not set up to fetch them/);
  assert.match(groupsUnavailableText('constructor')!, /unknown reason/, 'only own keys of the table');
});
