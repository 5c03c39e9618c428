// Revocations name an IdP's subject or session id, so they are that provider's: partners' "alice"
// signing out must not end corp's "alice". The first provider keeps the unscoped entries written
// before there were several (`sub:alice`), so old entries — and replicas not yet upgraded — keep
// their meaning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RevocationList } from '../../src/session/revocation.js';
import { idpNameKey } from '../../src/session/idp-names.js';

const session = (provider: string, over: Partial<{ sid: string; sub: string; idpSid: string; createdAt: number }> = {}) =>
  ({ sid: `psid-${provider}`, sub: 'alice', idpSid: 'idp-sid-1', createdAt: 1_000, provider, ...over });

test('a sub or sid revocation ends that provider\'s sessions only', async () => {
  const list = new RevocationList(60_000, () => 2_000, undefined, undefined, undefined, 'corp');
  await list.revoke({ sub: 'alice', provider: 'partners' });
  assert.equal(list.isRevoked(session('partners')), true);
  assert.equal(list.isRevoked(session('corp')), false, 'corp\'s alice lives on');
  await list.revoke({ sid: 'idp-sid-9', provider: 'corp' });
  assert.equal(list.isRevoked(session('corp', { idpSid: 'idp-sid-9', sub: 'bob' })), true);
  assert.equal(list.isRevoked(session('partners', { idpSid: 'idp-sid-9', sub: 'bob' })), false);
});

test('the first provider uses the unscoped keys: an entry from before several providers ends its sessions, not the others\'', async () => {
  // An entry as an older replica (one provider, no ids) shares it through Redis: `sub:alice`.
  const shared: Record<string, number> = { 'sub:alice': 2_000 };
  const list = new RevocationList(60_000, () => 3_000, { add: async (e) => { Object.assign(shared, e); }, all: async () => ({ ...shared }) }, undefined, undefined, 'corp');
  assert.equal(await list.syncNow(), true);
  assert.equal(list.isRevoked(session('corp')), true, 'the first provider\'s alice');
  assert.equal(list.isRevoked(session('partners')), false);
  // What this replica writes for the first provider, an older one reads the same way.
  await list.revoke({ sub: 'bob', provider: 'corp' });
  assert.ok('sub:bob' in shared);
  await list.revoke({ sub: 'carol', provider: 'partners' });
  assert.ok('sub@partners:carol' in shared);
  assert.equal(idpNameKey('sid', 'x', undefined, 'corp'), 'sid:x', 'no provider named: the first');
});

test('admin revoke and list name the provider (default: the first); an unknown one is refused', async () => {
  const { runAdminOp } = await import('../../src/session/admin.js');
  const revoked: unknown[] = [];
  const listed: unknown[] = [];
  const noop = () => {};
  const log = { info: noop, warn: noop, error: noop, debug: noop, child: () => log } as never;
  const runtime = {
    config: { session: { idleTimeoutMs: 1000, absoluteTimeoutMs: 2000 }, providers: [{ id: 'corp' }, { id: 'partners' }] },
    log,
    sessions: { storeKind: 'redis' as const },
    redis: { listBySub: async (sub: string, provider?: string) => { listed.push([sub, provider]); return []; } },
    revokeSessions: async (r: unknown) => { revoked.push(r); },
  };
  assert.equal('status' in await runAdminOp(runtime, { kind: 'revoke', body: { sub: 'alice', provider: 'partners' }, ip: undefined }), true);
  assert.equal('status' in await runAdminOp(runtime, { kind: 'revoke', body: { sid: 's1' }, ip: undefined }), true);
  assert.deepEqual(revoked, [{ sub: 'alice', provider: 'partners' }, { sid: 's1', provider: 'corp' }]);
  const bad = await runAdminOp(runtime, { kind: 'revoke', body: { sub: 'alice', provider: 'nope' }, ip: undefined });
  assert.equal('error' in bad && bad.error, 'ERR_ADMIN_BAD_REQUEST');
  assert.equal(revoked.length, 2);
  await runAdminOp(runtime, { kind: 'list', query: { sub: 'alice', provider: 'partners' } });
  assert.deepEqual(listed.at(-1), ['alice', 'partners']);
});
