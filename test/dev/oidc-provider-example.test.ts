// The oidc-provider page's example (examples/idps/oidc-provider/portcullis.yaml) is the demo's
// configuration and signs in against the dev IdP as it stands; and the page's other tested claim:
// tokenEndpointAuthMethod client_secret_post works when the client is registered for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';
import { parseConfigText } from '../../src/config/load.js';
import { startServer } from '../../src/server.js';
import { startDevIdp } from '../../dev/devidp/provider.js';
import { freePort, startStack, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { loginViaHttp } from '../helpers/browserless-login.js';

const EXAMPLE = new URL('../../examples/idps/oidc-provider/portcullis.yaml', import.meta.url);
const DEMO = new URL('../../dev/demo.ts', import.meta.url);
const ALICE = { user: 'alice', password: 'alice-password' };
const BOB = { user: 'bob', password: 'bob-password' };

test('the example is what `npm run demo` configures: client, scopes, ports and routes', () => {
  const demo = readFileSync(DEMO, 'utf8');
  const example = parseConfigText(readFileSync(EXAMPLE, 'utf8'), { OIDC_CLIENT_SECRET: 's', SESSION_SECRET: TEST_SESSION_SECRET }).value as {
    publicUrl: string; oidc: { issuer: string; clientId: string; scopes: string[] }; routes: Array<{ name: string; match: { path: string }; upstream: string }>;
  };
  assert.match(demo, new RegExp(`client_id: '${example.oidc.clientId}'`), 'the same client id');
  assert.match(demo, new RegExp(`scopes: \\[${example.oidc.scopes.map((s) => `'${s}'`).join(', ')}\\]`), 'the same scopes');
  assert.match(demo, new RegExp(`PORTCULLIS_DEMO_PORT \\?\\? ${new URL(example.publicUrl).port}\\)`), 'the same proxy port');
  assert.match(demo, new RegExp(`PORTCULLIS_DEMO_IDP_PORT \\?\\? ${new URL(example.oidc.issuer).port}\\)`), 'the same IdP port');
  for (const r of example.routes) {
    assert.match(demo, new RegExp(`\\{ name: '${r.name}', match: \\{ path: '${r.match.path}' \\}`), `the demo has route ${r.name}`);
    assert.match(demo, new RegExp(`PORTCULLIS_DEMO_UPSTREAM_PORT \\?\\? ${new URL(r.upstream).port}\\)`), 'the same upstream port');
  }
});

test('examples/idps/oidc-provider/portcullis.yaml signs alice in against the dev IdP; bob gets 403 on /admin', async (t) => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const clientSecret = randomBytes(24).toString('base64url');
  // The dev IdP as the demo starts it (client portcullis-demo), on a free port.
  const idp = await startDevIdp({
    clients: [{ client_id: 'portcullis-demo', client_secret: clientSecret, redirect_uris: [`${url}/oauth2/callback`], post_logout_redirect_uris: [`${url}/oauth2/signed_out`, `${url}/`] }],
  });
  t.after(() => idp.close());
  const upstream = await startTestUpstream(t);
  // The file as `portcullis --config` reads it, with the demo's fixed ports swapped for free ones.
  const text = readFileSync(EXAMPLE, 'utf8')
    .replaceAll('http://localhost:8080', url)
    .replace('port: 8080', `port: ${port}`)
    .replace('port: 8090', 'port: 0')
    .replaceAll('http://127.0.0.1:9400', idp.issuer)
    .replaceAll('http://127.0.0.1:9401', upstream.url);
  const parsed = parseConfigText(text, { OIDC_CLIENT_SECRET: clientSecret, SESSION_SECRET: TEST_SESSION_SECRET });
  assert.deepEqual(parsed.issues, []);
  const r = validateConfigObject(parsed.value, {});
  if (!r.ok) assert.fail(formatIssues(r.issues));
  const server = await startServer(r.config, { logStream: new Writable({ write(_c, _e, cb) { cb(); } }) });
  t.after(() => server.close());
  await server.runtime.providers.waitReady(10_000);

  const alice = await loginViaHttp(`${url}/admin/panel`, ALICE);
  assert.equal(alice.status, 200, alice.body.slice(0, 300));
  assert.equal(new URL(alice.finalUrl).pathname, '/admin/panel');
  const seen = upstream.requests.at(-1)!;
  assert.equal(seen.headers['x-forwarded-user'], 'alice');
  assert.equal(seen.headers['x-forwarded-groups'], 'admin,dev', 'groups reach the ID token with the groups scope');

  const bob = await loginViaHttp(`${url}/admin/panel`, BOB);
  assert.equal(bob.status, 403);
  assert.equal(upstream.requests.filter((q) => q.headers['x-forwarded-user'] === 'bob').length, 0, 'the upstream never saw bob');
});

test('oidc-provider: tokenEndpointAuthMethod client_secret_post signs in when the client is registered for it', async (t) => {
  const s = await startStack(t, {
    idp: { tokenEndpointAuthMethod: 'client_secret_post' },
    edit: (raw) => { (raw.oidc as Record<string, unknown>).tokenEndpointAuthMethod = 'client_secret_post'; },
  });
  const r = await loginViaHttp(`${s.url}/x`, ALICE);
  assert.equal(r.status, 200, r.body.slice(0, 300));
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
});
