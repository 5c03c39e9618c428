// Attack: reach /admin (groups contains admin) through a path that looks like /public, or send the
// upstream a different path than the one the rule was checked on. Every request is sent byte for
// byte (undici Client / raw socket: fetch would resolve the tricks away before they are sent), and
// both the status and the exact path the upstream received are checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { API, BOB, NAVIGATION, rawRequest, rawSocket, statusOf } from './support.js';

/** `or400`: refusing the request outright is acceptable too (stricter than needed, never a bypass). */
type Expect = { route: 'admin' | 'public' | 'app'; path: string; or400?: boolean } | 'bad';

/** raw request target → where it really goes (the normalised path the upstream must receive). */
const TRICKS: Array<[string, Expect]> = [
  ['/public/../admin', { route: 'admin', path: '/admin' }],
  ['/public/%2e%2e/admin', { route: 'admin', path: '/admin' }],
  ['/public/%2E%2E/admin', { route: 'admin', path: '/admin' }],
  ['/public/.%2e/admin', { route: 'admin', path: '/admin' }],
  ['/public/./../admin', { route: 'admin', path: '/admin' }],
  ['/public/x/../../admin/panel', { route: 'admin', path: '/admin/panel' }],
  ['/public/../../../../admin', { route: 'admin', path: '/admin' }],
  ['/public/..//admin', { route: 'admin', path: '/admin' }],
  ['/PUBLIC/../admin', { route: 'admin', path: '/admin' }],
  ['/./admin', { route: 'admin', path: '/admin' }],
  ['/%61dmin', { route: 'admin', path: '/admin' }],
  ['/%61%64%6D%69%6E/panel', { route: 'admin', path: '/admin/panel' }],
  ['//admin', { route: 'admin', path: '/admin' }],
  ['///admin//panel', { route: 'admin', path: '/admin/panel' }],
  ['/admin;x', { route: 'admin', path: '/admin;x' }],
  ['/admin;jsessionid=1/panel', { route: 'admin', path: '/admin;jsessionid=1/panel' }],
  ['/admin/.', { route: 'admin', path: '/admin/' }],
  ['/public/x%23/y', { route: 'public', path: '/public/x%23/y' }],
  ['/public/%7euser/%41', { route: 'public', path: '/public/~user/A' }],
  ['/public/caf%c3%a9', { route: 'public', path: '/public/caf%C3%A9' }],
  // `%3B` is not unreserved, so it stays encoded: a segment named `..%3B`, not a dot segment.
  ['/public/..%3B/admin', { route: 'public', path: '/public/..%3B/admin', or400: true }],
  // `;params` on an empty segment: Tomcat and Jetty serve `/;x/admin` as `/admin`, the catch-all
  // would have matched it as `//admin` — refused. After a name they are ignored when matching.
  ['/admin;', { route: 'admin', path: '/admin;' }],
  ['/admin;a;b/panel;c', { route: 'admin', path: '/admin;a;b/panel;c' }],
  ['/public;x/y', { route: 'public', path: '/public;x/y' }],
  // An encoded `;` is an ordinary character, kept encoded: no server reads it as a separator.
  ['/public/%3B/x', { route: 'public', path: '/public/%3B/x' }],
  ['/%3B/admin', { route: 'app', path: '/%3B/admin' }],
  // Characters RFC 3986 does not allow raw in a path reach the upstream encoded.
  ['/public/a"b', { route: 'public', path: '/public/a%22b' }],
  ['/public/<x>{y}|^`[z]', { route: 'public', path: '/public/%3Cx%3E%7By%7D%7C%5E%60%5Bz%5D' }],
  ['/public/%7bx%7d', { route: 'public', path: '/public/%7Bx%7D' }],
  ['/{x}/../admin', { route: 'admin', path: '/admin' }],
  ['/administrator', { route: 'app', path: '/administrator' }],
  ['/public/../elsewhere', { route: 'app', path: '/elsewhere' }],
  ['/public%2F..%2Fadmin', 'bad'],
  ['/public/%2e%2e%2fadmin', 'bad'],
  ['/;/admin', 'bad'],
  ['/;x/admin', 'bad'],
  ['/;jsessionid=1/admin', 'bad'],
  ['/;a;b/admin/panel', 'bad'],
  ['//;x//admin', 'bad'],
  ['/public/;x/../admin', 'bad'],
  ['/admin/;x', 'bad'],
  ['/;x', 'bad'],
  ['/.;x/admin', 'bad'],
  ['/public/..;/admin', 'bad'],
  ['/public/.;/admin', 'bad'],
  ['/%2Fadmin', 'bad'],
  ['/admin%2f', 'bad'],
  ['/public%5Cadmin', 'bad'],
  ['/public/%5c../admin', 'bad'],
  ['/public\\..\\admin', 'bad'],
  ['/admin%00', 'bad'],
  ['/public/%00/../admin', 'bad'],
  ['/%zz', 'bad'],
  ['/admin%', 'bad'],
  ['/admin%4', 'bad'],
  ['/public/%g1', 'bad'],
];

async function signedInBob(s: Stack): Promise<string> {
  const r = await loginViaHttp(`${s.url}/`, BOB);
  assert.equal(r.status, 200, 'bob signs in');
  const v = r.jar.get('portcullis', s.url);
  assert.ok(v);
  return `portcullis=${v}`;
}

/** Sends `target` verbatim and checks status and what the upstream received. */
async function check(s: Stack, target: string, expect: Expect, who: { name: string; cookie?: string }): Promise<void> {
  for (const [kind, headers] of [['api', API], ['navigation', NAVIGATION]] as const) {
    const what = `${who.name} ${kind} ${target}`;
    const before = s.upstream.requests.length;
    const r = await rawRequest(s.url, { path: target, headers: { ...headers, ...(who.cookie ? { cookie: who.cookie } : {}) } });
    const seen = s.upstream.requests.slice(before);
    assert.notEqual(r.status, 500, what);
    if (expect === 'bad') {
      assert.equal(r.status, 400, `${what}: ${r.body.slice(0, 200)}`);
      assert.equal(seen.length, 0, `${what}: nothing reaches the upstream`);
      continue;
    }
    if (expect.or400 && r.status === 400) {
      assert.equal(seen.length, 0, what);
      continue;
    }
    const signedIn = who.cookie !== undefined;
    const denied = expect.route === 'admin' || (expect.route === 'app' && !signedIn);
    if (denied) {
      const status = signedIn ? 403 : kind === 'api' ? 401 : 302;
      assert.equal(r.status, status, `${what}: ${r.body.slice(0, 200)}`);
      assert.equal(seen.length, 0, `${what}: nothing reaches the upstream (got ${seen.map((q) => q.url).join(', ')})`);
      if (signedIn && kind === 'api') assert.equal(JSON.parse(r.body).route, 'admin', `${what}: denied by the admin route`);
    } else {
      assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 200)}`);
      assert.equal(seen.length, 1, what);
      assert.equal(seen[0]!.url, expect.path, `${what}: the upstream receives the normalised path`);
      assert.equal(seen[0]!.headers['x-forwarded-user'], signedIn ? 'bob' : undefined, what);
    }
  }
}

test('path tricks meet the rule of the path they really reach, and the upstream receives that path', async (t) => {
  const s = await startStack(t);
  const bob = { name: 'bob', cookie: await signedInBob(s) };
  const anon: { name: string; cookie?: string } = { name: 'anonymous' };
  for (const [target, expect] of TRICKS) {
    await check(s, target, expect, bob);
    await check(s, target, expect, anon);
  }
});

// Either way through the proxy (hot path or Fastify + reply-from, which would encode only some of
// these characters itself), the upstream receives the same bytes for the raw and the encoded spelling.
test('characters not allowed raw in a path reach the upstream encoded, on both paths', async (t) => {
  for (const fastPath of [true, false]) {
    const s = await startStack(t, { sessionCache: fastPath });
    const bob = await signedInBob(s);
    const cases: Array<[string, string, string | undefined]> = [
      ['/public/a"b<c>', '/public/a%22b%3Cc%3E', undefined],
      ['/public/a%22b%3cc%3E', '/public/a%22b%3Cc%3E', undefined],
      ['/public/{x}|^`[y]?q={raw}', '/public/%7Bx%7D%7C%5E%60%5By%5D?q={raw}', undefined],
      ['/dash/{id}', '/dash/%7Bid%7D', bob],
      ['/dash/%7Bid%7D', '/dash/%7Bid%7D', bob],
      ['/dash;v=1/a|b', '/dash;v=1/a%7Cb', bob],
    ];
    for (const [target, expected, cookie] of cases) {
      const what = `fastPath ${fastPath}: ${target}`;
      const before = s.upstream.requests.length;
      const r = await rawRequest(s.url, { path: target, headers: { ...API, ...(cookie ? { cookie } : {}) } });
      assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 200)}`);
      const seen = s.upstream.requests.slice(before);
      assert.equal(seen.length, 1, what);
      assert.equal(seen[0]!.url, expected, what);
    }
    // `;params` on an empty segment never reach the upstream, whichever way.
    for (const target of ['/;/admin', '/;x/admin', '/;jsessionid=1/admin', '/public/;x', '/;x/public']) {
      const before = s.upstream.requests.length;
      const r = await rawRequest(s.url, { path: target, headers: { ...API, cookie: bob } });
      assert.equal(r.status, 400, `fastPath ${fastPath}: ${target}: ${r.body.slice(0, 200)}`);
      assert.match(r.body, /path parameters on an empty segment/, target);
      assert.equal(s.upstream.requests.length, before, `fastPath ${fastPath}: ${target} reached the upstream`);
    }
  }
});

test('the query string never takes part in matching', async (t) => {
  const s = await startStack(t);
  const bob = { name: 'bob', cookie: await signedInBob(s) };
  const anon: { name: string; cookie?: string } = { name: 'anonymous' };
  const cases: Array<[string, Expect]> = [
    ['/public?next=/admin', { route: 'public', path: '/public?next=/admin' }],
    ['/public/a?next=%2Fadmin&y=%2e', { route: 'public', path: '/public/a?next=%2Fadmin&y=%2e' }],
    ['/public?x=a%2Fb%5Cc%00', { route: 'public', path: '/public?x=a%2Fb%5Cc%00' }],
    ['/admin?/public', { route: 'admin', path: '/admin' }],
    ['/admin?x=/public/../public', { route: 'admin', path: '/admin' }],
    ['/public/../admin?/public', { route: 'admin', path: '/admin' }],
    ['/%61dmin?/public', { route: 'admin', path: '/admin' }],
  ];
  for (const [target, expect] of cases) {
    await check(s, target, expect, bob);
    await check(s, target, expect, anon);
  }
  // A `..` in the query never turns a public request into an admin one.
  for (const target of ['/public?x=/../admin', '/public?/../../admin', '/public?x=..%2F..%2Fadmin']) {
    for (const who of [bob, anon]) {
      const before = s.upstream.requests.length;
      const r = await rawRequest(s.url, { path: target, headers: { ...API, ...(who.cookie ? { cookie: who.cookie } : {}) } });
      assert.notEqual(r.status, 403, `${who.name} ${target}: not judged by the admin rule`);
      assert.notEqual(r.status, 401, `${who.name} ${target}: not judged by the admin rule`);
      for (const q of s.upstream.requests.slice(before)) assert.ok(q.url.startsWith('/public?'), `${target} reached ${q.url}`);
    }
  }
});

// The query is passed through verbatim and never decoded (regression: it used to go through
// reply-from's URL decoding, which refused `../` in a query value). Segment *names* that begin or
// end with `..` are ordinary names and are proxied, as docs/security.md ("Paths") says.
test('a `..` inside the query is proxied verbatim; segment names that merely begin or end with `..` are ordinary names', async (t) => {
  const s = await startStack(t);
  const bob = { name: 'bob', cookie: await signedInBob(s) };
  const anon: { name: string; cookie?: string } = { name: 'anonymous' };
  const cases: Array<[string, Expect]> = [
    ['/public?x=/../admin', { route: 'public', path: '/public?x=/../admin' }],
    ['/public?/../../admin', { route: 'public', path: '/public?/../../admin' }],
    ['/public?redirect=../x', { route: 'public', path: '/public?redirect=../x' }],
    ['/public?x=..%2Fy', { route: 'public', path: '/public?x=..%2Fy' }],
    ['/dashboard?back=../list', { route: 'app', path: '/dashboard?back=../list' }],
  ];
  for (const [target, expect] of cases) {
    await check(s, target, expect, bob);
    await check(s, target, expect, anon);
  }
  // `...`, `wait...` and `..hidden` are names, not dot segments (RFC 3986 §5.2.4): proxied as they
  // are, on the route their path says. (They were refused while @fastify/reply-from forwarded:
  // its traversal guard rejected any `..` next to a slash.)
  for (const target of ['/public/...', '/public/wait.../x', '/public/..hidden/x']) {
    await check(s, target, { route: 'public', path: target }, bob);
  }
  await check(s, '/admin/..hidden', { route: 'admin', path: '/admin/..hidden' }, bob);
});

// Regression: malformed percent-encoding in the query used to reach reply-from's decodeURIComponent
// and surface as a 500. The query is now passed through untouched.
test('malformed percent-encoding in the query is never a 500', async (t) => {
  const s = await startStack(t);
  const cookie = await signedInBob(s);
  for (const target of ['/public?x=%zz', '/public/x?q=%E0%A4%A', '/public/x?%FF', '/dashboard?x=%', '/dashboard?q=%C3']) {
    const before = s.upstream.requests.length;
    const r = await rawRequest(s.url, { path: target, headers: { ...API, cookie } });
    assert.ok(r.status < 500, `${target}: ${r.status} ${r.body.slice(0, 120)}`);
    const seen = s.upstream.requests.slice(before);
    if (r.status === 200) assert.equal(seen[0]?.url, target, 'the query is passed on verbatim');
    else assert.equal(seen.length, 0);
  }
  assert.ok(!s.logs.some((l) => /"level":50/.test(l)), 'no error-level log line');
});

test('absolute-form request targets naming another host are refused (raw socket)', async (t) => {
  const s = await startStack(t);
  const cookie = await signedInBob(s);
  const port = Number(new URL(s.url).port);
  const send = async (line: string, extra: string[] = []) => {
    const before = s.upstream.requests.length;
    const raw = await rawSocket(port, [line, `Host: 127.0.0.1:${port}`, 'Accept: application/json', `Cookie: ${cookie}`, 'Connection: close', ...extra, '', ''].join('\r\n'));
    return { status: statusOf(raw), raw, seen: s.upstream.requests.slice(before) };
  };
  for (const line of [
    'GET http://evil.example/admin HTTP/1.1',
    'GET http://evil.example/public/x HTTP/1.1',
    'GET https://evil.example/ HTTP/1.1',
    `GET http://127.0.0.1:${port}@evil.example/public HTTP/1.1`,
    `GET http://127.0.0.1/public/x HTTP/1.1`, // same host, other port
    'GET http://evil.example:80/ HTTP/1.1',
  ]) {
    const r = await send(line);
    assert.equal(r.status, 400, `${line}: ${r.raw.slice(0, 200)}`);
    assert.equal(r.seen.length, 0, `${line}: nothing reaches the upstream`);
  }
  // Other malformed targets.
  for (const line of ['GET admin HTTP/1.1', 'OPTIONS * HTTP/1.1', 'GET /public/x#/../../admin HTTP/1.1']) {
    const r = await send(line);
    assert.equal(r.status, 400, `${line}: ${r.raw.slice(0, 200)}`);
    assert.equal(r.seen.length, 0, line);
  }
  // Absolute-form for our own authority is fine, and normalised like any other target.
  const own = await send(`GET http://127.0.0.1:${port}/public/../admin HTTP/1.1`);
  assert.equal(own.status, 403, own.raw.slice(0, 200));
  assert.equal(own.seen.length, 0);
  const ownPublic = await send(`GET http://127.0.0.1:${port}/public/./x HTTP/1.1`);
  assert.equal(ownPublic.status, 200, ownPublic.raw.slice(0, 200));
  assert.equal(ownPublic.seen[0]?.url, '/public/x');
});

test('X-Forwarded-Uri / X-Original-URL from an untrusted client do not change the route', async (t) => {
  const s = await startStack(t);
  const cookie = await signedInBob(s);
  for (const header of ['X-Forwarded-Uri', 'X-Original-URL', 'X-Rewrite-URL', 'X-Forwarded-Prefix']) {
    // To an admin page, claiming to be public: still denied.
    const before = s.upstream.requests.length;
    const denied = await rawRequest(s.url, { path: '/admin/panel', headers: { ...API, cookie, [header]: '/public/x' } });
    assert.equal(denied.status, 403, header);
    // To a public page, claiming to be admin: served as the public page it is.
    const pub = await rawRequest(s.url, { path: '/public/x', headers: { ...API, [header]: '/admin/panel' } });
    assert.equal(pub.status, 200, header);
    const seen = s.upstream.requests.slice(before);
    assert.equal(seen.length, 1, header);
    assert.equal(seen[0]!.url, '/public/x', header);
  }
  // Host-based tricks through X-Forwarded-Host are ignored without trustProxy.
  const before = s.upstream.requests.length;
  const xfh = await rawRequest(s.url, { path: '/admin', headers: { ...API, cookie, 'X-Forwarded-Host': 'public.example' } });
  assert.equal(xfh.status, 403);
  assert.equal(s.upstream.requests.length, before);
});
