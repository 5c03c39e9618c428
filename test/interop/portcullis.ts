// Interop suite: Portcullis in front of the echo upstream with a real IdP as issuer. Like
// test/helpers/stack.ts, but the IdP is an InteropIdp whose client this registers first.
import { Writable } from 'node:stream';
import { validateConfigObject, formatIssues, type Config } from '../../src/config/index.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { freePort } from '../../dev/devidp/net.js';
import type { CleanupScope } from '../helpers/idp.js';
import { startTestUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { TEST_SESSION_SECRET, DEFAULT_ROUTES } from '../helpers/stack.js';
import type { ClientSettings, InteropIdp } from './idp.js';

export interface InteropStack {
  server: RunningServer;
  upstream: EchoUpstream;
  config: Config;
  /** Portcullis's public URL (http://localhost:PORT: another host name than the IdP's 127.0.0.1, so their cookies stay apart). */
  url: string;
  client: ClientSettings;
  logs: string[];
}

export interface InteropStackOptions {
  /** Host name of Portcullis's public URL. Default `localhost` (Glewlwyd is on 127.0.0.1: their cookies stay apart). */
  host?: string;
  /** A client id of its own per test (the IdP is shared by the tests of a file). */
  clientId: string;
  clientSecret?: string;
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post';
  /** What the IdP allows for this client. Default: both. */
  idpAuthMethods?: ClientSettings['tokenEndpointAuthMethods'];
  routes?: Array<Record<string, unknown>>;
  edit?: (raw: Record<string, unknown>) => void;
  /**
   * A whole config instead of the built-in one (e.g. a documented portcullis.yaml), given this stack's
   * public URL and upstream URL. Only listen, metrics, logLevel and the sign-in rate limit are then set here.
   */
  config?: (ctx: { url: string; upstreamUrl: string }) => Record<string, unknown>;
  /** Environment for `${VAR}` references in the config. */
  env?: Record<string, string>;
  /** Portcullis's clock (default Date.now): the IdP's clock is its own, so moving this one is a clock skew. */
  now?: () => number;
}

export async function startInteropStack(t: CleanupScope, idp: InteropIdp, opts: InteropStackOptions): Promise<InteropStack> {
  const port = await freePort();
  const url = `http://${opts.host ?? 'localhost'}:${port}`;
  const client: ClientSettings = {
    clientId: opts.clientId,
    clientSecret: opts.clientSecret ?? `secret-for-${opts.clientId}`,
    redirectUris: [`${url}/oauth2/callback`],
    postLogoutRedirectUris: [`${url}/oauth2/signed_out`],
    backchannelLogoutUri: `${url}/oauth2/backchannel_logout`,
    tokenEndpointAuthMethods: opts.idpAuthMethods ?? ['client_secret_basic', 'client_secret_post'],
  };
  await idp.registerClient(client);
  const upstream = await startTestUpstream(t);
  const routes = (opts.routes ?? DEFAULT_ROUTES).map((r) => ({ ...r, upstream: String(r.upstream ?? '{upstream}').replace('{upstream}', upstream.url) }));
  const raw: Record<string, unknown> = opts.config ? {
    ...opts.config({ url, upstreamUrl: upstream.url }),
    listen: { host: '127.0.0.1', port },
    metrics: false,
    logLevel: 'debug',
    rateLimit: { signIn: 0 },
  } : {
    listen: { host: '127.0.0.1', port },
    publicUrl: url,
    metrics: false,
    logLevel: 'debug',
    oidc: {
      issuer: idp.issuer, clientId: client.clientId, clientSecret: client.clientSecret,
      tokenEndpointAuthMethod: opts.tokenEndpointAuthMethod ?? 'client_secret_post',
      scopes: ['openid', 'email', 'profile', 'groups'], timeout: '5s',
    },
    session: { secrets: [TEST_SESSION_SECRET] },
    rateLimit: { signIn: 0 },
    routes,
  };
  opts.edit?.(raw);
  const r = validateConfigObject(raw, opts.env ?? {});
  if (!r.ok) throw new Error(`interop config invalid:\n${formatIssues(r.issues)}`);
  const logs: string[] = [];
  const logStream = new Writable({ write(chunk, _enc, cb) { logs.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const server = await startServer(r.config, { logStream, now: opts.now });
  t.after(() => server.close());
  await server.runtime.providers.waitReady(10_000);
  return { server, upstream, config: r.config, url, client, logs };
}
