// Attack: an ID token's `_claim_sources` (Entra ID group overage) names a URL of the attacker's
// choosing — relayed by a misconfigured or compromised IdP, or a claim a user can influence — hoping
// Portcullis sends the user's access token there, or believes the groups it answers. Portcullis
// never calls a `_claim_sources` endpoint: only oidc.groupOverage.graphUrl ever gets the token, and
// a paging link (@odata.nextLink) to any other origin ends the fetch with no groups at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { startTestGraph, startTrap } from '../helpers/graph.js';

const ROUTES = [
  { name: 'trap-group', match: { path: '/trap' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'trap-group' } },
  { name: 'real-group', match: { path: '/real' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'real-group' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
];

async function stackWithForgedSource(t: Parameters<typeof startStack>[0]) {
  const trap = await startTrap(t);
  const graph = await startTestGraph(t, { groups: { mallory: ['real-group'] } });
  const s = await startStack(t, {
    routes: ROUTES,
    idp: {
      users: {
        mallory: {
          password: 'mallory-password',
          claims: {
            email: 'mallory@example.com',
            _claim_names: { groups: 'src1' },
            // The forged source: a loopback server that would answer `trap-group` to anyone.
            _claim_sources: { src1: { endpoint: `${trap.url}/v1.0/me/getMemberObjects`, access_token: 'x' } },
          },
        },
      },
    },
    edit: (raw) => { (raw.oidc as Record<string, unknown>).groupOverage = { graphUrl: graph.url }; },
  });
  graph.idp = s.idp;
  return { s, trap, graph };
}

async function status(url: string, cookie: string): Promise<number> {
  const r = await request(url, { headers: { accept: 'application/json', cookie } });
  await r.body.text();
  return r.statusCode;
}

test('a forged _claim_sources URL receives no request; the configured Graph does, and only its answer counts', { timeout: 60_000 }, async (t) => {
  const { s, trap, graph } = await stackWithForgedSource(t);
  const { status: signedIn, jar } = await loginViaHttp(`${s.url}/`, { user: 'mallory', password: 'mallory-password' });
  assert.equal(signedIn, 200);
  assert.equal(trap.requests.length, 0, 'the forged endpoint was never called');
  assert.equal(graph.requests.length, 1, 'the configured Graph was');
  assert.equal(graph.requests[0]!.account, 'mallory');
  assert.equal(await status(`${s.url}/real`, jar.header(`${s.url}/real`)), 200);
  assert.equal(await status(`${s.url}/trap`, jar.header(`${s.url}/trap`)), 403, 'the forged source\'s groups were never believed');
});

test('a paging link to another origin: not followed (no request there), the user has no groups', { timeout: 60_000 }, async (t) => {
  const { s, trap, graph } = await stackWithForgedSource(t);
  graph.mode = 'foreign-next';
  graph.foreignOrigin = trap.url;
  const { status: signedIn, jar } = await loginViaHttp(`${s.url}/`, { user: 'mallory', password: 'mallory-password' });
  assert.equal(signedIn, 200);
  assert.equal(trap.requests.length, 0);
  assert.equal(await status(`${s.url}/real`, jar.header(`${s.url}/real`)), 403, 'not even the first page\'s groups');
});
