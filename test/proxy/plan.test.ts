// The upstream plan is pure: a table of client headers × peer trust → what the upstream gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfigObject } from '../../src/config/index.js';
import { compileRouteTable } from '../../src/door/route-table.js';
import { OriginRules, type Inbound } from '../../src/routing/origin.js';
import { UpstreamRequestRules } from '../../src/proxy/plan.js';
import { makeCookieStripper } from '../../src/session/cookies.js';

const cfg = validateConfigObject({
  publicUrl: 'https://apps.example.com',
  oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
  session: { secrets: ['s'.repeat(32)] },
  routes: [
    { name: 'app', match: { path: '/app' }, upstream: 'http://10.0.0.1:3000/base', stripPrefix: true, headers: { 'X-Team': '{team}' } },
  ],
}, {});
assert.ok(cfg.ok);
const table = compileRouteTable(cfg.config.routes);
const route = table.routes[0]!;

function plan(headers: Record<string, string>, o: { trusted?: boolean; upgrade?: boolean; method?: string; peer?: string; host?: string } = {}) {
  const origin = new OriginRules(o.trusted ? ['10.9.9.9'] : false, cfg.ok ? cfg.config.publicUrl : '', 'portcullis');
  const rules = new UpstreamRequestRules(origin, makeCookieStripper('portcullis'));
  const inbound: Inbound = {
    id: 'req-1', method: o.method ?? 'GET', path: '/app/x', query: '?q=1', host: o.host ?? 'apps.example.com', proto: 'https', port: '443',
    peer: o.peer ?? '10.9.9.9', clientIp: o.trusted ? '203.0.113.7' : o.peer ?? '10.9.9.9', trusted: o.trusted ?? false, headers, cookies: {},
  };
  return rules.plan({ inbound, route, identity: table.headers, who: { claims: { sub: 'alice', team: 'blue' }, sid: 's1' }, upgrade: o.upgrade });
}

test('path as forwarded, method as authorized, upstream host', () => {
  const p = plan({ host: 'apps.example.com' }, { method: 'PROPFIND' });
  assert.equal(p.path, '/base/x?q=1');
  assert.equal(p.method, 'PROPFIND');
  assert.equal(p.headers.host, '10.0.0.1:3000');
  assert.equal(plan({}, { method: 'DELETE', upgrade: true }).method, 'GET', 'an upgrade is a GET');
});

test('hop-by-hop, Connection-listed, Expect and our own headers never pass as sent', () => {
  const p = plan({
    connection: 'keep-alive, X-Secret, x-forwarded-user', 'x-secret': '1', 'keep-alive': 'timeout=5', te: 'trailers', trailer: 'x-foo',
    'proxy-connection': 'keep-alive', upgrade: 'h2c', 'transfer-encoding': 'chunked', 'http2-settings': 'x', expect: '100-continue',
    'x-request-id': 'forged', keep_alive: 'x', 'x-other': 'kept',
  });
  for (const h of ['connection', 'x-secret', 'keep-alive', 'te', 'trailer', 'proxy-connection', 'upgrade', 'transfer-encoding', 'http2-settings', 'expect', 'keep_alive']) {
    assert.equal(p.headers[h], undefined, h);
  }
  assert.equal(p.headers['x-request-id'], 'req-1');
  assert.equal(p.headers['x-other'], 'kept');
  assert.equal(p.headers['x-forwarded-user'], 'alice', 'listing our header in Connection does not remove ours');
  assert.equal(p.hasBody, true, 'Transfer-Encoding: the body is streamed (re-framed by the forwarder)');
  const up = plan({ connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k' }, { upgrade: true });
  assert.equal(up.headers.connection, 'Upgrade');
  assert.equal(up.headers.upgrade, 'websocket');
  assert.equal(up.headers['sec-websocket-key'], 'k');
});

test('forwarding family: replaced from an untrusted peer in every spelling, appended to from a trusted one', () => {
  const sent = {
    forwarded: 'for=6.6.6.6', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http',
    'x-forwarded-port': '1', 'x-forwarded-ssl': 'on', 'x-real-ip': '6.6.6.6', 'true-client-ip': '6.6.6.6', 'cf-connecting-ip': '6.6.6.6',
    x_forwarded_for: '6.6.6.6', x_real_ip: '6.6.6.6', 'x-original-url': '/admin', 'x-http-method-override': 'DELETE',
  };
  const u = plan(sent).headers;
  assert.equal(u['x-forwarded-for'], '10.9.9.9');
  assert.equal(u['x-real-ip'], '10.9.9.9');
  assert.equal(u['x-forwarded-host'], 'apps.example.com');
  assert.equal(u['x-forwarded-proto'], 'https');
  assert.equal(u['x-forwarded-port'], '443');
  assert.equal(u.forwarded, 'for=10.9.9.9;host=apps.example.com;proto=https');
  for (const h of ['x-forwarded-ssl', 'true-client-ip', 'cf-connecting-ip', 'x_forwarded_for', 'x_real_ip', 'x-original-url', 'x-http-method-override']) {
    assert.equal(u[h], undefined, `untrusted: ${h}`);
  }
  const t = plan(sent, { trusted: true }).headers;
  assert.equal(t['x-forwarded-for'], '6.6.6.6, 10.9.9.9');
  assert.equal(t.forwarded, 'for=6.6.6.6, for=10.9.9.9;host=apps.example.com;proto=https');
  assert.equal(t['x-real-ip'], '203.0.113.7', 'the client as proxy-addr found it');
  assert.equal(t['true-client-ip'], '6.6.6.6', 'a trusted proxy may pass the rest of the family');
  assert.equal(t['x-original-url'], '/admin');
  assert.equal(t.x_forwarded_for, undefined, 'an underscore spelling is removed even from a trusted proxy');
});

test('Forwarded (RFC 7239 §4): tokens bare; IPv6 bracketed and quoted; host:port and anything else quoted and escaped', () => {
  const fwd = (peer: string, host: string) => plan({}, { peer, host }).headers.forwarded;
  assert.equal(fwd('10.9.9.9', 'apps.example.com'), 'for=10.9.9.9;host=apps.example.com;proto=https');
  assert.equal(fwd('::1', 'apps.example.com'), 'for="[::1]";host=apps.example.com;proto=https');
  assert.equal(fwd('2001:db8::7', 'apps.example.com:8443'), 'for="[2001:db8::7]";host="apps.example.com:8443";proto=https');
  assert.equal(fwd('::ffff:10.9.9.9', '[::1]:8080'), 'for="[::ffff:10.9.9.9]";host="[::1]:8080";proto=https');
  assert.equal(fwd('10.9.9.9', 'a"b\\c'), 'for=10.9.9.9;host="a\\"b\\\\c";proto=https', 'a quote and a backslash are escaped');
  assert.equal(fwd('10.9.9.9', 'a:b:c'), 'for=10.9.9.9;host="a:b:c";proto=https', 'two colons, not an address: quoted, not bracketed');
});

test('identity: client-sent identity removed in every spelling, ours added; own cookies removed', () => {
  const h = plan({ 'x-forwarded-user': 'root', x_forwarded_user: 'root', 'x-team': 'red', 'x-webauth-user': 'root', cookie: 'a=1; portcullis=zzz; __Host-portcullis_1=y; b=2' }).headers;
  assert.equal(h['x-forwarded-user'], 'alice');
  assert.equal(h.x_forwarded_user, undefined);
  assert.equal(h['x-team'], 'blue');
  assert.equal(h['x-webauth-user'], undefined);
  assert.equal(h.cookie, 'a=1; b=2');
});
