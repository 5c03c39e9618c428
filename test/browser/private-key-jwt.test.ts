// private_key_jwt end to end in Chromium, with the worked example's own configuration
// (examples/private-key-jwt/portcullis.yaml): oidc-provider has the client registered for
// private_key_jwt, no secret, and jwks_uri at Portcullis's /oauth2/client-jwks.json; alice signs in
// at the IdP's pages and reaches the app as herself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { decodeProtectedHeader } from 'jose';
import { launchChromium, signInAtDevIdp } from '../helpers/chromium.js';
import { identityHeader } from '../interop/pages.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { freePort, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { parseConfigText } from '../../src/config/load.js';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';
import { startServer } from '../../src/server.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/private-key-jwt/portcullis.yaml', import.meta.url));

test('private_key_jwt in a real browser: the example config signs alice in at oidc-provider, which fetched the client\'s key from /oauth2/client-jwks.json', { timeout: 60_000 }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pkjwt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'client.pem');
  // What the example's README says: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256.
  writeFileSync(keyFile, String(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' })), { mode: 0o600 });

  const idp = await startTestIdp(t, {
    redirectUris: [`${url}/oauth2/callback`],
    tokenEndpointAuthMethod: 'private_key_jwt',
    jwksUri: `${url}/oauth2/client-jwks.json`,
  });
  const fetchedKeys: string[] = [];
  const assertions: string[] = [];
  idp.use(async (ctx: { oidc?: { route?: string; params?: { client_assertion?: string } } }, next) => {
    await next();
    if (ctx.oidc?.route === 'token' && typeof ctx.oidc.params?.client_assertion === 'string') assertions.push(ctx.oidc.params.client_assertion);
  });
  const upstream = await startTestUpstream(t);
  const parsed = parseConfigText(readFileSync(EXAMPLE, 'utf8'), {
    PUBLIC_URL: url, OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: idp.clientId, CLIENT_KEYS_FILE: keyFile,
    SESSION_SECRET: TEST_SESSION_SECRET, APP_UPSTREAM: upstream.url,
  });
  assert.deepEqual(parsed.issues, []);
  const raw = { ...(parsed.value as Record<string, unknown>), listen: { host: '127.0.0.1', port }, metrics: false, rateLimit: { signIn: 0 } };
  const r = validateConfigObject(raw, {});
  if (!r.ok) throw new Error(formatIssues(r.issues));
  assert.equal(r.config.providers[0]!.tokenEndpointAuthMethod, 'private_key_jwt');
  assert.equal(r.config.providers[0]!.clientSecret, '', 'no client secret anywhere');
  const server = await startServer(r.config, { logStream: new PassThrough() });
  t.after(() => server.close());
  await server.runtime.providers.waitReady(10_000);

  const page = await context.newPage();
  page.on('request', (req) => { if (req.url().endsWith('/oauth2/client-jwks.json')) fetchedKeys.push(req.url()); });
  await page.goto(`${url}/reports?month=11`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).origin, idp.issuer, 'sent to the IdP');
  await signInAtDevIdp(page, { user: 'alice', password: 'alice-password' });
  assert.equal(page.url(), `${url}/reports?month=11`, 'back where alice started');
  assert.equal(await identityHeader(page, 'x-forwarded-user'), 'alice');
  assert.equal(await identityHeader(page, 'x-forwarded-email'), 'alice@example.com');

  assert.equal(assertions.length, 1, 'the code was redeemed with a client assertion');
  const published = await (await fetch(`${url}/oauth2/client-jwks.json`)).json() as { keys: Array<{ kid: string; d?: string }> };
  assert.equal(decodeProtectedHeader(assertions[0]!).kid, published.keys[0]!.kid, 'signed with the published key');
  assert.equal(published.keys[0]!.d, undefined);
  assert.deepEqual(fetchedKeys, [], 'the browser never needed the key set: the IdP fetched it');
});
