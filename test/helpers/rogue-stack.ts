// Test helper: the proxy and an echo upstream in front of the rogue IdP (rogue-idp.ts), on free
// ports, with captured logs; stopped by the test's own cleanup.
import type { RunningServer } from '../../src/server.js';
import { freePort, serveRawConfig, TEST_SESSION_SECRET } from './stack.js';
import { startTestUpstream, type EchoUpstream } from './upstream.js';
import { startRogueIdp, type RogueIdp, type RogueIdpOptions } from './rogue-idp.js';
import type { CleanupScope } from './idp.js';

export interface RogueStack {
  rogue: RogueIdp;
  upstream: EchoUpstream;
  server: RunningServer;
  url: string;
  logs: string[];
}

/**
 * Proxy + echo upstream in front of the rogue IdP. `waitReady: false` for an IdP that must never
 * become ready; `routes` (given the upstream's URL) instead of one `app` route on `/`; `edit` changes
 * the raw config before validation; `now`: Portcullis's clock.
 */
export async function startRogueStack(t: CleanupScope, opts: { rogue?: RogueIdpOptions; waitReady?: boolean; routes?: (upstream: string) => Array<Record<string, unknown>>; edit?: (raw: Record<string, unknown>) => void; now?: () => number } = {}): Promise<RogueStack> {
  const rogue = await startRogueIdp(t, opts.rogue);
  const upstream = await startTestUpstream(t);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const raw: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port },
    publicUrl: url,
    metrics: false,
    logLevel: 'debug',
    oidc: { issuer: rogue.issuer, clientId: rogue.clientId, clientSecret: rogue.clientSecret, scopes: ['openid', 'email', 'profile'], timeout: '3s' },
    session: { secrets: [TEST_SESSION_SECRET] },
    routes: opts.routes?.(upstream.url) ?? [{ name: 'app', match: { path: '/' }, upstream: upstream.url }],
  };
  opts.edit?.(raw);
  const { server, logs } = await serveRawConfig(t, raw, { waitReady: opts.waitReady, now: opts.now });
  return { rogue, upstream, server, url, logs };
}
