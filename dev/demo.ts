// `npm run demo`: Portcullis on http://localhost:8080 in front of an echo upstream, signing in
// against the embedded development OpenID Provider. Development only: it lives under dev/, runs from
// the sources with tsx (`node --import tsx dev/demo.ts`), and is not part of the build or the image
// (the IdP, oidc-provider, is a devDependency).
import { pathToFileURL } from 'node:url';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { randomBytes } from 'node:crypto';
import { validateConfigObject, formatIssues } from '../src/config/index.js';
import { startServer, installSignalHandlers } from '../src/server.js';

export async function runDemo(): Promise<void> {
  const port = Number(process.env.PORTCULLIS_DEMO_PORT ?? 8080);
  const idpPort = Number(process.env.PORTCULLIS_DEMO_IDP_PORT ?? 9400);
  const upstreamPort = Number(process.env.PORTCULLIS_DEMO_UPSTREAM_PORT ?? 9401);
  const publicUrl = `http://localhost:${port}`;
  // The IdP is a devDependency: load it only for the demo.
  const { startDevIdp, DEMO_USERS } = await import('./devidp/provider.js');
  const { startEchoUpstream } = await import('./devidp/upstream.js');
  const clientSecret = randomBytes(24).toString('base64url');
  const idp = await startDevIdp({
    host: '127.0.0.1',
    port: idpPort,
    clients: [{
      client_id: 'portcullis-demo',
      client_secret: clientSecret,
      redirect_uris: [`${publicUrl}/oauth2/callback`],
      post_logout_redirect_uris: [`${publicUrl}/oauth2/signed_out`, `${publicUrl}/`],
    }],
  });
  const upstream = await startEchoUpstream({ host: '127.0.0.1', port: upstreamPort });
  const raw = {
    listen: { host: '127.0.0.1', port },
    publicUrl,
    metrics: { host: '127.0.0.1', port: port + 10 },
    logLevel: process.env.PORTCULLIS_LOG_LEVEL ?? 'warn',
    oidc: { issuer: idp.issuer, clientId: 'portcullis-demo', clientSecret, scopes: ['openid', 'email', 'profile', 'groups'] },
    session: { secrets: [randomBytes(32).toString('base64url')] },
    routes: [
      { name: 'public', match: { path: '/public' }, upstream: upstream.url, auth: 'public' },
      { name: 'admin', match: { path: '/admin' }, upstream: upstream.url, allow: { claim: 'groups', contains: 'admin' } },
      { name: 'app', match: { path: '/' }, upstream: upstream.url, websocket: true },
    ],
  };
  const r = validateConfigObject(raw, {});
  if (!r.ok) throw new Error(`demo config is invalid:\n${formatIssues(r.issues)}`);
  // The config as a file, so the demo can be checked like a real deployment (portcullis doctor).
  // It holds the demo's secrets: readable by this user only, removed on exit.
  const configDir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'));
  const configFile = join(configDir, 'portcullis.yaml');
  writeFileSync(configFile, stringify(raw), { mode: 0o600 });
  process.once('exit', () => rmSync(configDir, { recursive: true, force: true }));
  const server = await startServer(r.config);
  await server.runtime.providers.waitReady(10_000);
  const users = Object.entries(DEMO_USERS).map(([name, u]) => {
    const groups = (u.claims.groups as string[] | undefined) ?? [];
    return `    ${name.padEnd(6)} password ${u.password.padEnd(16)} groups: ${groups.length ? groups.join(', ') : '(none)'}`;
  });
  console.log(`
  Portcullis demo is running.

    open   ${publicUrl}/            any signed-in user   → the echo upstream shows the X-Forwarded-* identity headers
           ${publicUrl}/admin       only group "admin"   (bob gets 403)
           ${publicUrl}/public      no sign-in needed
           ${publicUrl}/oauth2/sign_out   sign out

  Demo users (embedded IdP at ${idp.issuer}):
${users.join('\n')}

  Metrics: http://127.0.0.1:${port + 10}/metrics
  Check:   npx portcullis doctor --config ${configFile}
  Stop with Ctrl-C.
`);
  installSignalHandlers(server, 2000);
  const stopOthers = () => { void idp.close(); void upstream.close(); };
  process.once('SIGINT', stopOthers);
  process.once('SIGTERM', stopOthers);
}

// Run directly — also through a symlink (the test suite's compiled mirror links dev/demo.ts): a module's
// URL is its real path.
const entry = (() => { try { return pathToFileURL(realpathSync(process.argv[1] ?? '')).href; } catch { return undefined; } })();
if (entry && import.meta.url === entry) {
  runDemo().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
