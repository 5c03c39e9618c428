// Attack table × doorways: every hostile request in ROWS goes through every way into Portcullis
// (see DOORWAYS), and each doorway must reach the same decision and, when it proxies, give the
// upstream the same view of the request — the contract of the one pipeline that every doorway
// calls (hop-by-hop, Expect, forwarding family, identity headers, own cookies, methods, paths). Requests are written byte for byte on raw sockets (exact header spelling,
// underscores, duplicates, Connection lists, Expect), so no client library tidies them first.
//
// Doorways:
//   a  plain request, session cached        stack A (default LRU session cache, warmed by sign-in;
//                                           checked: a cache hit per request, from /metrics)
//   b  plain request, session NOT cached    stack B: session.cacheMaxEntries 0, same secret → every
//                                           request opens (decrypts) the cookie (checked: a miss)
//   c  during a refresh                     stack C: IdP tokens live 5 min, C's injected clock runs
//                                           10 min ahead → every request with a session refreshes
//                                           first (checked: a refresh_token grant per request)
//   d  bearer token                         stack A, `bearer: true` routes, a JWT signed with the
//                                           dev IdP's key (as test/identity/assertion-bearer.test.ts)
//   e  WebSocket upgrade                    stack A, raw GET + Connection: Upgrade + Upgrade: websocket
//   f  forward-auth                         stack F (trustProxy 127.0.0.1): GET /oauth2/auth with
//                                           X-Forwarded-Method/-Host/-Uri; its 202 identity headers
//                                           are compared with what the upstream got on (a)
//
// Every stack has the same routes, the same session secret and the same IdP, so one sign-in per
// user (on A) gives a cookie every stack accepts. Each stack starts once and serves every row.
//
// Per row × doorway the subtest checks the row's own expectations (status, reaching the upstream
// or not, method, URL, identity headers, forwarding headers, hop-by-hop headers…) and then that
// the decision and the upstream view equal those of doorway (a) for the same row (ports
// normalised; headers that only belong to a doorway — Authorization on d, Upgrade/Sec-WebSocket-*
// on e — set aside). (a) serves as the reference only when it passed its own checks. Pairs that do
// not apply are skipped subtests whose reason says why (NA below).
//
// Run: node --import tsx --test test/security/doorways.test.ts   (about 10 s)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { importJWK, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import type { RecordedRequest } from '../helpers/upstream.js';
import { exchange, toHead } from '../helpers/raw-http.js';
import { ALICE, BOB } from './support.js';
import { REFRESH_MIN_INTERVAL_MS } from '../../src/session/refresh.js';

// ---------------------------------------------------------------------------------------------
// Configuration shared by every stack

const AUDIENCE = 'urn:portcullis-doorways';
/** IdP token lifetime (s): long enough that A, B and F never refresh during the file, short enough for C's clock. */
const TOKEN_TTL_S = 300;
/** How far C's clock runs ahead: past the tokens' expiry, within the idle timeout. */
const C_CLOCK_AHEAD_MS = 10 * 60_000;

const ROUTES = [
  { name: 'public', match: { path: '/public' }, upstream: '{upstream}', auth: 'public', websocket: true },
  { name: 'pubget', match: { path: '/pubget', methods: ['GET'] }, upstream: '{upstream}', auth: 'public', websocket: true },
  { name: 'admin', match: { path: '/admin' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'admin' }, websocket: true, bearer: true },
  { name: 'dav', match: { path: '/dav' }, upstream: '{upstream}', stripPrefix: true, websocket: true, bearer: true },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true, bearer: true, headers: { 'X-WEBAUTH-USER': '{preferred_username}' } },
];
type RouteName = 'public' | 'pubget' | 'admin' | 'dav' | 'app';

type User = 'alice' | 'bob';
const USERS: Record<User, { email: string; name: string; groups: string[]; password: string }> = {
  alice: { email: 'alice@example.com', name: 'Alice Example', groups: ['admin', 'dev'], password: ALICE.password },
  bob: { email: 'bob@example.com', name: 'Bob Example', groups: [], password: BOB.password },
};

// ---------------------------------------------------------------------------------------------
// Header families (canonical: lower case, `_` read as `-`)

const canonical = (name: string) => name.toLowerCase().replace(/_/g, '-');

const IDENTITY = new Set([
  'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-preferred-username', 'x-forwarded-groups', 'x-forwarded-groups-truncated',
  'x-portcullis-assertion', 'x-forwarded-access-token',
  'x-webauth-user', 'x-webauth-email', 'x-webauth-name', 'x-webauth-role',
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-preferred-username', 'x-auth-request-groups',
]);
const isIdentity = (c: string) => IDENTITY.has(c) || c.startsWith('x-webauth-') || c.startsWith('x-auth-request-');

const FORWARDING = [
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-ssl',
  'x-forwarded-scheme', 'x-forwarded-server', 'x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip',
  'fastly-client-ip', 'x-cluster-client-ip', 'x-original-forwarded-for', 'front-end-https', 'x-url-scheme',
];
const OVERRIDES = [
  'x-original-url', 'x-rewrite-url', 'x-forwarded-uri', 'x-forwarded-prefix', 'x-forwarded-path', 'x-original-uri',
  'x-http-method-override', 'x-http-method', 'x-method-override', 'x-forwarded-method',
];
/** Hop-by-hop request headers (and Expect) that never reach the upstream on a plain request. */
const HOP = ['keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings', 'expect'];

// ---------------------------------------------------------------------------------------------
// Rows

type Doorway = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';
const DOORWAYS: Array<{ id: Doorway; label: string }> = [
  { id: 'a', label: '(a) plain, session cached' },
  { id: 'b', label: '(b) plain, session not cached' },
  { id: 'c', label: '(c) during a refresh' },
  { id: 'd', label: '(d) bearer token' },
  { id: 'e', label: '(e) WebSocket upgrade' },
  { id: 'f', label: '(f) forward-auth' },
];

interface Ctx {
  doorway: Doorway;
  /** Port of the Portcullis the request went to. */
  port: number;
  upstreamPort: number;
}
type Problems = string[];

interface Row {
  name: string;
  method?: string;
  /** The request target, sent byte for byte. */
  path: string;
  /** Whose session (a–c, e, f) or bearer token (d) the request carries; undefined = anonymous. */
  user?: User;
  /** Exact names and values, in order (duplicates and odd spellings kept). */
  headers?: Array<[string, string]>;
  /** Cookies besides the session cookie the doorway adds. */
  cookies?: string;
  body?: string;
  expect: {
    /** Acceptable statuses on a–d. */
    status: number[];
    /** On e (default: 200 → 101, others as `status`). */
    ws?: number[];
    /** On f (default: 200 → 202, others as `status`). */
    fa?: number[];
    /** Whether the request reaches the upstream (on a–e). */
    upstream: boolean;
    /** The route that serves it (for the identity headers expected). */
    route?: RouteName;
    /** The request target the upstream must see. */
    url?: string;
    /** The method the upstream must see (default: the row's). */
    method?: string;
    /** Also: Portcullis's forwarding headers exactly (X-Forwarded-*, X-Real-IP, Forwarded). */
    forwarding?: boolean;
    /** No interim 100 Continue may precede the answer. */
    no100?: boolean;
    /** An interim 100 Continue must precede the answer (a–d). */
    got100?: boolean;
    /** Row-specific checks of what the upstream received. */
    check?: (seen: RecordedRequest, ctx: Ctx, p: Problems) => void;
  };
  /** Doorways the row does not apply to, with the reason. */
  na?: Partial<Record<Doorway, string>>;
}

const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const UPGRADE_HEADERS: Array<[string, string]> = [['Connection', 'upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Key', WS_KEY], ['Sec-WebSocket-Version', '13']];

const FORGED = /mallory|forged|6\.6\.6\.6|evil\.example|s3cret|6666/i;

const SPOOFED_IDENTITY: Array<[string, string]> = [
  ['X-Forwarded-User', 'mallory'],
  ['x-forwarded-user', 'mallory2'],
  ['X_Forwarded_User', 'mallory3'],
  ['x_forwarded_user', 'mallory4'],
  ['X-Forwarded-Email', 'mallory@evil.example'],
  ['X-FORWARDED-GROUPS', 'admin'],
  ['x_forwarded_groups', 'admin'],
  ['X-Forwarded-Groups', 'mallory-group'],
  ['X-Forwarded-Preferred-Username', 'mallory'],
  ['X-Forwarded-Groups-Truncated', 'mallory'],
  ['X-WEBAUTH-USER', 'mallory'],
  ['x_webauth_user', 'mallory'],
  ['X-WEBAUTH-ROLE', 'mallory-Admin'],
  ['X-Auth-Request-User', 'mallory'],
  ['X-Auth-Request-Email', 'mallory@evil.example'],
  ['x-auth-request-groups', 'mallory-admin'],
  ['X-Auth-Request-Preferred-Username', 'mallory'],
  ['X-Portcullis-Assertion', 'forged.jwt.value'],
  ['X-Forwarded-Access-Token', 'forged-token'],
];

const FORWARDING_CANONICAL: Array<[string, string]> = [
  ['Forwarded', 'for=6.6.6.6;host=evil.example;proto=https'],
  ['X-Forwarded-For', '6.6.6.6'],
  ['X-Forwarded-Host', 'evil.example'],
  ['X-Forwarded-Proto', 'https'],
  ['X-Forwarded-Port', '6666'],
  ['X-Forwarded-Ssl', 'on-forged'],
  ['X-Forwarded-Scheme', 'https-forged'],
  ['X-Forwarded-Server', 'evil.example'],
  ['X-Real-IP', '6.6.6.6'],
  ['True-Client-IP', '6.6.6.6'],
  ['X-Client-IP', '6.6.6.6'],
  ['CF-Connecting-IP', '6.6.6.6'],
  ['Fastly-Client-IP', '6.6.6.6'],
  ['X-Cluster-Client-IP', '6.6.6.6'],
  ['X-Original-Forwarded-For', '6.6.6.6'],
  ['Front-End-Https', 'on-forged'],
  ['X-Url-Scheme', 'https-forged'],
];
const FORWARDING_SPELLINGS: Array<[string, string]> = [
  ['FORWARDED', 'for=6.6.6.6'],
  ['x-forwarded-for', '6.6.6.6'],
  ['x_forwarded_for', '6.6.6.6'],
  ['X_Forwarded_Host', 'evil.example'],
  ['x_forwarded_proto', 'https-forged'],
  ['X_FORWARDED_PORT', '6666'],
  ['x_forwarded_ssl', 'on-forged'],
  ['X_Real_IP', '6.6.6.6'],
  ['x-real-ip', '6.6.6.6'],
  ['true_client_ip', '6.6.6.6'],
  ['X_Client_IP', '6.6.6.6'],
  ['cf_connecting_ip', '6.6.6.6'],
  ['Fastly_Client_IP', '6.6.6.6'],
  ['x_cluster_client_ip', '6.6.6.6'],
];

const ROUTING_OVERRIDES: Array<[string, string]> = [
  ['X-Original-URL', '/admin/forged'],
  ['X-Rewrite-URL', '/admin/forged'],
  ['X-Forwarded-Uri', '/admin/forged'],
  ['X-Forwarded-Prefix', '/admin-forged'],
  ['X-Forwarded-Path', '/admin/forged'],
  ['X-Original-Uri', '/admin/forged'],
  ['x_original_url', '/admin/forged'],
];
const METHOD_OVERRIDES: Array<[string, string]> = [
  ['X-HTTP-Method-Override', 'DELETE'],
  ['X_HTTP_Method_Override', 'DELETE'],
  ['X-HTTP-Method', 'DELETE'],
  ['X-Method-Override', 'DELETE'],
  ['X-Forwarded-Method', 'DELETE'],
];

const NA = {
  dAnon: 'anonymous row: no credential to carry, (d) would repeat (a)',
  eNotGet: 'an upgrade is a GET without a body; this row is not one',
  eIsUpgradeTrick: 'the row is itself an Upgrade trick, sent through the credential doorways a–d',
  fNoUpstream: 'forward-auth proxies nothing: no upstream view to compare, and these headers belong to the trusted proxy in front',
  fBody: 'forward-auth subrequests carry no body and no Expect',
  fHop: 'hop-by-hop headers are consumed by the fronting proxy and never reach an auth subrequest',
  fOverride: "forward-auth's peer is a trusted proxy: X-Forwarded-Uri/-Method/-Host are its legitimate inputs",
} as const;

function absent(names: string[]): NonNullable<Row['expect']['check']> {
  return (seen, _ctx, p) => {
    for (let i = 0; i < seen.rawHeaders.length; i += 2) {
      if (names.includes(canonical(seen.rawHeaders[i]!))) p.push(`upstream got ${seen.rawHeaders[i]}: ${seen.rawHeaders[i + 1]}`);
    }
  };
}

const DAV_BODY = '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>';
const LOCK_BODY = '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
const REPORT_BODY = '<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></C:calendar-query>';

function davRows(): Row[] {
  const rows: Row[] = [];
  const cases: Array<[string, string | undefined]> = [['PROPFIND', DAV_BODY], ['MKCOL', undefined], ['LOCK', LOCK_BODY], ['REPORT', REPORT_BODY]];
  for (const [method, body] of cases) {
    const headers: Array<[string, string]> = body ? [['Content-Type', 'application/xml; charset=utf-8'], ['Depth', '1']] : [];
    rows.push({
      name: `${method} on a route allowing any method`,
      method, path: '/files/cal/', user: 'alice', headers, body,
      expect: { status: [200], upstream: true, route: 'app', url: '/files/cal/', check: body ? contentLength(body) : undefined },
      na: { e: NA.eNotGet },
    });
    rows.push({
      name: `${method} on a stripPrefix route`,
      method, path: '/dav/files/cal/', user: 'alice', headers, body,
      expect: { status: [200], upstream: true, route: 'dav', url: '/files/cal/', check: body ? contentLength(body) : undefined },
      na: { e: NA.eNotGet },
    });
  }
  return rows;
}

/** The body went upstream: its framing says so (the echo waits for the whole body before answering). */
function contentLength(body: string): NonNullable<Row['expect']['check']> {
  return (seen, _ctx, p) => {
    const cl = seen.headers['content-length'];
    const te = seen.headers['transfer-encoding'];
    if (cl !== String(Buffer.byteLength(body)) && te === undefined) p.push(`upstream body framing: content-length ${String(cl)}, transfer-encoding ${String(te)} (expected the ${Buffer.byteLength(body)}-byte body)`);
  };
}

const ROWS: Row[] = [
  {
    name: 'baseline: signed-in GET, no tricks',
    path: '/app/base?q=1', user: 'alice',
    expect: { status: [200], upstream: true, route: 'app', url: '/app/base?q=1', forwarding: true },
  },

  // --- spoofed identity headers ------------------------------------------------------------
  {
    name: 'spoofed identity headers, every spelling (alice)',
    path: '/app/who', user: 'alice', headers: SPOOFED_IDENTITY,
    expect: { status: [200], upstream: true, route: 'app', url: '/app/who' },
  },
  {
    name: 'spoofed identity headers, every spelling (bob, not an admin)',
    path: '/app/who', user: 'bob', headers: SPOOFED_IDENTITY,
    expect: { status: [200], upstream: true, route: 'app', url: '/app/who' },
  },
  {
    name: 'spoofed identity headers, anonymous on a public route',
    path: '/public/who', headers: SPOOFED_IDENTITY,
    expect: { status: [200], upstream: true, route: 'public', url: '/public/who' },
    na: { d: NA.dAnon },
  },
  {
    name: 'spoofed X-Forwarded-Groups: admin does not open /admin (bob)',
    path: '/admin/panel', user: 'bob', headers: [['X-Forwarded-Groups', 'admin'], ['x_forwarded_groups', 'admin'], ['X-Auth-Request-Groups', 'admin']],
    expect: { status: [403], upstream: false },
  },

  // --- forwarding family from an untrusted client --------------------------------------------
  {
    name: 'forwarding headers from an untrusted client, canonical spelling',
    path: '/app/fwd', user: 'alice', headers: FORWARDING_CANONICAL,
    expect: { status: [200], upstream: true, route: 'app', url: '/app/fwd', forwarding: true },
    na: { f: NA.fNoUpstream },
  },
  {
    name: 'forwarding headers from an untrusted client, other case and underscore spellings',
    path: '/app/fwd', user: 'alice', headers: FORWARDING_SPELLINGS,
    expect: { status: [200], upstream: true, route: 'app', url: '/app/fwd', forwarding: true },
    na: { f: NA.fNoUpstream },
  },
  {
    name: 'routing overrides (X-Original-URL, X-Rewrite-URL, X-Forwarded-Uri/-Prefix/-Path…) from an untrusted client',
    path: '/app/o', user: 'bob', headers: ROUTING_OVERRIDES,
    expect: { status: [200], upstream: true, route: 'app', url: '/app/o', check: absent(OVERRIDES) },
    na: { f: NA.fOverride },
  },
  {
    name: 'X-HTTP-Method-Override: DELETE (and kin) from an untrusted client is stripped',
    path: '/app/o', user: 'bob', headers: METHOD_OVERRIDES,
    expect: { status: [200], upstream: true, route: 'app', url: '/app/o', method: 'GET', check: absent(OVERRIDES) },
    na: { f: NA.fOverride },
  },

  // --- hop-by-hop ----------------------------------------------------------------------------
  {
    name: 'hop-by-hop: Connection: X-Secret removes X-Secret',
    path: '/app/hop', user: 'alice', headers: [['Connection', 'X-Secret'], ['X-Secret', 's3cret']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/hop', check: absent(['x-secret']) },
    na: { f: NA.fHop },
  },
  {
    name: "hop-by-hop: Connection naming Portcullis's own headers removes only the client's copies",
    path: '/app/hop', user: 'alice',
    headers: [['Connection', 'X-Forwarded-User, X-Forwarded-Groups, X-WEBAUTH-USER, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP, Forwarded, X-Request-Id'], ['X-Forwarded-User', 'mallory']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/hop', forwarding: true },
    na: { f: NA.fHop },
  },
  {
    name: 'hop-by-hop: Keep-Alive not listed in Connection',
    path: '/app/hop', user: 'alice', headers: [['Keep-Alive', 'timeout=5, max=100']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/hop' },
    na: { f: NA.fHop },
  },
  {
    name: 'hop-by-hop: TE: trailers',
    path: '/app/hop', user: 'alice', headers: [['TE', 'trailers']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/hop' },
    na: { f: NA.fHop },
  },
  {
    name: 'hop-by-hop: Trailer: X-Foo',
    path: '/app/hop', user: 'alice', headers: [['Trailer', 'X-Foo']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/hop' },
    na: { f: NA.fHop },
  },
  {
    name: 'hop-by-hop: Proxy-Connection',
    path: '/app/hop', user: 'alice', headers: [['Proxy-Connection', 'keep-alive']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/hop' },
    na: { f: NA.fHop },
  },

  // --- Expect ----------------------------------------------------------------------------------
  {
    name: 'Expect: 100-continue with a body → 100, then 200 and the body upstream',
    method: 'POST', path: '/app/upload', user: 'alice', headers: [['Content-Type', 'text/plain'], ['Expect', '100-continue']], body: 'hello world',
    expect: { status: [200], upstream: true, route: 'app', url: '/app/upload', got100: true, check: contentLength('hello world') },
    na: { e: NA.eNotGet, f: NA.fBody },
  },
  {
    name: 'Expect: 100-continue on a refused request → no 100, 403, nothing upstream (bob on /admin)',
    method: 'POST', path: '/admin/upload', user: 'bob', headers: [['Content-Type', 'text/plain'], ['Expect', '100-continue']], body: 'hello world',
    expect: { status: [403], upstream: false, no100: true },
    na: { e: NA.eNotGet, f: NA.fBody },
  },

  // --- method and Upgrade tricks ----------------------------------------------------------------
  {
    name: 'DELETE + Upgrade: websocket + Connection: upgrade on /admin as bob',
    method: 'DELETE', path: '/admin/x', user: 'bob', headers: UPGRADE_HEADERS,
    expect: { status: [400, 403], upstream: false },
    na: { e: NA.eIsUpgradeTrick },
  },
  {
    name: 'POST + Upgrade: websocket on a GET-only public route, anonymous',
    method: 'POST', path: '/pubget/x', headers: UPGRADE_HEADERS,
    // Without the Upgrade, POST /pubget/x belongs to the catch-all app route (401 anonymously).
    expect: { status: [400, 401, 404, 405], upstream: false },
    na: { d: NA.dAnon, e: NA.eIsUpgradeTrick },
  },
  {
    name: 'stray Upgrade: websocket without Connection: upgrade is a plain request',
    path: '/app/stray', user: 'alice', headers: [['Upgrade', 'websocket']],
    expect: { status: [200], upstream: true, route: 'app', url: '/app/stray' },
    na: { e: NA.eIsUpgradeTrick, f: NA.fHop },
  },
  {
    name: 'Upgrade: h2c is refused',
    path: '/app/h2c', user: 'alice', headers: [['Connection', 'Upgrade, HTTP2-Settings'], ['Upgrade', 'h2c'], ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA']],
    expect: { status: [400], upstream: false },
    na: { e: NA.eIsUpgradeTrick, f: NA.fHop },
  },
  ...davRows(),

  // --- paths ------------------------------------------------------------------------------------
  ...['/;/admin', '/;x/admin', '/;jsessionid=1/admin'].map((path): Row => ({
    name: `path ${path} as bob → 400`,
    path, user: 'bob',
    expect: { status: [400], upstream: false },
  })),
  {
    name: 'path /caf%E9 (valid escape, not UTF-8) proxied as is',
    path: '/caf%E9', user: 'alice',
    expect: { status: [200], upstream: true, route: 'app', url: '/caf%E9' },
  },
  {
    name: 'path /a"<>{}b arrives percent-encoded',
    path: '/a"<>{}b', user: 'alice',
    expect: { status: [200], upstream: true, route: 'app', url: '/a%22%3C%3E%7B%7Db' },
  },
  {
    name: 'path /a|^`b arrives percent-encoded',
    path: '/a|^`b', user: 'alice',
    expect: { status: [200], upstream: true, route: 'app', url: '/a%7C%5E%60b' },
  },

  // --- cookies ----------------------------------------------------------------------------------
  {
    name: "Portcullis's own cookies never reach the upstream",
    path: '/app/c', user: 'alice', cookies: 'theme=dark; portcullis_txn_abc=1; portcullis_1=chunk; __Host-portcullis=x; Portcullis_txn_zzz=1; lang=en',
    expect: {
      status: [200], upstream: true, route: 'app', url: '/app/c',
      check: (seen, _ctx, p) => { if (seen.headers.cookie !== 'theme=dark; lang=en') p.push(`upstream Cookie: ${String(seen.headers.cookie)} (expected "theme=dark; lang=en")`); },
    },
    na: { f: NA.fNoUpstream },
  },
  // Odd bytes in claims: test/security/doorways-odd-claims.test.ts (every doorway) and test/identity/claims-property.test.ts.
];

// ---------------------------------------------------------------------------------------------
// Checks

function expectedIdentity(route: RouteName | undefined, user: User | undefined): Record<string, string> {
  if (!user) return {};
  const u = USERS[user];
  const out: Record<string, string> = { 'x-forwarded-user': user, 'x-forwarded-email': u.email, 'x-forwarded-preferred-username': user };
  if (u.groups.length) out['x-forwarded-groups'] = u.groups.join(',');
  if (route === 'app') out['x-webauth-user'] = user;
  return out;
}

/** Identity headers in a raw [name, value…] list, by lower-case name; odd spellings and duplicates reported. */
function identityOf(pairs: Array<[string, string]>, p: Problems, where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of pairs) {
    const c = canonical(name);
    if (!isIdentity(c)) continue;
    if (name.includes('_')) p.push(`${where}: identity header with an underscore: ${name}: ${value}`);
    const lower = name.toLowerCase();
    if (out[lower] !== undefined) p.push(`${where}: ${lower} more than once (${out[lower]} / ${value})`);
    out[lower] = value;
  }
  return out;
}

const pairsOf = (raw: string[]): Array<[string, string]> => {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
};

function checkForwarding(seen: RecordedRequest, port: number, p: Problems): void {
  const want: Record<string, string | RegExp> = {
    'x-forwarded-for': '127.0.0.1',
    'x-real-ip': '127.0.0.1',
    'x-forwarded-host': `127.0.0.1:${port}`,
    'x-forwarded-proto': 'http',
    'x-forwarded-port': String(port),
    forwarded: new RegExp(`^for=127\\.0\\.0\\.1;host=(127\\.0\\.0\\.1:${port}|"127\\.0\\.0\\.1:${port}");proto=http$`),
  };
  const pairs = pairsOf(seen.rawHeaders);
  for (const fam of FORWARDING) {
    const got = pairs.filter(([n]) => canonical(n) === fam);
    for (const [n, v] of got) if (n.includes('_')) p.push(`upstream got the underscore spelling ${n}: ${v}`);
    const w = want[fam];
    if (w === undefined) {
      for (const [n, v] of got) if (!n.includes('_')) p.push(`upstream got ${n}: ${v} (from an untrusted client: must be removed)`);
      continue;
    }
    const proper = got.filter(([n]) => !n.includes('_'));
    if (proper.length !== 1) {
      p.push(`upstream ${fam}: ${proper.length === 0 ? 'missing' : `${proper.length} times (${proper.map(([, v]) => v).join(' | ')})`}; expected ${String(w)}`);
      continue;
    }
    const v = proper[0]![1];
    if (typeof w === 'string' ? v !== w : !w.test(v)) p.push(`upstream ${fam}: ${v}; expected ${String(w)}`);
  }
}

interface UpstreamView { method: string; url: string; headers: string[] }

/** What the upstream saw, comparable across doorways: ports normalised, doorway-only headers set aside. */
function viewOf(seen: RecordedRequest, ctx: Ctx): UpstreamView {
  const skip = new Set(['content-length', 'transfer-encoding', 'connection']);
  if (ctx.doorway === 'e') for (const n of ['upgrade', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions']) skip.add(n);
  if (ctx.doorway === 'd') skip.add('authorization');
  const norm = (v: string) => v
    .split(`127.0.0.1:${ctx.port}`).join('{proxy}')
    .split(`127.0.0.1:${ctx.upstreamPort}`).join('{upstream}');
  const headers: string[] = [];
  for (const [n, v] of pairsOf(seen.rawHeaders)) {
    const lower = n.toLowerCase();
    if (skip.has(lower)) continue;
    const value = lower === 'x-request-id' ? '<id>' : v === String(ctx.port) ? '{proxy-port}' : norm(v);
    headers.push(`${lower}: ${value}`);
  }
  return { method: seen.method, url: seen.url, headers: headers.sort() };
}

function diffViews(mine: UpstreamView, ref: UpstreamView): string[] {
  const out: string[] = [];
  if (mine.method !== ref.method) out.push(`method ${mine.method} vs ${ref.method} on (a)`);
  if (mine.url !== ref.url) out.push(`url ${mine.url} vs ${ref.url} on (a)`);
  const a = [...ref.headers];
  const extra: string[] = [];
  for (const h of mine.headers) {
    const i = a.indexOf(h);
    if (i >= 0) a.splice(i, 1); else extra.push(h);
  }
  if (extra.length) out.push(`upstream headers only on this doorway: ${extra.join(' | ')}`);
  if (a.length) out.push(`upstream headers only on (a): ${a.join(' | ')}`);
  return out;
}

/** Checks every request that reached the upstream, whatever the row. */
function checkUpstream(row: Row, seen: RecordedRequest, ctx: Ctx, p: Problems): void {
  const e = row.expect;
  const method = ctx.doorway === 'e' ? 'GET' : (e.method ?? row.method ?? 'GET');
  if (seen.method !== method) p.push(`upstream method ${seen.method}; expected ${method}`);
  if (e.url !== undefined && seen.url !== e.url) p.push(`upstream url ${seen.url}; expected ${e.url}`);
  const pairs = pairsOf(seen.rawHeaders);
  for (const [n, v] of pairs) {
    // The forwarding family gets its own, more specific messages (checkForwarding).
    if (FORGED.test(v) && !(e.forwarding && FORWARDING.includes(canonical(n)))) p.push(`a forged value reached the upstream: ${n}: ${v}`);
  }
  const identity = identityOf(pairs, p, 'upstream');
  const want = expectedIdentity(e.route, row.user);
  if (JSON.stringify(sortKeys(identity)) !== JSON.stringify(sortKeys(want))) p.push(`upstream identity ${JSON.stringify(sortKeys(identity))}; expected ${JSON.stringify(sortKeys(want))}`);
  const cookie = String(seen.headers.cookie ?? '');
  if (/(^|;\s*)(__host-|__secure-)?portcullis/i.test(cookie)) p.push(`a Portcullis cookie reached the upstream: ${cookie}`);
  // Hop-by-hop: only Portcullis's own hop; a WebSocket gets exactly Connection: Upgrade + Upgrade: websocket.
  for (const [n, v] of pairs) {
    const lower = n.toLowerCase();
    if (ctx.doorway === 'e' && lower === 'upgrade') { if (v.toLowerCase() !== 'websocket') p.push(`upstream Upgrade: ${v}`); continue; }
    if (HOP.includes(lower)) p.push(`hop-by-hop header reached the upstream: ${n}: ${v}`);
    if (lower === 'connection') {
      const ok = ctx.doorway === 'e' ? /^upgrade$/i.test(v) : /^(keep-alive|close)$/i.test(v);
      if (!ok) p.push(`upstream Connection: ${v}`);
    }
  }
  if (ctx.doorway === 'e' && !/^upgrade$/i.test(String(seen.headers.connection ?? ''))) p.push(`upstream Connection on the upgrade: ${String(seen.headers.connection)}`);
  if (ctx.doorway === 'e' && String(seen.headers.upgrade ?? '').toLowerCase() !== 'websocket') p.push(`upstream Upgrade on the upgrade: ${String(seen.headers.upgrade)}`);
  if (e.forwarding) checkForwarding(seen, ctx.port, p);
  e.check?.(seen, ctx, p);
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}

const refused = (s: number) => s >= 400;

/** Session cache hits and misses so far, from the stack's /metrics. */
async function cacheCounts(s: Stack): Promise<{ hits: number; misses: number }> {
  const r = await request(`${s.server.metricsUrl}/metrics`);
  const text = await r.body.text();
  const read = (name: string) => Number(new RegExp(`^${name}(?:\\{\\})? (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { hits: read('portcullis_session_cache_hits_total'), misses: read('portcullis_session_cache_misses_total') };
}

// ---------------------------------------------------------------------------------------------
// The table

test('every doorway reaches the same decision and gives the upstream the same view', { timeout: 120_000 }, async (t) => {
  // The dev IdP signs with a key we hold, so bearer tokens (d) can be minted for alice and bob.
  const jwk = { ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK), kid: 'doorways-key', alg: 'RS256', use: 'sig' };
  const bearerAud = (raw: Record<string, unknown>) => { (raw.oidc as Record<string, unknown>).bearerAudiences = [AUDIENCE]; };

  const A = await startStack(t, {
    routes: ROUTES,
    idp: { keys: { keys: [jwk] }, ttl: { AccessToken: TOKEN_TTL_S, IdToken: TOKEN_TTL_S } },
    edit: bearerAud,
  });
  const idp = A.idp;
  const B = await startStack(t, { routes: ROUTES, existingIdp: idp, edit: (raw) => { bearerAud(raw); (raw.session as Record<string, unknown>).cacheMaxEntries = 0; } });
  let cOffset = 0;
  const C = await startStack(t, { routes: ROUTES, existingIdp: idp, edit: bearerAud, now: () => Date.now() + cOffset });
  const F = await startStack(t, { routes: ROUTES, existingIdp: idp, edit: (raw) => { bearerAud(raw); raw.trustProxy = ['127.0.0.1']; } });

  // One sign-in per user, on A; the cookie opens on every stack (same secret, cookie store). The
  // sign-in ends with a proxied request on A, so the session is in A's cache from here on.
  const cookies = {} as Record<User, string>;
  for (const user of ['alice', 'bob'] as const) {
    const r = await loginViaHttp(`${A.url}/`, { user, password: USERS[user].password });
    assert.equal(r.status, 200, `${user} signs in`);
    const v = r.jar.get('portcullis', A.url);
    assert.ok(v, `${user}'s session cookie`);
    cookies[user] = v;
  }
  // (c): its own copy of each cookie, replaced by whatever the refreshes set.
  const cCookies: Record<User, string> = { ...cookies };
  cOffset = C_CLOCK_AHEAD_MS;
  let refreshGrants = 0;
  idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') refreshGrants += 1;
  });

  const signing = await importJWK(jwk, 'RS256');
  const nowS = Math.floor(Date.now() / 1000);
  const tokens = {} as Record<User, string>;
  for (const user of ['alice', 'bob'] as const) {
    const u = USERS[user];
    tokens[user] = await new SignJWT({ sub: user, email: u.email, email_verified: true, name: u.name, preferred_username: user, groups: u.groups })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
      .setIssuer(idp.issuer).setAudience(AUDIENCE).setIssuedAt(nowS).setExpirationTime(nowS + 900)
      .sign(signing);
  }

  const portOf = (s: Stack) => Number(new URL(s.url).port);
  const stackOf: Record<Doorway, Stack> = { a: A, b: B, c: C, d: A, e: A, f: F };

  for (const row of ROWS) {
    await t.test(row.name, async (rt) => {
      let refView: UpstreamView | undefined;
      let refIdentity: Record<string, string> | undefined;
      let refStatus: number | undefined;
      for (const { id, label } of DOORWAYS) {
        const skip = row.na?.[id] ?? (id === 'd' && !row.user ? NA.dAnon : undefined);
        await rt.test(label, { skip, timeout: 15_000 }, async () => {
          const s = stackOf[id];
          const port = portOf(s);
          const ctx: Ctx = { doorway: id, port, upstreamPort: s.upstream.port };
          const p: Problems = [];
          const method = row.method ?? 'GET';
          const host: [string, string] = ['Host', `127.0.0.1:${port}`];
          const sessionCookie = row.user ? `portcullis=${id === 'c' ? cCookies[row.user] : cookies[row.user]}` : undefined;
          const cookieHeader = (withSession: boolean) => {
            const parts = [withSession ? sessionCookie : undefined, row.cookies].filter(Boolean);
            return parts.length ? [['Cookie', parts.join('; ')] as [string, string]] : [];
          };
          const rowHeaders = row.headers ?? [];
          const bodyHeaders: Array<[string, string]> = row.body !== undefined ? [['Content-Length', String(Buffer.byteLength(row.body))]] : [];
          const expectContinue = rowHeaders.some(([n, v]) => n.toLowerCase() === 'expect' && /100-continue/i.test(v));

          let head: string;
          let body = row.body;
          let allowed: number[];
          if (id === 'f') {
            // The request as nginx auth_request / Traefik forwardAuth describes it to Portcullis.
            const passed = rowHeaders.filter(([n]) => {
              const c = canonical(n);
              return !FORWARDING.includes(c) && !OVERRIDES.includes(c) && !HOP.includes(c) && c !== 'connection' && !c.startsWith('content-') && !c.startsWith('sec-websocket-');
            });
            head = toHead('GET /oauth2/auth HTTP/1.1', [
              host,
              ['X-Forwarded-Method', method],
              ['X-Forwarded-Proto', 'http'],
              ['X-Forwarded-Host', `127.0.0.1:${port}`],
              ['X-Forwarded-Uri', row.path],
              ['X-Forwarded-For', '127.0.0.1'],
              ...cookieHeader(true),
              ...passed,
            ]);
            body = undefined;
            allowed = row.expect.fa ?? row.expect.status.map((x) => (x === 200 ? 202 : x));
          } else if (id === 'e') {
            const listed = rowHeaders.filter(([n]) => n.toLowerCase() === 'connection').map(([, v]) => v);
            head = toHead(`GET ${row.path} HTTP/1.1`, [
              host,
              ['Connection', ['Upgrade', ...listed].join(', ')],
              ['Upgrade', 'websocket'],
              ['Sec-WebSocket-Key', WS_KEY],
              ['Sec-WebSocket-Version', '13'],
              ...cookieHeader(true),
              ...rowHeaders.filter(([n]) => n.toLowerCase() !== 'connection'),
            ]);
            allowed = row.expect.ws ?? row.expect.status.map((x) => (x === 200 ? 101 : x));
          } else {
            head = toHead(`${method} ${row.path} HTTP/1.1`, [
              host,
              ...(id === 'd' && row.user ? [['Authorization', `Bearer ${tokens[row.user]}`] as [string, string]] : []),
              ...cookieHeader(id !== 'd'),
              ...rowHeaders,
              ...bodyHeaders,
            ]);
            allowed = row.expect.status;
          }

          // Whether the request must get as far as the session stage (for the doorway preconditions).
          const sessionStage = row.user !== undefined && row.expect.status.every((x) => x === 200 || x === 403);
          const cacheBefore = id === 'a' || id === 'b' ? await cacheCounts(s) : undefined;
          const upBefore = s.upstream.requests.length;
          const grantsBefore = refreshGrants;
          // (c): past the minimum interval between two refreshes of one session, so this one refreshes too.
          if (id === 'c') cOffset += REFRESH_MIN_INTERVAL_MS;
          const reply = await exchange(port, head, body, expectContinue && id !== 'f');
          const statusOk = allowed.includes(reply.status);
          if (!statusOk) {
            p.push(`status ${reply.status}${reply.note ? ` (${reply.note})` : ''}; expected ${allowed.join(' or ')}${reply.body ? ` — ${reply.body.slice(0, 300)}` : ''}`);
          }
          if (reply.status >= 500) p.push('a 5xx: no hostile request may cause one');
          if (id !== 'f' && id !== 'e') {
            if (row.expect.got100 && !reply.interim.includes(100)) p.push('no 100 Continue before the answer');
            if (row.expect.no100 && reply.interim.includes(100)) p.push('100 Continue sent for a request that is then refused');
          }
          // (c): the session really went through a refresh (the doorway under test).
          if (id === 'c') {
            for (const [n, v] of reply.headers) {
              const m = n === 'set-cookie' && !/max-age=0/i.test(v) ? /^portcullis=([^;]+)/.exec(v) : null;
              if (m && row.user) cCookies[row.user] = m[1]!;
            }
            if (sessionStage && statusOk && refreshGrants === grantsBefore) p.push('precondition: this request should have refreshed the session (no refresh_token grant at the IdP)');
          }
          // (a) answered from the session cache; (b) opened the cookie.
          if (cacheBefore && sessionStage && statusOk) {
            const after = await cacheCounts(s);
            if (id === 'a' && !(after.hits > cacheBefore.hits && after.misses === cacheBefore.misses)) p.push(`precondition: the session should have come from the cache (hits ${cacheBefore.hits}→${after.hits}, misses ${cacheBefore.misses}→${after.misses})`);
            if (id === 'b' && !(after.misses > cacheBefore.misses)) p.push(`precondition: the session should have been opened, not cached (misses ${cacheBefore.misses}→${after.misses})`);
          }
          if (!row.expect.upstream || refused(reply.status)) await sleep(30);
          const seen = s.upstream.requests.slice(upBefore);

          if (id === 'f') {
            if (seen.length) p.push(`forward-auth proxied ${seen.length} request(s) to the upstream`);
            for (const [n, v] of reply.headers) if (FORGED.test(v)) p.push(`forged value echoed by forward-auth: ${n}: ${v}`);
            if (reply.status === 202) {
              const identity = identityOf(reply.headers, p, 'forward-auth answer');
              const want = expectedIdentity(row.expect.route, row.user);
              if (JSON.stringify(sortKeys(identity)) !== JSON.stringify(sortKeys(want))) p.push(`forward-auth identity ${JSON.stringify(sortKeys(identity))}; expected ${JSON.stringify(sortKeys(want))}`);
              if (refIdentity && JSON.stringify(sortKeys(identity)) !== JSON.stringify(sortKeys(refIdentity))) p.push(`forward-auth identity ${JSON.stringify(sortKeys(identity))} differs from what the upstream got on (a): ${JSON.stringify(sortKeys(refIdentity))}`);
            }
          } else {
            if (seen.length > 1) p.push(`${seen.length} upstream requests for one client request`);
            const one = seen[0];
            if (!row.expect.upstream && one) p.push(`reached the upstream: ${one.method} ${one.url}`);
            if (row.expect.upstream && !one && !refused(reply.status)) p.push('answered without reaching the upstream');
            if (row.expect.upstream && one) {
              checkUpstream(row, one, ctx, p);
              const v = viewOf(one, ctx);
              if (id === 'a') {
                if (p.length === 0) {
                  refView = v;
                  refIdentity = identityOf(pairsOf(one.rawHeaders), [], 'upstream');
                }
              } else if (refView) {
                for (const d of diffViews(v, refView)) p.push(`not the upstream view of (a): ${d}`);
              }
            }
          }
          // The same decision as (a): allowed (2xx/101) or refused. (a) is the reference only when
          // it passed its own checks; otherwise every doorway is held to the row alone.
          if (id === 'a') refStatus = p.length === 0 ? reply.status : undefined;
          else if (refStatus !== undefined && refStatus !== 0 && reply.status !== 0 && refused(refStatus) !== refused(reply.status)) {
            p.push(`decision differs from (a): ${reply.status} here, ${refStatus} on (a)`);
          }
          if (p.length) assert.fail(`${row.name} ${label}:\n  ${p.join('\n  ')}`);
        });
      }
    });
  }
});
