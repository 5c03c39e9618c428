// A short fixed-seed run of the request fuzzer (bench/fuzz.ts): raw-socket requests with path
// tricks, every method token, hop-by-hop / forwarding / identity headers in every spelling, bob's
// cookie, a tampered one or none, bearer tokens of every kind (valid, expired, another audience, an
// ID token, forged…), forward-auth checks, the same request from a trusted and an untrusted peer,
// pipelined connections — and zero violations of the invariants on what the echo upstream
// receives (no 5xx; nothing the rules forbid reaches it, read as Tomcat/Jetty, a lenient server or a
// URL parser would; no client forwarding/identity/hop-by-hop header; no Portcullis cookie; the
// method sent). Longer runs: `npm run fuzz -- --seed N --minutes M` (see the top of bench/fuzz.ts);
// a failure here names the request: `npm run fuzz -- --seed 7 --only N` replays it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forbiddenReading, formatReport, runFuzz, type Principal } from '../../bench/fuzz.js';

test('the fuzzer\'s reference judge reads paths as a server behind the proxy would', () => {
  const forbidden = (target: string, method: string, who: 'bob' | 'anonymous'): string | undefined => {
    const j = forbiddenReading(target, method, who, false, true);
    return j && `${j.route.name} (${j.reading})`;
  };
  assert.equal(forbidden('/admin;x', 'GET', 'bob'), 'admin (tomcat)');
  assert.equal(forbidden('/;/admin', 'GET', 'bob'), 'admin (tomcat)');
  assert.equal(forbidden('/public/..;/admin', 'GET', 'bob'), 'admin (tomcat)');
  assert.equal(forbidden('/public/%2e%2e/admin', 'GET', 'bob'), 'admin (tomcat)');
  assert.equal(forbidden('/%61dmin', 'GET', 'bob'), 'admin (tomcat)');
  assert.equal(forbidden('/public%2F..%2Fadmin', 'GET', 'bob'), 'admin (lenient)');
  assert.equal(forbidden('/public\\..\\admin', 'GET', 'bob'), 'admin (lenient)');
  assert.equal(forbidden('/public/x', 'PUT', 'anonymous'), 'app (tomcat)', 'PUT is outside the public route: the catch-all wants a session');
  assert.equal(forbidden('/api', 'DELETE', 'bob'), 'api-other (tomcat)');
  assert.equal(forbidden('/public/x', 'HEAD', 'anonymous'), undefined, 'GET allows HEAD');
  assert.equal(forbidden('/api', 'POST', 'bob'), undefined);
  assert.equal(forbidden('/administrator', 'GET', 'bob'), undefined, 'prefix at a segment boundary');
  assert.equal(forbidden('/ADMIN', 'GET', 'bob'), undefined, 'case-sensitive');
  assert.equal(forbidden('/public/..%3B/admin', 'GET', 'bob'), undefined, '%3B is not a separator');
  assert.equal(forbidden('/s-base/x', 'GET', 'bob'), undefined, 'the strip route lands on /s-base');
  assert.equal(forbidden('/s-base/x', 'GET', 'anonymous'), 'app (tomcat)');
  // Bearer routes: a token decides there (a bad one is nobody's, whatever the cookie); elsewhere the cookie does.
  const judged = (target: string, p: Principal) => forbiddenReading(target, 'GET', p, false, true)?.route.name;
  assert.equal(judged('/admin/x', { cookie: 'bob', bearer: 'alice' }), undefined, 'alice\'s valid token opens /admin');
  assert.equal(judged('/admin/x', { cookie: 'anonymous', bearer: 'anonymous' }), 'admin');
  assert.equal(judged('/api/x', { cookie: 'bob', bearer: 'anonymous' }), 'api', 'a bad token is not helped by a good cookie');
  assert.equal(judged('/api/x', { cookie: 'anonymous', bearer: undefined }), 'api');
  assert.equal(judged('/x', { cookie: 'anonymous', bearer: 'alice' }), 'app', 'the catch-all takes no bearer token');
});

test('400 fuzzed requests (session cache on) break no invariant', { timeout: 90_000 }, async (t) => {
  const report = await runFuzz({ scope: t, seed: 7, requests: 400, concurrency: 8 });
  assert.ok(report.reachedUpstream > 50, `enough requests reach the upstream to judge (${report.reachedUpstream})`);
  // Every doorway and kind of client was exercised: bearer tokens (good and bad), forward-auth (202s
  // and refusals), the trusted peer, twins compared across peers, pipelined connections.
  for (const k of ['bearer token reached the upstream', 'bad bearer token refused', 'forward-auth 202', 'forward-auth refused', 'from the trusted peer', 'twins compared', 'pipelined']) {
    assert.ok((report.coverage[k] ?? 0) > 0, `coverage: ${k} (${JSON.stringify(report.coverage)})`);
  }
  assert.equal(report.violationCount, 0, formatReport(report));
});

test('150 fuzzed requests with no session cache (every cookie opened) break no invariant', { timeout: 60_000 }, async (t) => {
  const report = await runFuzz({ scope: t, seed: 8, requests: 150, concurrency: 8, sessionCache: false });
  assert.equal(report.violationCount, 0, formatReport(report));
});
