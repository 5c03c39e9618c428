// X-Request-Id ends up in our logs and the upstream's: a client may not choose it. It is believed only
// from a trusted proxy, and only when it looks like an id — on the Fastify path and the hot path alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function idSeenUpstream(s: Awaited<ReturnType<typeof startStack>>, given: string): Promise<string> {
  const r = await request(`${s.url}/public/x`, { headers: { accept: 'application/json', 'x-request-id': given } });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
  return String(s.upstream.requests.at(-1)!.headers['x-request-id']);
}

for (const fastPath of [true, false]) {
  const label = fastPath ? 'hot path' : 'full path';

  test(`${label}: a client's own X-Request-Id is replaced`, async (t) => {
    const s = await startStack(t, { sessionCache: fastPath });
    const seen = await idSeenUpstream(s, 'chosen-by-the-client');
    assert.notEqual(seen, 'chosen-by-the-client');
    assert.match(seen, UUID);
  });

  test(`${label}: a trusted proxy's X-Request-Id is kept, unless it does not look like an id`, async (t) => {
    const s = await startStack(t, { sessionCache: fastPath, edit: (raw) => { raw.trustProxy = ['127.0.0.1/32']; } });
    assert.equal(await idSeenUpstream(s, 'edge-1234.abc:9'), 'edge-1234.abc:9');
    for (const bad of ['a'.repeat(129), 'id with spaces', 'id"><script>', 'id,another']) {
      const seen = await idSeenUpstream(s, bad);
      assert.notEqual(seen, bad, bad);
      assert.match(seen, UUID, bad);
    }
  });
}
