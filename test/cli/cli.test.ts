// `portcullis check` and `portcullis explain`: output and exit codes, no IdP needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/main.js';

async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  const saved = { ...process.env };
  Object.assign(process.env, env);
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    const code = await main(args);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
    process.env = saved;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-'));
const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };

const GOOD = file('good.yaml', `
publicUrl: https://apps.example.com
oidc: { issuer: https://idp.example.com/realms/main, clientId: portcullis, clientSecret: \${CS} }
session: { secrets: ["${'s'.repeat(40)}"] }
routes:
  - name: public
    match: { path: /public }
    upstream: http://127.0.0.1:3000
    auth: public
  - name: admin
    match: { path: /admin, methods: [GET, POST] }
    upstream: http://127.0.0.1:3000
    allow:
      any:
        - { claim: groups, contains: admin }
        - all:
            - { claim: email, endsWith: "@example.com" }
            - { claim: email_verified, equals: true }
  - name: app
    match: { path: / }
    upstream: http://127.0.0.1:3000
`);

test('check: a good config prints "config OK: N routes" and exits 0', async () => {
  const r = await run(['check', '--config', GOOD], { CS: 'secret' });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, 'config OK: 3 routes');
});

test('check: every problem with its key path, a suggestion for typos, exit 1', async () => {
  const bad = file('bad.yaml', `
publicUrl: https://apps.example.com
oidc: { issuer: https://idp.example.com, clientId: portcullis, clientSecret: \${NOT_SET} }
session: { secrets: [short] }
routes:
  - name: a
    upstream: http://127.0.0.1:3000
    allow: { any: [ { claim: groups, contain: admin } ] }
  - name: b
    upstrem: http://127.0.0.1:3000
`);
  const r = await run(['check', '--config', bad]);
  assert.equal(r.code, 1);
  assert.match(r.err, /oidc\.clientSecret: environment variable NOT_SET is not set/);
  assert.match(r.err, /session\.secrets\[0\]: is 5 bytes/);
  assert.match(r.err, /routes\[0\]\.allow\.any\[0\].*unknown operator "contain" — did you mean "contains"\?/);
  assert.match(r.err, /routes\[1\]\.upstrem: unknown key — did you mean "upstream"\?/);
  assert.match(r.err, /routes\[1\]\.upstream: is required/);
});

test('check: a missing file and broken YAML are errors, not crashes', async () => {
  assert.equal((await run(['check', '--config', join(dir, 'nope.yaml')])).code, 1);
  const r = await run(['check', '--config', file('broken.yaml', 'routes: [\n  - a: b\n')]);
  assert.equal(r.code, 1);
  assert.match(r.err, /YAML/);
});

test('explain: allow, with the matched route, the normalised path and the rule tree', async () => {
  const claims = file('alice.json', JSON.stringify({ sub: 'alice', groups: ['admin'], email: 'alice@example.com' }));
  const r = await run(['explain', '--config', GOOD, '--url', 'https://apps.example.com/public/../admin/x?q=1', '--claims', claims], { CS: 'x' });
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /normalised: \/admin\/x/);
  assert.match(r.out, /route:\s+#1 "admin"/);
  assert.match(r.out, /✓ groups contains "admin"/);
  assert.match(r.out, /decision:\s+ALLOW \(claim-authorized\)/);
});

test('explain: deny exits 3 and marks the failing leaves', async () => {
  const claims = file('bob.json', JSON.stringify({ sub: 'bob', groups: 'admin', email: 'bob@evil.com@example.com', email_verified: true }));
  const r = await run(['explain', '--config', GOOD, '--url', 'https://apps.example.com/%61dmin', '--claims', claims], { CS: 'x' });
  assert.equal(r.code, 3, r.out + r.err);
  assert.match(r.out, /✗ groups contains "admin"/, 'a string groups claim is not an array');
  assert.match(r.out, /✗ email endsWith "@example.com"/, 'two @ never pass a domain rule');
  assert.match(r.out, /decision:\s+DENY \(claim-unauthorized\)/);
});

test('explain: no route → exit 3; signed out on a required route → deny; bad path → deny; bad args → exit 1', async () => {
  const env = { CS: 'x' };
  const onlyAdmin = file('only-admin.yaml', `
publicUrl: https://apps.example.com
oidc: { issuer: https://idp.example.com, clientId: p, clientSecret: s }
session: { secrets: ["${'s'.repeat(40)}"] }
routes: [ { name: admin, match: { path: /admin }, upstream: "http://127.0.0.1:1" } ]
`);
  assert.equal((await run(['explain', '--config', onlyAdmin, '--url', 'https://apps.example.com/other'], env)).code, 3);
  const signedOut = await run(['explain', '--config', GOOD, '--url', 'https://apps.example.com/'], env);
  assert.equal(signedOut.code, 3);
  assert.match(signedOut.out, /user-unauthenticated/);
  const pub = await run(['explain', '--config', GOOD, '--url', 'https://apps.example.com/public/x'], env);
  assert.equal(pub.code, 0);
  const badPath = await run(['explain', '--config', GOOD, '--url', 'https://apps.example.com/a%2fb'], env);
  assert.equal(badPath.code, 3);
  assert.match(badPath.out, /400/);
  assert.equal((await run(['explain', '--config', GOOD], env)).code, 1, 'missing --url');
  assert.equal((await run(['explain', '--config', GOOD, '--url', 'not-a-url'], env)).code, 1);
  assert.equal((await run(['explain', '--config', GOOD, '--url', 'https://a/', '--claims', join(dir, 'none.json')], env)).code, 1);
  assert.equal((await run(['frobnicate'])).code, 1);
});
