// Route matching: host, path prefix at segment boundaries, methods, first match wins.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { compileMatcher, validateMatchSpec, type RouteMatchSpec } from '../../src/routing/match.js';
import { normalizeTarget } from '../../src/routing/normalize.js';
import type { Issues } from '../../src/config/issues.js';

describe('host', () => {
  const match = compileMatcher([
    { host: 'grafana.example.com', path: '/' }, // 0
    { host: '*.apps.example.com', path: '/' }, // 1
    { host: 'Upper.Example.com.', path: '/' }, // 2: config is canonicalised too
    { path: '/' }, // 3: any host
  ]);
  const table: Array<[string | undefined, number]> = [
    ['grafana.example.com', 0],
    ['GRAFANA.Example.Com', 0],
    ['grafana.example.com:8443', 0],
    ['grafana.example.com.', 0],
    ['grafana.example.com.:80', 0],
    ['upper.example.com', 2],
    ['x.grafana.example.com', 3],
    ['grafana.example.co', 3],
    ['a.apps.example.com', 1],
    ['A.Apps.Example.com:8080', 1],
    ['a.b.apps.example.com', 3],
    ['apps.example.com', 3],
    ['.apps.example.com', 3],
    ['aapps.example.com', 3],
    ['a.apps.example.com.evil.com', 3],
    [undefined, 3],
    ['', 3],
    ['[::1]:8080', 3],
  ];
  for (const [host, expected] of table) {
    test(`${JSON.stringify(host)} → ${expected}`, () => assert.equal(match(host, '/x', 'GET'), expected));
  }

  test('no any-host route: unknown hosts match nothing', () => {
    const m = compileMatcher([{ host: 'a.example.com', path: '/' }, { host: '*.example.com', path: '/' }]);
    assert.equal(m('a.example.com', '/', 'GET'), 0);
    assert.equal(m('b.example.com', '/', 'GET'), 1);
    assert.equal(m('example.com', '/', 'GET'), -1);
    assert.equal(m(undefined, '/', 'GET'), -1);
    assert.equal(m('evil.com', '/', 'GET'), -1);
  });

  test('an exact host also meets an earlier wildcard that covers it', () => {
    const m = compileMatcher([
      { host: '*.example.com', path: '/api' },
      { host: 'a.example.com', path: '/' },
      { host: '*.example.com', path: '/' },
    ]);
    assert.equal(m('a.example.com', '/api/x', 'GET'), 0);
    assert.equal(m('a.example.com', '/other', 'GET'), 1);
    assert.equal(m('b.example.com', '/other', 'GET'), 2);
  });

  test('host without dots', () => {
    const m = compileMatcher([{ host: 'localhost', path: '/' }]);
    assert.equal(m('localhost:8080', '/', 'GET'), 0);
    assert.equal(m('localhost.', '/', 'GET'), 0);
    assert.equal(m('otherhost', '/', 'GET'), -1);
  });
});

describe('path', () => {
  const match = compileMatcher([
    { path: '/admin' }, // 0
    { path: '/api/' }, // 1: trailing slash = /api
    { path: '/' }, // 2
  ]);
  const table: Array<[string, number]> = [
    ['/admin', 0],
    ['/admin/', 0],
    ['/admin/x/y', 0],
    ['/administrator', 2],
    ['/admin-panel', 2],
    ['/Admin', 2],
    ['/api', 1],
    ['/api/', 1],
    ['/api/v1', 1],
    ['/apix', 2],
    ['/', 2],
    ['/x', 2],
    // ;params are removed from every segment before matching
    ['/admin;x', 0],
    ['/admin;x/y', 0],
    ['/admin;jsessionid=abc/', 0],
    ['/adm;x/in', 2],
    ['/api;a=b;c=d/v1;x', 1],
    ['/administrator;x', 2],
  ];
  for (const [p, expected] of table) {
    test(`${p} → ${expected}`, () => assert.equal(match('h', p, 'GET'), expected));
  }

  test('no catch-all: unmatched paths give -1', () => {
    const m = compileMatcher([{ path: '/admin' }]);
    assert.equal(m('h', '/administrator', 'GET'), -1);
    assert.equal(m('h', '/', 'GET'), -1);
  });

  test('after normalisation, traversal spellings meet the /admin route', () => {
    const m = compileMatcher([{ path: '/public' }, { path: '/admin' }]);
    for (const raw of ['/public/../admin', '/%61dmin', '//admin', '/public/%2e%2e/admin', '/admin;x', '/public/./../admin/']) {
      const n = normalizeTarget(raw);
      assert.ok(n.ok, raw);
      assert.equal(m('h', n.path, 'GET'), 1, raw);
    }
  });
});

// `;params` are ignored on every segment, for the prefix and for the methods check, so each
// spelling meets the route Tomcat and Jetty would serve it as; spellings they would serve as another
// path than ours are refused by the normaliser (→ 400) and never reach the matcher.
describe('path parameters, as Tomcat and Jetty read them', () => {
  const match = compileMatcher([
    { path: '/admin' }, // 0
    { path: '/api', methods: ['GET'] }, // 1: read-only API
    { path: '/api/secret' }, // 2
    { path: '/foo', methods: ['POST'] }, // 3
    { path: '/' }, // 4
  ]);
  /** raw request target, method → route index, or 'bad' when the normaliser refuses it. */
  const table: Array<[raw: string, method: string, expected: number | 'bad']> = [
    // an empty name with parameters: Tomcat serves `/admin`, the catch-all would have matched `//admin`
    ['/;/admin', 'GET', 'bad'],
    ['/;x/admin', 'GET', 'bad'],
    ['/;jsessionid=1/admin', 'GET', 'bad'],
    ['/;a;b/admin/x', 'GET', 'bad'],
    ['/api/;x/secret', 'GET', 'bad'],
    ['/api/;x/secret', 'POST', 'bad'],
    ['/foo/;x', 'GET', 'bad'],
    ['/;x', 'GET', 'bad'],
    // after a dot segment: already refused
    ['/.;x/admin', 'GET', 'bad'],
    ['/public/..;/admin', 'GET', 'bad'],
    // parameters after a name are ignored on every segment, prefix and methods alike
    ['/admin;x', 'GET', 0],
    ['/admin;', 'GET', 0],
    ['/admin;;', 'GET', 0],
    ['/admin;a;b=c/y', 'GET', 0],
    ['/admin;x/y', 'GET', 0],
    ['/admin/y;x', 'GET', 0],
    ['/admin;jsessionid=1/', 'GET', 0],
    ['/adm;x/in', 'GET', 4],
    ['/api;x/secret', 'GET', 1],
    ['/api;x/secret;y', 'DELETE', 2],
    ['/api/secret;x', 'POST', 2],
    ['/api;x', 'POST', 4],
    ['/api;x/v1', 'HEAD', 1],
    ['/foo;x', 'POST', 3],
    ['/foo;x/', 'POST', 3],
    ['/foo;x', 'GET', 4],
    ['/x;y/../admin', 'GET', 0],
    ['/admin;x/../public', 'GET', 4],
    // an encoded `;` is an ordinary character (Tomcat and Jetty do not split on it): no /admin
    ['/admin%3Bx', 'GET', 4],
    ['/admin%3bx/y', 'GET', 4],
    ['/%3B/admin', 'GET', 4],
    ['/.%3B/admin', 'GET', 4],
    ['/api%3B/secret', 'POST', 4],
  ];
  for (const [raw, method, expected] of table) {
    test(`${method} ${raw} → ${expected}`, () => {
      const n = normalizeTarget(raw);
      if (expected === 'bad') {
        assert.ok(!n.ok, `${raw} should be refused, got ${n.ok ? n.path : ''}`);
        return;
      }
      assert.ok(n.ok, `${raw}: ${n.ok ? '' : n.reason}`);
      assert.equal(match('h', n.path, method), expected);
    });
  }

  test('the matcher alone drops a segment left empty, as Tomcat does (never `//admin`)', () => {
    // The normaliser refuses these; the matcher still reads them as Tomcat would.
    assert.equal(match('h', '/;x/admin', 'GET'), 0);
    assert.equal(match('h', '/;/admin/y', 'GET'), 0);
    assert.equal(match('h', '/;a/;b/admin', 'GET'), 0);
    assert.equal(match('h', '/api/;x/secret', 'POST'), 2);
    assert.equal(match('h', '/foo/;x', 'POST'), 3);
    assert.equal(match('h', '/;x', 'GET'), 4);
    assert.equal(compileMatcher([{ path: '/admin' }])('h', '/;x', 'GET'), -1);
  });
});

describe('methods', () => {
  const match = compileMatcher([
    { path: '/api', methods: ['GET'] }, // 0
    { path: '/api', methods: ['POST', 'PUT'] }, // 1
    { path: '/' }, // 2: any method
  ]);
  const table: Array<[string, number]> = [
    ['GET', 0],
    ['HEAD', 0],
    ['POST', 1],
    ['PUT', 1],
    ['DELETE', 2],
    ['OPTIONS', 2],
    ['get', 2], // methods are case-sensitive (RFC 9110 §9.1)
  ];
  for (const [m, expected] of table) {
    test(`${m} → ${expected}`, () => assert.equal(match('h', '/api/x', m), expected));
  }
  test('HEAD is not implied by POST', () => {
    const m = compileMatcher([{ path: '/', methods: ['POST'] }]);
    assert.equal(m('h', '/', 'HEAD'), -1);
  });
  test('empty methods list means any', () => {
    const m = compileMatcher([{ path: '/', methods: [] }]);
    assert.equal(m('h', '/', 'PATCH'), 0);
  });
});

describe('first match wins', () => {
  test('in configuration order, across host groups', () => {
    const specs: RouteMatchSpec[] = [
      { path: '/health' }, // 0 any host, listed first
      { host: 'a.example.com', path: '/' }, // 1
      { host: 'a.example.com', path: '/admin' }, // 2: shadowed by 1
      { path: '/' }, // 3
    ];
    const m = compileMatcher(specs);
    assert.equal(m('a.example.com', '/health', 'GET'), 0);
    assert.equal(m('a.example.com', '/admin', 'GET'), 1);
    assert.equal(m('b.example.com', '/admin', 'GET'), 3);
    assert.equal(m('b.example.com', '/health/x', 'GET'), 0);
  });
  test('no specs match nothing', () => {
    assert.equal(compileMatcher([])('h', '/', 'GET'), -1);
  });
});

describe('validateMatchSpec', () => {
  function validate(yamlText: string): { spec: RouteMatchSpec | undefined; issues: Issues } {
    const issues: Issues = [];
    const spec = validateMatchSpec(parse(yamlText), 'routes[1].match', issues);
    return { spec, issues };
  }

  const good: Array<[string, RouteMatchSpec]> = [
    ['{ path: / }', { path: '/' }],
    ['{ host: grafana.example.com, path: / }', { host: 'grafana.example.com', path: '/' }],
    ['{ host: Grafana.Example.COM., path: /admin/ }', { host: 'grafana.example.com', path: '/admin/' }],
    ['{ host: "*.apps.example.com", path: /api, methods: [GET, POST] }', { host: '*.apps.example.com', path: '/api', methods: ['GET', 'POST'] }],
    ['{ host: localhost, path: /a/b.c/~d }', { host: 'localhost', path: '/a/b.c/~d' }],
    ['{ host: 10.0.0.1, path: /%20x }', { host: '10.0.0.1', path: '/%20x' }],
    ['{ path: "/a%7Bb%7D/%22q%22" }', { path: '/a%7Bb%7D/%22q%22' }], // encoded, as requests are matched
    ['{ path: "/a%3Bb" }', { path: '/a%3Bb' }], // an encoded ; is an ordinary character
    ['{ host: a.com }', { host: 'a.com', path: '/' }], // no path = every path
  ];
  for (const [y, expected] of good) {
    test(`accepts ${y}`, () => {
      const { spec, issues } = validate(y);
      assert.deepEqual(issues, []);
      assert.deepEqual(spec, expected);
    });
  }

  const bad: Array<[string, string, RegExp]> = [
    ['{ path: /, hots: a.com }', 'routes[1].match.hots', /unknown key "hots" — did you mean "host"\?/],
    ['{ path: /, method: [GET] }', 'routes[1].match.method', /did you mean "methods"\?/],
    ['{ path: admin }', 'routes[1].match.path', /must start with \//],
    ['{ path: "" }', 'routes[1].match.path', /non-empty string/],
    ['{ path: 5 }', 'routes[1].match.path', /non-empty string/],
    ['{ path: /public/../admin }', 'routes[1].match.path', /not in normalised form; write "\/admin"/],
    ['{ path: //admin }', 'routes[1].match.path', /not in normalised form/],
    ['{ path: /%61dmin }', 'routes[1].match.path', /not in normalised form/],
    ['{ path: /a%2fb }', 'routes[1].match.path', /encoded slash/],
    ['{ path: "/a b" }', 'routes[1].match.path', /space/],
    ['{ path: "/a?x=1" }', 'routes[1].match.path', /query/],
    ['{ path: "/admin;x" }', 'routes[1].match.path', /;parameters/],
    ['{ path: "/;x/admin" }', 'routes[1].match.path', /;parameters/],
    ['{ path: "/a{b}" }', 'routes[1].match.path', /not in normalised form; write "\/a%7Bb%7D"/],
    ['{ path: "/a|b" }', 'routes[1].match.path', /not in normalised form; write "\/a%7Cb"/],
    ['{ path: "/x[1]" }', 'routes[1].match.path', /not in normalised form; write "\/x%5B1%5D"/],
    ['{ path: "/a%7cb" }', 'routes[1].match.path', /not in normalised form; write "\/a%7Cb"/],
    ['{ path: /, host: "a.com:8080" }', 'routes[1].match.host', /port/],
    ['{ path: /, host: "a_b.com" }', 'routes[1].match.host', /not a valid hostname/],
    ['{ path: /, host: "-a.com" }', 'routes[1].match.host', /not a valid hostname/],
    ['{ path: /, host: "a..com" }', 'routes[1].match.host', /not a valid hostname/],
    ['{ path: /, host: "*" }', 'routes[1].match.host', /wildcard/],
    ['{ path: /, host: "*.*.example.com" }', 'routes[1].match.host', /wildcard/],
    ['{ path: /, host: "a.*.example.com" }', 'routes[1].match.host', /wildcard/],
    ['{ path: /, host: "*example.com" }', 'routes[1].match.host', /wildcard/],
    ['{ path: /, host: "" }', 'routes[1].match.host', /non-empty hostname/],
    ['{ path: /, host: "https://a.com" }', 'routes[1].match.host', /port|not a valid hostname/],
    ['{ path: /, methods: GET }', 'routes[1].match.methods', /must be a list/],
    ['{ path: /, methods: [] }', 'routes[1].match.methods', /empty methods list/],
    ['{ path: /, methods: [GET, get] }', 'routes[1].match.methods[1]', /unknown HTTP method "get" — did you mean "GET"\?/],
    ['{ path: /, methods: [GTE] }', 'routes[1].match.methods[0]', /unknown HTTP method "GTE" — did you mean "GET"\?/],
    ['{ path: /, methods: [FETCH] }', 'routes[1].match.methods[0]', /unknown HTTP method "FETCH"/],
    ['[/admin]', 'routes[1].match', /must be a mapping/],
    ['/admin', 'routes[1].match', /must be a mapping/],
  ];
  for (const [y, p, re] of bad) {
    test(`rejects ${y}`, () => {
      const { spec, issues } = validate(y);
      assert.equal(spec, undefined);
      assert.ok(issues.some((i) => i.path === p && re.test(i.message)), `expected ${p} ${re} in ${JSON.stringify(issues)}`);
    });
  }

  test('reports every problem at once', () => {
    const { spec, issues } = validate('{ hots: x, host: "a.com:1", path: "admin", methods: [GTE, POST, pots] }');
    assert.equal(spec, undefined);
    assert.deepEqual(
      issues.map((i) => i.path),
      ['routes[1].match.hots', 'routes[1].match.path', 'routes[1].match.host', 'routes[1].match.methods[0]', 'routes[1].match.methods[2]'],
    );
  });

  test('a route written encoded meets the raw and the encoded spelling of a request', () => {
    const { spec, issues } = validate('{ path: "/a%7Bb%7D" }');
    assert.deepEqual(issues, []);
    const m = compileMatcher([spec!, { path: '/' }]);
    for (const raw of ['/a{b}', '/a%7Bb%7D/x', '/a%7bb%7d', '/a{b%7D;x/y']) {
      const n = normalizeTarget(raw);
      assert.ok(n.ok, raw);
      assert.equal(m('h', n.path, 'GET'), 0, raw);
    }
  });

  test('validated specs compile and match', () => {
    const { spec } = validate('{ host: Grafana.Example.com, path: /admin/, methods: [GET] }');
    const m = compileMatcher([spec!]);
    assert.equal(m('grafana.example.com:443', '/admin/x', 'HEAD'), 0);
    assert.equal(m('grafana.example.com', '/admin', 'POST'), -1);
  });
});
