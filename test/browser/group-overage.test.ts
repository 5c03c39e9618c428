// Real browser (Debian Chromium via playwright-core), Entra ID group overage: a user in 300 groups
// whose ID token only points at them (`_claim_names`/`_claim_sources`, from the dev oidc-provider)
// signs in; Portcullis fetches the groups from a loopback Graph-shaped server with her access token,
// the group rule lets her in and the upstream sees X-Forwarded-Groups. After a refresh (the proxy's
// clock moved, no sleeping) the rule sees Graph's new answer; when Graph refuses, the 403 page says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from '../helpers/stack.js';
import { launchChromium, signInAtDevIdp } from '../helpers/chromium.js';
import { identityHeader } from '../interop/pages.js';
import { startTestGraph } from '../helpers/graph.js';
import { entraGroupIds } from '../session/ad-groups.js';

const TEST_TIMEOUT_MS = 60_000;
const FINANCE = '22222222-2222-2222-2222-222222222222';
const DORA = { user: 'dora', password: 'dora-password' };

const ROUTES = [
  { name: 'finance', match: { path: '/finance' }, upstream: '{upstream}', allow: { claim: 'groups', contains: FINANCE } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
];

const DORA_CLAIMS = {
  email: 'dora@example.com', email_verified: true, preferred_username: 'dora',
  _claim_names: { groups: 'src1' },
  _claim_sources: { src1: { endpoint: 'https://graph.windows.net/00000000-0000-0000-0000-000000000000/users/dora/getMemberObjects' } },
};

async function overageStack(t: Parameters<typeof startStack>[0], groups: string[], now?: () => number) {
  const graph = await startTestGraph(t, { groups: { dora: groups } });
  const s = await startStack(t, {
    routes: ROUTES,
    now,
    idp: { users: { dora: { password: DORA.password, claims: DORA_CLAIMS } } },
    edit: (raw) => { (raw.oidc as Record<string, unknown>).groupOverage = { graphUrl: graph.url }; },
  });
  graph.idp = s.idp;
  return { s, graph };
}

test('dora, in 300 groups (overage), signs in; the group rule and X-Forwarded-Groups see Graph\'s list; a refresh sees its new answer', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  let offset = 0;
  const groups = [FINANCE, ...entraGroupIds(299)];
  const { s, graph } = await overageStack(t, groups, () => Date.now() + offset);
  const page = await context.newPage();

  await page.goto(`${s.url}/finance/report`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).origin, s.idp.issuer, 'sent to the IdP');
  await signInAtDevIdp(page, DORA);
  assert.equal(page.url(), `${s.url}/finance/report`, 'back at the page she asked for');
  assert.equal(await page.locator('h1').innerText(), 'Portcullis demo upstream');
  assert.ok((await identityHeader(page, 'x-forwarded-groups')).startsWith(`${FINANCE},${groups[1]},`), 'X-Forwarded-Groups from Graph');
  assert.equal(graph.requests.length, 1);
  assert.equal(graph.requests[0]!.account, 'dora', 'Graph got her access token');

  // Taken out of the finance group; her tokens come due: the next page load refreshes and refetches.
  graph.groups.set('dora', groups.slice(1));
  offset += 2 * 3600_000;
  const denied = await page.goto(`${s.url}/finance/report`, { waitUntil: 'domcontentloaded' });
  assert.equal(denied?.status(), 403);
  assert.match(await page.locator('h1').innerText(), /don't have access/);
  assert.equal(await page.locator('#groups-unavailable').count(), 0, 'her groups were fetched: no Graph sentence');
  assert.equal(graph.requests.length, 2, 'fetched again at the refresh');

  graph.groups.set('dora', groups);
  offset += 2 * 3600_000;
  const back = await page.goto(`${s.url}/finance/report`, { waitUntil: 'domcontentloaded' });
  assert.equal(back?.status(), 200, 'in the group again after the next refresh');
});

test('Graph refuses the token: dora is signed in without groups, and the 403 page says her groups could not be fetched', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const { s, graph } = await overageStack(t, [FINANCE]);
  graph.mode = 401;
  const page = await context.newPage();
  await page.goto(`${s.url}/`, { waitUntil: 'domcontentloaded' });
  await signInAtDevIdp(page, DORA);
  assert.equal(page.url(), `${s.url}/`, 'signed in');
  const denied = await page.goto(`${s.url}/finance`, { waitUntil: 'domcontentloaded' });
  assert.equal(denied?.status(), 403, 'no 500');
  assert.match(await page.locator('#groups-unavailable').innerText(), /could not be fetched from Microsoft Graph \(Microsoft Graph refused the access token\)/);
});
