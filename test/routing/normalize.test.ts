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

// `;` starts a segment's parameters. Tomcat and Jetty strip them from every segment and serve
// what is left, so each spelling must either keep a name the matcher reads the same way (it
// ignores `;params`) or be refused: an empty name would otherwise be matched as `//admin`.
describe('path parameters (;), read as Tomcat and Jetty read them', () => {
  /** raw → normalised path, or the reason it is rejected. */
  const table: Array<[raw: string, expected: string | RegExp]> = [
    // empty name with parameters: Tomcat serves `/admin`; we refuse
    ['/;/admin', /path parameters on an empty segment/],
    ['/;x/admin', /path parameters on an empty segment/],
    ['/;jsessionid=1/admin', /path parameters on an empty segment/],
    ['/;a;b/admin', /path parameters on an empty segment/],
    ['/;', /path parameters on an empty segment/],
    ['/;x', /path parameters on an empty segment/],
    ['/api/;x/secret', /path parameters on an empty segment/],
    ['/foo/;x', /path parameters on an empty segment/],
    ['/foo/;', /path parameters on an empty segment/],
    ['//;x//admin', /path parameters on an empty segment/],
    ['/a/;x/../admin', /path parameters on an empty segment/],
    ['/public/../;x/admin', /path parameters on an empty segment/],
    ['http://h/;x/admin', /path parameters on an empty segment/],
    ['/;x/admin?q', /path parameters on an empty segment/],
    // after `.` / `..` (also spelled with escapes): already refused
    ['/.;x/admin', /dot segment with parameters/],
    ['/.;/admin', /dot segment with parameters/],
    ['/..;x/admin', /dot segment with parameters/],
    ['/public/..;a;b/admin', /dot segment with parameters/],
    ['/public/%2e;x/admin', /dot segment with parameters/],
    ['/public/.%2E;/admin', /dot segment with parameters/],
    // a name before the `;`: kept, the matcher ignores the parameters
    ['/admin;x', '/admin;x'],
    ['/admin;', '/admin;'],
    ['/admin;;', '/admin;;'],
    ['/admin;a;b=c/y', '/admin;a;b=c/y'],
    ['/admin;x/y', '/admin;x/y'],
    ['/admin/y;x', '/admin/y;x'],
    ['/admin;x/', '/admin;x/'],
    ['/a;x=/../b', '/b'],
    ['/adm;x/in', '/adm;x/in'],
    ['/...;x/a', '/...;x/a'],
    ['/%61dmin;x', '/admin;x'],
    // an encoded `;` is not a separator (Tomcat splits on the raw `;` only): it stays encoded
    ['/%3B/admin', '/%3B/admin'],
    ['/%3bx/admin', '/%3Bx/admin'],
    ['/admin%3Bx/y', '/admin%3Bx/y'],
    ['/.%3B/admin', '/.%3B/admin'],
    ['/..%3b/admin', '/..%3B/admin'],
    ['/admin%3B', '/admin%3B'],
  ];
  for (const [raw, expected] of table) {
    if (typeof expected === 'string') test(`${raw} → ${expected}`, () => assert.equal(pathOf(raw), expected));
    else test(`${raw} rejected (${expected.source})`, () => assert.match(reasonOf(raw), expected));
  }
});

// RFC 3986 pchar allows, besides `%XX`, only ALPHA DIGIT - . _ ~ ! $ & ' ( ) * + , ; = : @. Node's
// parser accepts the other printable characters too; each is encoded (uppercase hex) so the
// upstream receives the same bytes whether the client sent it raw or encoded, on either path
// (WHATWG URL, used by reply-from, would encode only some of them).
describe('characters not allowed raw in a path are percent-encoded', () => {
  const table: Array<[string, string]> = [
    ['/a"b', '/a%22b'],
    ['/a<b>', '/a%3Cb%3E'],
    ['/a[0]', '/a%5B0%5D'],
    ['/a^b', '/a%5Eb'],
    ['/a`b', '/a%60b'],
    ['/a{b}', '/a%7Bb%7D'],
    ['/a|b', '/a%7Cb'],
    ['/"<>[]^`{|}', '/%22%3C%3E%5B%5D%5E%60%7B%7C%7D'],
    ['/{x}/../admin', '/admin'],
    ['/a/{x}/', '/a/%7Bx%7D/'],
    ['/a"b?c"d', '/a%22b'], // the query is kept verbatim (see below)
    ['/a%7cb', '/a%7Cb'], // already encoded, any case: the same bytes as the raw spelling
    ['/a%22b', '/a%22b'],
    ['/{;x}', '/%7B;x%7D'],
    ['http://h/a|b', '/a%7Cb'],
  ];
  for (const [raw, expected] of table) {
    test(`${raw} → ${expected}`, () => assert.equal(pathOf(raw), expected));
  }

  test('the query keeps them raw', () => {
    assert.deepEqual(normalizeTarget('/a"b?c"d|{}'), { ok: true, path: '/a%22b', query: '?c"d|{}' });
  });

  test('every printable ASCII character: pchar stays raw, anything else comes out encoded', () => {
    const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;
    for (let c = 0x21; c < 0x7f; c++) {
      const ch = String.fromCharCode(c);
      if ('#%/?\\'.includes(ch)) continue; // rejected, or structural
      const hex = c.toString(16).toUpperCase().padStart(2, '0');
      const raw = normalizeTarget(`/a${ch}b`);
      const enc = normalizeTarget(`/a%${hex.toLowerCase()}b`);
      assert.ok(raw.ok && enc.ok, ch);
      if (PCHAR.test(ch)) {
        assert.equal(raw.path, `/a${ch}b`, ch);
      } else {
        // The raw spelling and the encoded one reach the upstream as the same bytes.
        assert.equal(raw.path, `/a%${hex}b`, ch);
        assert.equal(enc.path, raw.path, ch);
      }
    }
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
    '/a"b/<c>/[d]/{e}|^`', '/a;x/b;;/c;', '/%3B/a%3b',
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
      assert.ok(/^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*$/.test(p), `only pchar and / in ${p}`);
      assert.ok(!/(?:^|\/);/.test(p), `no segment with an empty name and parameters in ${p}`);
    }
  });
  test('random spellings: every accepted path is canonical, fixed by a second pass, and free of `;` tricks', () => {
    const pieces = ['/', '/', '.', '..', ';', ';x', 'a', 'admin', '%2e', '%2E', '%3B', '%3b', '%41', '%7c', '"', '{', ']', '|', '^', '`', '=', ':', '@', '%', '%2f', '\\', '#'];
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    for (let k = 0; k < 20_000; k++) {
      let raw = '/';
      const len = 1 + (next() % 8);
      for (let j = 0; j < len; j++) raw += pieces[next() % pieces.length];
      const r = normalizeTarget(raw);
      if (!r.ok) continue;
      const p = r.path;
      assert.ok(/^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*$/.test(p), `${raw} → ${p}`);
      assert.ok(!/(?:^|\/);/.test(p), `${raw} → ${p}: a segment with an empty name and parameters`);
      assert.ok(!/\/\.\.?(?:[/;]|$)/.test(p), `${raw} → ${p}: a dot segment`);
      assert.ok(!p.slice(1).includes('//'), `${raw} → ${p}`);
      assert.deepEqual(normalizeTarget(p), { ok: true, path: p, query: '' }, `${raw} → ${p} is not a fixed point`);
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
