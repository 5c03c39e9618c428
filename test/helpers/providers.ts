// Test helper: Portcullis with TWO OpenID Providers (config `oidc` as a list), each a dev IdP of its
// own on a free port with the same demo users — so both have an "alice" — plus an echo upstream.
// Routes: `/corp` accepts corp only, `/partners` partners only, `/both` both, `/corp-rule` both but
// its rule wants corp, `/api` bearer JWTs from both, `/corp-api` bearer JWTs from corp only.
import type { Config } from '../../src/config/index.js';
import type { RunningServer } from '../../src/server.js';
import { freePort, serveRawConfig, TEST_SESSION_SECRET } from './stack.js';
import { startTestIdp, type CleanupScope, type TestIdp } from './idp.js';
import { startTestUpstream, type EchoUpstream } from './upstream.js';

export interface TwoProviders {
  corp: TestIdp;
  partners: TestIdp;
  upstream: EchoUpstream;
  server: RunningServer;
  config: Config;
  url: string;
  logs: string[];
}

export const TWO_PROVIDER_ROUTES = [
  { name: 'corp', match: { path: '/corp' }, upstream: '{upstream}', providers: ['corp'] },
  { name: 'partners', match: { path: '/partners' }, upstream: '{upstream}', providers: ['partners'] },
  { name: 'corp-rule', match: { path: '/corp-rule' }, upstream: '{upstream}', allow: { provider: 'corp' } },
  { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: 'jwt' },
  { name: 'corp-api', match: { path: '/corp-api' }, upstream: '{upstream}', bearer: 'jwt', providers: ['corp'] },
  { name: 'both', match: { path: '/' }, upstream: '{upstream}' },
];

export async function startTwoProviders(t: CleanupScope, opts: { keys?: { corp?: object[]; partners?: object[] }; edit?: (raw: Record<string, unknown>) => void } = {}): Promise<TwoProviders> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const idpOptions = (keys: object[] | undefined) => ({
    redirectUris: [`${url}/oauth2/callback`],
    postLogoutRedirectUris: [`${url}/oauth2/signed_out`],
    backchannelLogoutUri: `${url}/oauth2/backchannel_logout`,
    ...(keys ? { keys: { keys } } : {}),
  });
  const [corp, partners, upstream] = await Promise.all([
    startTestIdp(t, idpOptions(opts.keys?.corp)),
    startTestIdp(t, idpOptions(opts.keys?.partners)),
    startTestUpstream(t),
  ]);
  const provider = (id: string, idp: TestIdp, extra: Record<string, unknown>) => ({
    id, issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret,
    scopes: ['openid', 'email', 'profile', 'groups'], timeout: '5s', bearerAudiences: ['urn:api'], ...extra,
  });
  const raw: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port },
    publicUrl: url,
    metrics: { host: '127.0.0.1', port: 0 },
    logLevel: 'debug',
    oidc: [
      provider('corp', corp, { displayName: 'Example Corp staff', domainHint: 'corp.example' }),
      provider('partners', partners, { displayName: 'Partners' }),
    ],
    session: { secrets: [TEST_SESSION_SECRET] },
    rateLimit: { signIn: 0 },
    routes: TWO_PROVIDER_ROUTES.map((r) => ({ ...r, upstream: upstream.url })),
  };
  opts.edit?.(raw);
  const { server, config, logs } = await serveRawConfig(t, raw);
  return { corp, partners, upstream, server, config, url, logs };
}
