// Test helper: an `examples/*/portcullis.yaml` run exactly as shipped — only its ${VAR}s filled in —
// on a given loopback port, quiet, without the sign-in rate limit; stopped by the test's own cleanup.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { loadConfigFile, formatIssues } from '../../src/config/index.js';
import { startServer, type RunningServer } from '../../src/server.js';
import type { CleanupScope } from './idp.js';

export async function startExample(t: CleanupScope, file: string, vars: Record<string, string>, port: number, opts: { now?: () => number } = {}): Promise<RunningServer> {
  const r = loadConfigFile(file, vars);
  assert.ok(r.ok, r.ok ? '' : formatIssues(r.issues));
  const config = { ...r.config, listen: { host: '127.0.0.1', port }, metrics: null, logLevel: 'warn' as const, rateLimit: { ...r.config.rateLimit, signIn: 0 } };
  const server = await startServer(config, { logStream: new Writable({ write(_c, _e, cb) { cb(); } }), now: opts.now });
  t.after(() => server.close());
  await server.runtime.providers.waitReady(10_000);
  return server;
}
