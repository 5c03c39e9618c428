// oidc.clientKeysFile (private_key_jwt): every unusable file or key is a config error at its key
// path, found at start — not at the first sign-in — and nothing private is ever echoed back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { publicJwk } from '../../src/config/client-keys.js';
import { validateConfigObject, formatIssues, type ConfigIssue } from '../../src/config/index.js';

const SECRET = 'x'.repeat(40);
const ec = (curve = 'P-256') => generateKeyPairSync('ec', { namedCurve: curve }).privateKey;
const rsa = (bits = 2048) => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;
const jwk = (k: ReturnType<typeof ec>, extra: Record<string, unknown> = {}) => ({ ...k.export({ format: 'jwk' }), ...extra });
const pem = (k: ReturnType<typeof ec>) => String(k.export({ format: 'pem', type: 'pkcs8' }));

function check(oidc: Record<string, unknown>, files: Record<string, string>) {
  const readFile = (p: string) => { if (!(p in files)) throw Object.assign(new Error('nope'), { code: 'ENOENT' }); return files[p]!; };
  return validateConfigObject({
    publicUrl: 'https://apps.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'c', ...oidc },
    session: { secrets: [SECRET] },
    routes: [{ name: 'app', upstream: 'http://127.0.0.1:3000' }],
  }, {}, { readFile });
}
const PKJWT = { tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: '/k/client' };

function issuesOf(r: ReturnType<typeof check>): ConfigIssue[] {
  assert.ok(!r.ok, 'refused');
  return r.issues;
}

test('private_key_jwt with a PEM EC key or a JWK Set: valid, no client secret needed, the keys compiled in file order', () => {
  const a = ec();
  const b = rsa();
  const fromPem = check(PKJWT, { '/k/client': pem(a) });
  assert.ok(fromPem.ok, fromPem.ok ? '' : formatIssues(fromPem.issues));
  assert.equal(fromPem.config.providers[0]!.clientSecret, '');
  assert.equal(fromPem.config.providers[0]!.clientKeys.length, 1);
  assert.equal(fromPem.config.providers[0]!.clientKeys[0]!.alg, 'ES256');
  assert.equal(fromPem.config.providers[0]!.clientKeys[0]!.kid, undefined, 'PEM: kid derived later (RFC 7638)');
  const set = check(PKJWT, { '/k/client': JSON.stringify({ keys: [jwk(b, { kid: 'one', alg: 'PS256' }), jwk(a, { kid: 'two' })] }) });
  assert.ok(set.ok, set.ok ? '' : formatIssues(set.issues));
  assert.deepEqual(set.config.providers[0]!.clientKeys.map((k) => [k.kid, k.alg]), [['one', 'PS256'], ['two', 'ES256']]);
  const twoPem = check(PKJWT, { '/k/client': `${pem(a)}\n${pem(b)}` });
  assert.ok(twoPem.ok && twoPem.config.providers[0]!.clientKeys.length === 2);
});

test('private_key_jwt needs clientKeysFile and takes no client secret; clientKeysFile needs private_key_jwt — each at its key path', () => {
  const noFile = issuesOf(check({ tokenEndpointAuthMethod: 'private_key_jwt' }, {}));
  assert.ok(noFile.some((i) => i.path === 'oidc.clientKeysFile' && /required/.test(i.message)), formatIssues(noFile));
  assert.ok(!noFile.some((i) => i.path === 'oidc.clientSecret'), 'no secret asked for');
  const withSecret = issuesOf(check({ ...PKJWT, clientSecret: 'leftover' }, { '/k/client': pem(ec()) }));
  assert.ok(withSecret.some((i) => i.path === 'oidc.clientSecret' && /must not be set/.test(i.message)), formatIssues(withSecret));
  const withSecretFile = issuesOf(check({ ...PKJWT, clientSecretFile: '/s/x' }, { '/k/client': pem(ec()), '/s/x': 'y' }));
  assert.ok(withSecretFile.some((i) => i.path === 'oidc.clientSecretFile'), formatIssues(withSecretFile));
  const unused = issuesOf(check({ clientSecret: 's', clientKeysFile: '/k/client' }, { '/k/client': pem(ec()) }));
  assert.ok(unused.some((i) => i.path === 'oidc.clientKeysFile' && /only used with/.test(i.message)), formatIssues(unused));
  const basic = issuesOf(check({}, {}));
  assert.ok(basic.some((i) => i.path === 'oidc.clientSecret' && /required/.test(i.message)), 'the secret is still required otherwise');
});

test('unusable key files are config errors at oidc.clientKeysFile, and never echo a private value', () => {
  const p384 = ec('P-384');
  const rsa1024 = rsa(1024);
  const { d: _d, ...publicEc } = jwk(ec()) as Record<string, unknown>;
  const hmac = { kty: 'oct', k: randomBytes(32).toString('base64url') };
  const ed = generateKeyPairSync('ed25519').privateKey;
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['no file', undefined, /cannot read .*ENOENT/],
    ['empty file', '', /neither a JWK Set nor PEM/],
    ['no keys', JSON.stringify({ keys: [] }), /holds no keys/],
    ['not JSON', '{ "keys": [', /not valid JSON/],
    ['public JWK only', JSON.stringify({ keys: [publicEc] }), /public key only/],
    ['public PEM only', String(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' })), /public key only/],
    ['HMAC (oct) key', JSON.stringify({ keys: [hmac] }), /shared \(oct, HMAC\) key/],
    ['RSA 1024', pem(rsa1024), /RSA key of 1024 bits; at least 2048/],
    ['EC P-384', JSON.stringify({ keys: [jwk(p384)] }), /curve secp384r1; only P-256/],
    ['Ed25519', pem(ed), /ed25519 key/],
    ['alg that does not fit', JSON.stringify({ keys: [jwk(ec(), { alg: 'RS256' })] }), /alg "RS256" with an EC P-256 key/],
    ['use: enc', JSON.stringify({ keys: [jwk(ec(), { use: 'enc' })] }), /use is "enc"/],
    ['repeated kid', JSON.stringify({ keys: [jwk(ec(), { kid: 'k' }), jwk(ec(), { kid: 'k' })] }), /kid "k" appears twice/],
    ['broken PEM', '-----BEGIN PRIVATE KEY-----\nAAAA\n', /not terminated/],
  ];
  for (const [what, text, want] of cases) {
    const issues = issuesOf(check(PKJWT, text === undefined ? {} : { '/k/client': text }));
    const here = issues.filter((i) => i.path === 'oidc.clientKeysFile');
    assert.ok(here.some((i) => want.test(i.message)), `${what}: ${formatIssues(issues)}`);
    const dump = formatIssues(issues);
    for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
      const values = (text ?? '').match(new RegExp(`"${m}":"([^"]{8,})"`, 'g')) ?? [];
      for (const v of values) assert.ok(!dump.includes(v.split('"')[3]!), `${what}: no private member ${m} in the message`);
    }
  }
});

// A self-signed certificate for a test key, made once with openssl (test/signin/fixtures): Entra ID
// identifies certificate credentials by the certificate's thumbprint in the assertion header.
const fixture = (name: string) => readFileSync(new URL(`../signin/fixtures/${name}`, import.meta.url), 'utf8');
const CERT_KEY = fixture('entra-client-key.pem');
const CERT = fixture('entra-client-cert.pem');
const OTHER_CERT = fixture('other-cert.pem');

test('a key with its certificate (PEM key + CERTIFICATE, or a JWK with x5c): thumbprints x5t and x5t#S256 of the DER, published with x5c', () => {
  const der = new X509Certificate(CERT).raw;
  const want = { x5c: [der.toString('base64')], x5t: createHash('sha1').update(der).digest('base64url'), x5tS256: createHash('sha256').update(der).digest('base64url') };
  for (const [what, text] of [['key then certificate', `${CERT_KEY}\n${CERT}`], ['certificate then key', `${CERT}\n${CERT_KEY}`]] as const) {
    const r = check(PKJWT, { '/k/client': text });
    assert.ok(r.ok, r.ok ? '' : `${what}: ${formatIssues(r.issues)}`);
    const k = r.config.providers[0]!.clientKeys[0]!;
    assert.deepEqual(k.cert, want, what);
    const pub = publicJwk(k, 'kid-1') as Record<string, unknown>;
    assert.deepEqual(pub.x5c, want.x5c);
    assert.equal(pub.x5t, want.x5t);
    assert.equal(pub['x5t#S256'], want.x5tS256);
    for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(pub[m], undefined, `no private member ${m}`);
  }
  // The same as a JWK with x5c.
  const keyJwk = { ...keyJwkOf(CERT_KEY), kid: 'entra', x5c: want.x5c };
  const set = check(PKJWT, { '/k/client': JSON.stringify({ keys: [keyJwk] }) });
  assert.ok(set.ok, set.ok ? '' : formatIssues(set.issues));
  assert.deepEqual(set.config.providers[0]!.clientKeys[0]!.cert, want);
  // A key without a certificate has none (and publishes no x5* members).
  const plain = check(PKJWT, { '/k/client': CERT_KEY });
  assert.ok(plain.ok);
  assert.equal(plain.config.providers[0]!.clientKeys[0]!.cert, undefined);
  assert.equal((publicJwk(plain.config.providers[0]!.clientKeys[0]!, 'k') as Record<string, unknown>).x5t, undefined);
});

test('certificates that do not belong are config errors at oidc.clientKeysFile', () => {
  const der = new X509Certificate(CERT).raw.toString('base64');
  const keyJwk = { ...keyJwkOf(CERT_KEY), kid: 'entra' };
  const cases: Array<[string, string, RegExp]> = [
    ['a certificate only', CERT, /certificates only; private_key_jwt needs the private key too/],
    ['another key\'s certificate', `${CERT_KEY}\n${OTHER_CERT}`, /certificate 1 \(CN=someone-else\): its public key is none of the file's private keys/],
    ['two certificates for one key', `${CERT_KEY}\n${CERT}\n${CERT}`, /certificate 2: key 1 has a certificate already/],
    ['a broken certificate', `${CERT_KEY}\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----`, /certificate 1: not a readable X.509 certificate/],
    ['x5c of another key', JSON.stringify({ keys: [{ ...keyJwk, x5c: [new X509Certificate(OTHER_CERT).raw.toString('base64')] }] }), /x5c: the first certificate is not this key's/],
    ['x5c not a list', JSON.stringify({ keys: [{ ...keyJwk, x5c: der }] }), /x5c must be a list of base64 DER certificates/],
    ['x5c garbage', JSON.stringify({ keys: [{ ...keyJwk, x5c: ['AAAA'] }] }), /x5c: not a readable X.509 certificate/],
    ['x5c with a garbage chain entry', JSON.stringify({ keys: [{ ...keyJwk, x5c: [new X509Certificate(CERT).raw.toString('base64'), 'not a certificate'] }] }), /x5c: chain entry 2: not a readable X.509 certificate/],
  ];
  for (const [what, text, want] of cases) {
    const issues = issuesOf(check(PKJWT, { '/k/client': text }));
    assert.ok(issues.some((i) => i.path === 'oidc.clientKeysFile' && want.test(i.message)), `${what}: ${formatIssues(issues)}`);
  }
});

/** A PEM private key as a JWK (node:crypto). */
function keyJwkOf(pemText: string): Record<string, unknown> {
  return createPrivateKey(pemText).export({ format: 'jwk' }) as Record<string, unknown>;
}
