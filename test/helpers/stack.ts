// Test helper: a whole Portcullis stack on loopback — the dev IdP, an echo upstream and the proxy
// on free ports — with captured logs, all stopped by the test's own cleanup.
import { freePort } from '../../dev/devidp/net.js';
import { Writable } from 'node:stream';
import { validateConfigObject, formatIssues, type Config } from '../../src/config/index.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server.js';
import { startTestIdp, type CleanupScope, type TestIdp, type TestIdpOptions } from './idp.js';
import { startTestUpstream, type EchoUpstream } from './upstream.js';

export const TEST_SESSION_SECRET = 'test-session-secret-0123456789-abcdefghijklmnop';

export { freePort };

export interface StackOptions {
  /** Routes; `{upstream}` in an upstream value is replaced by the echo upstream's URL. Default: app `/` (required), admin `/admin` (groups contains admin), public `/public`. */
  routes?: Array<Record<string, unknown>>;
  /** Edit the raw config before validation. */
  edit?: (raw: Record<string, unknown>) => void;
  /** IdP options, or a function of the proxy's URL (e.g. for a back-channel logout URI). */
  idp?: Partial<TestIdpOptions> | ((proxyUrl: string) => Partial<TestIdpOptions>);
  /** Reuse an IdP (e.g. a second proxy against the same IdP). */
  existingIdp?: TestIdp;
  now?: () => number;
  /** The Redis store's session cache window (RuntimeOptions.sessionCacheWindowMs), for a session to stay cached across a clock jump. */
  sessionCacheWindowMs?: number;
  /** false: no session cache (`session.cacheMaxEntries: 0`): every request opens its cookie — the door's asynchronous steps. */
  sessionCache?: boolean;
}

export interface Stack {
  idp: TestIdp;
  upstream: EchoUpstream;
  server: RunningServer;
  config: Config;
  /** http://127.0.0.1:PORT — also publicUrl. */
  url: string;
  /** Every log line the proxy wrote (JSON strings). */
  logs: string[];
}

export const DEFAULT_ROUTES = [
  { name: 'public', match: { path: '/public' }, upstream: '{upstream}', auth: 'public' },
  { name: 'admin', match: { path: '/admin' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'admin' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true },
];

export async function startStack(t: CleanupScope, opts: StackOptions = {}): Promise<Stack> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const idp = opts.existingIdp ?? await startTestIdp(t, {
    redirectUris: [`${url}/oauth2/callback`],
    postLogoutRedirectUris: [`${url}/oauth2/signed_out`, `${url}/`],
    ...(typeof opts.idp === 'function' ? opts.idp(url) : opts.idp),
  });
  if (opts.existingIdp) {
    await idp.registerClient({ ...idp.client, redirect_uris: [...idp.client.redirect_uris, `${url}/oauth2/callback`], post_logout_redirect_uris: [...(idp.client.post_logout_redirect_uris ?? []), `${url}/oauth2/signed_out`] });
  }
  const upstream = await startTestUpstream(t);
  const routes = (opts.routes ?? DEFAULT_ROUTES).map((r) => ({ ...r, upstream: String(r.upstream ?? '{upstream}').replace('{upstream}', upstream.url) }));
  const raw: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port },
    publicUrl: url,
    metrics: { host: '127.0.0.1', port: 0 },
    logLevel: 'debug',
    oidc: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, scopes: ['openid', 'email', 'profile', 'groups'], timeout: '5s' },
    session: { secrets: [TEST_SESSION_SECRET] },
    // Test suites sign in dozens of times a minute from one loopback address; the sign-in rate
    // limit has its own tests (test/operability/limits.test.ts), which set it explicitly.
    rateLimit: { signIn: 0 },
    routes,
  };
  if (opts.sessionCache === false) (raw.session as Record<string, unknown>).cacheMaxEntries = 0;
  opts.edit?.(raw);
  const { server, config, logs } = await serveRawConfig(t, raw, { now: opts.now, sessionCacheWindowMs: opts.sessionCacheWindowMs });
  return { idp, upstream, server, config, url, logs };
}

/**
 * A raw test config validated (a problem throws, listed) and served with its log lines captured,
 * stopped by the test's own cleanup; waits for every provider's discovery unless `waitReady: false`.
 */
export async function serveRawConfig(t: CleanupScope, raw: Record<string, unknown>, opts: ServerOptions & { waitReady?: boolean } = {}): Promise<{ server: RunningServer; config: Config; logs: string[] }> {
  const { waitReady, ...serverOpts } = opts;
  const r = validateConfigObject(raw, {});
  if (!r.ok) throw new Error(`test config invalid:\n${formatIssues(r.issues)}`);
  const logs: string[] = [];
  const logStream = new Writable({ write(chunk, _enc, cb) { logs.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const server = await startServer(r.config, { ...serverOpts, logStream });
  t.after(() => server.close());
  if (waitReady !== false) await server.runtime.providers.waitReady(10_000);
  return { server, config: r.config, logs };
}
