// Test helper: the echo upstream on a free port, stopped by the test's own cleanup.
import { startEchoUpstream, type EchoUpstream } from '../../dev/devidp/upstream.js';
import type { CleanupScope } from './idp.js';

export type { EchoUpstream, RecordedRequest } from '../../dev/devidp/upstream.js';

export async function startTestUpstream(t: CleanupScope, opts: { host?: string; port?: number } = {}): Promise<EchoUpstream> {
  const upstream = await startEchoUpstream(opts);
  t.after(() => upstream.close());
  return upstream;
}
