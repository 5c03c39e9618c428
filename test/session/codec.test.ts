// SessionCodec: AES-256-GCM seal/open, the cookie name bound as associated data, key rotation, and
// "anything that does not authenticate is undefined, never a throw".
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { SessionCodec } from '../../src/session/codec.js';

const OLD = 'old-secret-old-secret-old-secret-0001';
const NEW = 'new-secret-new-secret-new-secret-0002';
const VALUE = { sub: 'alice', groups: ['admin'], n: 42, nested: { ok: true } };

/** Layout after `v1.`: kid(4) | iv(12) | ciphertext | tag(16). */
const REGIONS = { kid: 0, iv: 4, ciphertext: 16, tag: -1 } as const;

function flipByte(sealed: string, at: number): string {
  const raw = Buffer.from(sealed.slice(3), 'base64url');
  const i = at < 0 ? raw.length + at : at;
  raw[i] = raw[i]! ^ 0x01;
  return `v1.${raw.toString('base64url')}`;
}

describe('seal and open', () => {
  test('round-trips a JSON value', () => {
    const codec = new SessionCodec([NEW]);
    const sealed = codec.seal('portcullis', VALUE);
    assert.match(sealed, /^v1\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(codec.open('portcullis', sealed), { value: VALUE, stale: false });
  });

  test('a second codec with the same secret opens it (no per-process state)', () => {
    const sealed = new SessionCodec([NEW]).seal('portcullis', VALUE);
    assert.deepEqual(new SessionCodec([NEW]).open('portcullis', sealed)?.value, VALUE);
  });

  test('the plaintext does not appear in the sealed value', () => {
    const sealed = new SessionCodec([NEW]).seal('portcullis', { email: 'alice@example.com' });
    assert.ok(!sealed.includes('alice'));
    assert.ok(!Buffer.from(sealed.slice(3), 'base64url').toString('latin1').includes('alice'));
  });

  test('two seals of the same value differ (fresh IV each time)', () => {
    const codec = new SessionCodec([NEW]);
    const a = codec.seal('portcullis', VALUE);
    const b = codec.seal('portcullis', VALUE);
    assert.notEqual(a, b);
    const iv = (s: string) => Buffer.from(s.slice(3), 'base64url').subarray(4, 16).toString('hex');
    assert.notEqual(iv(a), iv(b));
    const ivs = new Set(Array.from({ length: 200 }, () => iv(codec.seal('portcullis', VALUE))));
    assert.equal(ivs.size, 200);
  });

  test('sealBytes/openBytes round-trip arbitrary bytes', () => {
    const codec = new SessionCodec([NEW]);
    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    assert.deepEqual(codec.openBytes('x', codec.sealBytes('x', bytes)), { value: bytes, stale: false });
  });

  test('at least one secret is required', () => {
    assert.throws(() => new SessionCodec([]), /at least one session secret/);
  });
});

describe('associated data binds the cookie name', () => {
  test('a value sealed for one cookie does not open as another', () => {
    const codec = new SessionCodec([NEW]);
    const sealed = codec.seal('portcullis_txn_abc', VALUE);
    assert.equal(codec.open('portcullis', sealed), undefined);
    assert.equal(codec.open('portcullis_txn_abd', sealed), undefined);
    assert.deepEqual(codec.open('portcullis_txn_abc', sealed)?.value, VALUE);
  });

  test('a different purpose derives different keys from the same secret', () => {
    const sealed = new SessionCodec([NEW], 'portcullis session v1').seal('portcullis', VALUE);
    assert.equal(new SessionCodec([NEW], 'something else').open('portcullis', sealed), undefined);
  });
});

describe('tampering and garbage are undefined, never a throw', () => {
  const codec = new SessionCodec([NEW]);
  const sealed = codec.seal('portcullis', VALUE);

  for (const [region, at] of Object.entries(REGIONS)) {
    test(`one flipped bit in the ${region}`, () => {
      assert.equal(codec.open('portcullis', flipByte(sealed, at)), undefined);
    });
  }

  test('every single-byte flip fails', () => {
    const raw = Buffer.from(sealed.slice(3), 'base64url');
    for (let i = 0; i < raw.length; i++) assert.equal(codec.open('portcullis', flipByte(sealed, i)), undefined, `byte ${i}`);
  });

  const garbage: Array<[string, string]> = [
    ['empty', ''],
    ['prefix only', 'v1.'],
    ['wrong version', `v2.${sealed.slice(3)}`],
    ['no version', sealed.slice(3)],
    ['truncated by one character', sealed.slice(0, -1)],
    ['truncated to half', sealed.slice(0, Math.floor(sealed.length / 2))],
    ['shorter than kid+iv+tag', `v1.${Buffer.alloc(31).toString('base64url')}`],
    ['exactly kid+iv+tag, zeros', `v1.${Buffer.alloc(32).toString('base64url')}`],
    ['extra bytes appended', `${sealed}AAAA`],
    ['not base64url', 'v1.!!!!$$$$%%%%'],
    ['a JWT', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.'],
    ['over 64 KiB', `v1.${'A'.repeat(70_000)}`],
  ];
  for (const [what, value] of garbage) {
    test(what, () => {
      assert.equal(codec.open('portcullis', value), undefined);
    });
  }

  test('non-strings', () => {
    for (const v of [undefined, null, 42, {}, ['v1.x']]) assert.equal(codec.open('portcullis', v as unknown as string), undefined);
  });

  test('authentic bytes that are not JSON', () => {
    assert.equal(codec.open('portcullis', codec.sealBytes('portcullis', Buffer.from('not json {'))), undefined);
  });
});

describe('key rotation', () => {
  test('the first secret seals; older secrets open and report stale', () => {
    const before = new SessionCodec([OLD]).seal('portcullis', VALUE);
    const rotated = new SessionCodec([NEW, OLD]);
    assert.deepEqual(rotated.open('portcullis', before), { value: VALUE, stale: true });
    const after = rotated.seal('portcullis', VALUE);
    assert.deepEqual(rotated.open('portcullis', after), { value: VALUE, stale: false });
    assert.deepEqual(new SessionCodec([NEW]).open('portcullis', after)?.value, VALUE);
    assert.equal(new SessionCodec([OLD]).open('portcullis', after), undefined);
  });

  test('a removed secret no longer opens its values', () => {
    const before = new SessionCodec([OLD]).seal('portcullis', VALUE);
    assert.equal(new SessionCodec([NEW]).open('portcullis', before), undefined);
  });

  test('a value naming a known kid but sealed with another key does not open', () => {
    // Same key id as NEW (first 4 bytes), rest from a value sealed with OLD.
    const fromNew = Buffer.from(new SessionCodec([NEW]).seal('portcullis', VALUE).slice(3), 'base64url');
    const fromOld = Buffer.from(new SessionCodec([OLD]).seal('portcullis', VALUE).slice(3), 'base64url');
    const spliced = Buffer.concat([fromNew.subarray(0, 4), fromOld.subarray(4)]);
    assert.equal(new SessionCodec([NEW, OLD]).open('portcullis', `v1.${spliced.toString('base64url')}`), undefined);
  });

  test('the same secret listed twice is harmless', () => {
    const codec = new SessionCodec([NEW, NEW]);
    assert.deepEqual(codec.open('portcullis', codec.seal('portcullis', VALUE)), { value: VALUE, stale: false });
  });
});
