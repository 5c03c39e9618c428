// Request-target normalisation: every spelling of a path must reach the route it really names.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeTarget, sameAuthority } from '../../src/routing/normalize.js';

function pathOf(raw: string): string {
  const r = normalizeTarget(raw);
  assert.ok(r.ok, `${JSON.stringify(raw)} rejected: ${r.ok ? '' : r.reason}`);
  return r.path;
}

function reasonOf(raw: string): string {
  const r = normalizeTarget(raw);
  assert.ok(!r.ok, `${JSON.stringify(raw)} should be rejected, got ${r.ok ? r.path : ''}`);
  return r.reason;
}

describe('normalised paths', () => {
  const table: Array<[string, string]> = [
    // the contract's examples
    ['/public/../admin', '/admin'],
    ['/%61dmin', '/admin'],
    ['//admin', '/admin'],
    ['/a/./b/', '/a/b/'],
    ['/public/x%23/y', '/public/x%23/y'],
    ['/%2e%2e/admin', '/admin'],
    // already canonical (fast path)
    ['/', '/'],
    ['/admin', '/admin'],
    ['/admin/', '/admin/'],
    ['/a/b/c.txt', '/a/b/c.txt'],
    ['/.well-known/openid-configuration', '/.well-known/openid-configuration'],
    ['/a/...', '/a/...'],
    ['/a/..b/c', '/a/..b/c'],
    ['/a;jsessionid=1/b', '/a;jsessionid=1/b'],
    ["/a/!$&'()*+,=:@~_-", "/a/!$&'()*+,=:@~_-"],
    // dot segments, clamped at the root
    ['/a/b/../../../../c', '/c'],
    ['/..', '/'],
    ['/../', '/'],
    ['/.', '/'],
    ['/./', '/'],
    ['/a/..', '/'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/./', '/a/b/'],
    ['/%2E%2E/admin', '/admin'],
    ['/.%2e/admin', '/admin'],
    ['/%2e./admin', '/admin'],
    ['/%2e/admin', '/admin'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public/%2E%2e/%2E%2E/admin', '/admin'],
    ['/public/.%2E/admin/', '/admin/'],
    // duplicate slashes
    ['///a////b//', '/a/b/'],
    ['/public//..//admin', '/admin'],
    ['//', '/'],
    // unreserved decoding; everything else kept, hex uppercased
    ['/%7euser', '/~user'],
    ['/%41%42%43%2D%5F', '/ABC-_'],
    ['/a%20b', '/a%20b'],
    ['/a%3fb', '/a%3Fb'],
    ['/a%3bb', '/a%3Bb'],
    ['/a%25b', '/a%25b'],
    ['/a%252e%252e/b', '/a%252e%252e/b'], // %25 is '%'; the "2e" after it is literal text
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/a%0ab', '/a%0Ab'],
    // ;params stay (the matcher ignores them) unless they hide a dot segment
    ['/admin;x', '/admin;x'],
    ['/admin;x/../b', '/b'],
    ['/a/...;x', '/a/...;x'],
  ];
  for (const [raw, expected] of table) {
    test(`${raw} → ${expected}`, () => assert.equal(pathOf(raw), expected));
  }
});

describe('rejected paths', () => {
  const table: Array<[string, RegExp]> = [
    ['/a%2fb', /encoded slash/],
    ['/a%2Fb', /encoded slash/],
    ['/public/..%2fadmin', /encoded slash/],
    ['/a%5Cb', /encoded backslash/],
    ['/a%5cb', /encoded backslash/],
    ['/a%00b', /encoded null/],
    ['/a%zz', /malformed percent-encoding/],
    ['/a%', /malformed percent-encoding/],
    ['/a%4', /malformed percent-encoding/],
    ['/a%4g', /malformed percent-encoding/],
    ['/a%%41', /malformed percent-encoding/],
    ['/public/..;/admin', /dot segment with parameters/],
    ['/public/.;/admin', /dot segment with parameters/],
    ['/..;x/admin', /dot segment with parameters/],
    ['/public/%2e%2e;/admin', /dot segment with parameters/],
    ['/public/..;', /dot segment with parameters/],
    ['/a\\b', /backslash/],
    ['/..\\admin', /backslash/],
    ['/a\tb', /control/],
    ['/a\nb', /control/],
    ['/a\rb', /control/],
    ['/a\x00b', /control/],
    ['/a\x7fb', /control/],
    ['/a b', /space/],
    ['/a#b', /fragment/],
    ['/adm\u00efn', /non-ASCII/],
    ['/\u2215admin', /non-ASCII/],
    ['/\u{1F600}', /non-ASCII/],
    ['admin', /must start with \//],
    ['', /must start with \//],
    ['*', /asterisk/],
    ['..', /must start with \//],
    ['ftp://host/a', /must start with \//],
    ['http://user@host/a', /invalid host/],
    ['http:///a', /invalid host/],
    ['http://host/a%2fb', /encoded slash/],
  ];
  for (const [raw, reason] of table) {
    test(`${JSON.stringify(raw)} rejected`, () => assert.match(reasonOf(raw), reason));
  }

  test('reasons are short plain words', () => {
    for (const [raw] of table) assert.ok(reasonOf(raw).length < 60);
  });
});

describe('query string', () => {
  test('is split off and kept verbatim', () => {
    assert.deepEqual(normalizeTarget('/x?next=/../a'), { ok: true, path: '/x', query: '?next=/../a' });
  });
  test('does not take part in normalisation even when odd', () => {
    assert.deepEqual(normalizeTarget('/a/../b?%2f=%zz&x=..%5C'), { ok: true, path: '/b', query: '?%2f=%zz&x=..%5C' });
  });
  test('empty query keeps its ?', () => {
    assert.deepEqual(normalizeTarget('/a?'), { ok: true, path: '/a', query: '?' });
  });
  test('no query is the empty string', () => {
    assert.deepEqual(normalizeTarget('/a'), { ok: true, path: '/a', query: '' });
  });
  test('a ? inside an encoded path segment stays in the path', () => {
    assert.deepEqual(normalizeTarget('/a%3F/b?c'), { ok: true, path: '/a%3F/b', query: '?c' });
  });
});

describe('absolute-form targets', () => {
  test('expose the authority, lowercased', () => {
    assert.deepEqual(normalizeTarget('http://Apps.Example.com:8080/public/../admin?x=1'), {
      ok: true,
      path: '/admin',
      query: '?x=1',
      authority: 'apps.example.com:8080',
    });
  });
  test('https and an empty path', () => {
    assert.deepEqual(normalizeTarget('HTTPS://example.com'), { ok: true, path: '/', query: '', authority: 'example.com' });
    assert.deepEqual(normalizeTarget('http://example.com?q'), { ok: true, path: '/', query: '?q', authority: 'example.com' });
  });
  test('ipv6 literal', () => {
    const r = normalizeTarget('http://[::1]:8080/a');
    assert.ok(r.ok);
    assert.equal(r.authority, '[::1]:8080');
  });
  test('origin-form has no authority', () => {
    const r = normalizeTarget('/a');
    assert.ok(r.ok);
    assert.equal(r.authority, undefined);
  });
  test('//host/path is origin-form, not a scheme-relative URL', () => {
    const r = normalizeTarget('//evil.com/admin');
    assert.ok(r.ok);
    assert.equal(r.path, '/evil.com/admin');
    assert.equal(r.authority, undefined);
  });

  test('sameAuthority compares host and port, case and trailing dot aside', () => {
    assert.equal(sameAuthority('apps.example.com', 'Apps.Example.COM'), true);
    assert.equal(sameAuthority('apps.example.com', 'apps.example.com.'), true);
    assert.equal(sameAuthority('apps.example.com:8080', 'apps.example.com:8080'), true);
    assert.equal(sameAuthority('[::1]:8080', '[::1]:8080'), true);
    assert.equal(sameAuthority('apps.example.com', 'evil.com'), false);
    assert.equal(sameAuthority('apps.example.com:8080', 'apps.example.com'), false);
    assert.equal(sameAuthority('apps.example.com:8080', 'apps.example.com:9090'), false);
    assert.equal(sameAuthority('apps.example.com', undefined), false);
    assert.equal(sameAuthority('apps.example.com', ''), false);
  });
});

describe('properties', () => {
  const samples = [
    '/', '/a', '/a/b/', '/%61/./b/../c//d', '/x/%2E%2E/%2e/y/', '/a;b/c', '/%7E/%41', '/a/b/../../..', '/a%20b/%c3%a9/',
  ];
  test('normalisation is idempotent', () => {
    for (const raw of samples) {
      const once = pathOf(raw);
      assert.equal(pathOf(once), once, raw);
    }
  });
  test('output never holds a dot segment, an empty segment, or a decodable unreserved escape', () => {
    for (const raw of samples) {
      const p = pathOf(raw);
      assert.ok(p.startsWith('/'));
      assert.ok(!/\/\.\.?(\/|$)/.test(p), p);
      assert.ok(!p.slice(1, -1).includes('//'), p);
      assert.ok(!/%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2[DE]|5F|7E)/i.test(p), p);
      assert.ok(!/%[0-9A-F]?[a-f]/.test(p), p);
    }
  });
  test('long paths are handled in linear time', () => {
    const long = '/' + 'a/'.repeat(20_000) + '..%2e/'.repeat(5) + 'x';
    const t = performance.now();
    const r = normalizeTarget(long);
    assert.ok(r.ok);
    const evil = '/' + 'a'.repeat(100_000) + '\\';
    assert.ok(!normalizeTarget(evil).ok);
    assert.ok(performance.now() - t < 500);
  });
});
