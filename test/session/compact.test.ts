// Compact sessions (issue 13, item 9): the codec compresses large values before sealing (old `v1.`
// values still open), and a session keeps only the claims the configuration reads.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { SessionCodec, COMPRESS_MIN } from '../../src/session/codec.js';
import { claimCompactor, claimsToKeep, SESSION_CLAIMS } from '../../src/session/compact.js';
import { validateConfigObject, formatIssues, type Config } from '../../src/config/index.js';
import { adGroupNames } from '../session/ad-groups.js';

const SECRET = 'compact-secret-compact-secret-0001';

/** A value sealed the way Portcullis did before compression existed (the v1 layout, written out here by hand). */
function sealV1(secret: string, name: string, value: unknown): string {
  const key = Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.alloc(0), 'portcullis session v1', 32));
  const kid = createHash('sha256').update(key).digest().subarray(0, 4);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(name, 'utf8'));
  const ct = Buffer.concat([c.update(Buffer.from(JSON.stringify(value), 'utf8')), c.final()]);
  return `v1.${Buffer.concat([kid, iv, ct, c.getAuthTag()]).toString('base64url')}`;
}

describe('codec compression', () => {
  const codec = new SessionCodec([SECRET]);
  const big = { sub: 'alice', groups: adGroupNames(600), idToken: 'x'.repeat(100) };

  test('a large value is deflated (v2) and round-trips; it is several times smaller than its JSON', () => {
    const sealed = codec.seal('portcullis', big);
    assert.match(sealed, /^v2\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(codec.open('portcullis', sealed), { value: big, stale: false });
    assert.ok(sealed.length * 3 < JSON.stringify(big).length, `${sealed.length} vs ${JSON.stringify(big).length}`);
  });

  test('a small value stays v1, byte layout unchanged (transaction cookies, Redis tickets)', () => {
    const small = { sub: 'alice' };
    assert.ok(JSON.stringify(small).length < COMPRESS_MIN);
    const sealed = codec.seal('portcullis', small);
    assert.match(sealed, /^v1\./);
    assert.deepEqual(codec.open('portcullis', sealed)?.value, small);
  });

  test('cookies sealed before compression existed (v1, uncompressed, even large) still open', () => {
    for (const v of [{ sub: 'alice' }, big]) {
      const old = sealV1(SECRET, 'portcullis', v);
      assert.deepEqual(codec.open('portcullis', old), { value: v, stale: false });
    }
  });

  test('relabelling a v2 value as v1 (or the reverse) never opens; nor under another cookie name', () => {
    const sealed = codec.seal('portcullis', big);
    assert.equal(codec.open('portcullis', `v1.${sealed.slice(3)}`), undefined);
    const v1 = codec.seal('portcullis', { sub: 'alice' });
    assert.equal(codec.open('portcullis', `v2.${v1.slice(3)}`), undefined);
    assert.equal(codec.open('portcullis_txn_x', sealed), undefined);
    assert.equal(codec.open('portcullis', 'v3.AAAA'), undefined);
  });

  test('a tampered v2 value is undefined, never a throw', () => {
    const sealed = codec.seal('portcullis', big);
    const raw = Buffer.from(sealed.slice(3), 'base64url');
    for (const at of [0, 4, 20, raw.length - 1]) {
      const copy = Buffer.from(raw);
      copy[at] = copy[at]! ^ 1;
      assert.equal(codec.open('portcullis', `v2.${copy.toString('base64url')}`), undefined, `byte ${at}`);
    }
  });

  test('key rotation works for v2 values too (stale when opened with an older secret)', () => {
    const sealed = new SessionCodec([SECRET]).seal('portcullis', big);
    const r = new SessionCodec(['a-newer-secret-a-newer-secret-0002', SECRET]).open('portcullis', sealed);
    assert.equal(r?.stale, true);
    assert.deepEqual(r?.value, big);
  });
});

function config(routes: Array<Record<string, unknown>>): Config {
  const r = validateConfigObject({
    publicUrl: 'https://proxy.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'p', clientSecret: 's' },
    session: { secrets: ['x'.repeat(40)] },
    routes: routes.map((x) => ({ upstream: 'http://127.0.0.1:1', ...x })),
  }, {});
  if (!r.ok) throw new Error(formatIssues(r.issues));
  return r.config;
}

const IDP_CLAIMS = {
  sub: 'alice', sid: 'idp-sid', iss: 'https://idp.example.com', aud: 'p', azp: 'p', exp: 2, iat: 1, auth_time: 1, acr: '1', amr: ['pwd'],
  email: 'alice@example.com', email_verified: true, name: 'Alice', preferred_username: 'alice', groups: ['admin'],
  nonce: 'n', at_hash: 'h', c_hash: 'c', department: 'Finance', employee_id: '0042', roles: ['x'],
  realm_access: { roles: ['ops'] }, 'https://example.com/claims': { tenant: 't1' }, hasgroups: true, wids: ['w'],
  // Entra ID group overage: the marker is kept (a refresh fetches the groups again), the source URL is not.
  _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.windows.net/t/users/u/getMemberObjects' } },
};

describe('claims a session keeps', () => {
  test('with rules on groups and email only: the session claims and identity-header claims, nothing else', () => {
    const keep = claimsToKeep(config([
      { name: 'admin', match: { path: '/admin' }, allow: { all: [{ claim: 'groups', contains: 'admin' }, { claim: 'email', endsWith: '@example.com' }] } },
      { name: 'app', match: { path: '/' } },
    ]));
    assert.ok(keep);
    const out = claimCompactor(keep)(IDP_CLAIMS);
    assert.deepEqual(Object.keys(out).sort(), [...SESSION_CLAIMS].sort());
    for (const k of SESSION_CLAIMS) assert.deepEqual(out[k], (IDP_CLAIMS as Record<string, unknown>)[k]);
  });

  test('every leaf of a rule counts, however all/any/not would short-circuit; nested paths keep their top-level claim', () => {
    const keep = claimsToKeep(config([{
      name: 'app', match: { path: '/' },
      allow: { any: [
        { claim: 'department', equals: 'Finance' },
        { all: [{ claim: 'realm_access.roles', contains: 'ops' }, { not: { claim: 'employee_id', exists: false } }] },
        { claim: ['https://example.com/claims', 'tenant'], in: ['t1'] },
      ] },
    }]))!;
    for (const c of ['department', 'realm_access', 'employee_id', 'https://example.com/claims']) assert.ok(keep.has(c), c);
    const out = claimCompactor(keep)(IDP_CLAIMS);
    assert.deepEqual(out.realm_access, { roles: ['ops'] });
    assert.equal(out.roles, undefined);
    assert.equal(out.nonce, undefined);
  });

  test('header templates (alternatives too), Grafana roles and the assertion count', () => {
    const keep = claimsToKeep(config([
      { name: 'a', match: { path: '/a' }, headers: { 'X-Dept': 'dept={department}', 'X-Who': '{employee_id|preferred_username}' } },
      { name: 'g', match: { path: '/g' }, preset: 'grafana', grafanaRoles: { Admin: { claim: 'wids', contains: 'w' } } },
      { name: 's', match: { path: '/s' }, assertion: true },
    ]))!;
    for (const c of ['department', 'employee_id', 'preferred_username', 'wids', 'name', 'email', 'groups', 'sub']) assert.ok(keep.has(c), c);
    assert.ok(!keep.has('roles') && !keep.has('hasgroups'));
  });

  test('the compacted claims are a copy; the input is untouched', () => {
    const input = { ...IDP_CLAIMS };
    const out = claimCompactor(claimsToKeep(config([{ name: 'app', match: { path: '/' } }])))(input);
    assert.notEqual(out, input);
    assert.deepEqual(input, IDP_CLAIMS);
  });
});
