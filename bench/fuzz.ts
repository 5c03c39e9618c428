// `npm run fuzz`: a seeded request fuzzer for the whole stack (dev IdP + echo upstream + Portcullis,
// test/helpers/stack.ts), over RAW sockets (node:net: nothing normalises the bytes), checking
// invariants on what the echo upstream RECEIVES — not on what Portcullis says it did.
//
//   npm run fuzz                                        # 2,000 requests, random seed (printed)
//   npm run fuzz -- --seed 42 --requests 500            # a fixed run
//   npm run fuzz -- --seed 42 --minutes 30              # a long run: as many requests as fit in 30 min
//                                                       # (before a release: --minutes 60, and once more
//                                                       # with --no-session-cache; a new seed each time)
//   npm run fuzz -- --seed 42 --minutes 60 --concurrency 16 --max-print 1
//   npm run fuzz -- --seed 42 --only 1234               # replay one request (or --only 3,17,99), verbose
//   npm run fuzz -- --seed 42 --no-session-cache        # every request opens its cookie (cache-miss doorway)
//   npm run fuzz -- --seed 42 --overlong                # also read paths as a legacy server would (%C0%AE = .)
//
// Request N of seed S is generated from (S, N) alone, so `--seed S --only N` replays it exactly (the
// port, Host and session cookie are this run's). Exit status: 0 no violation, 1 violations, 2 the
// stack did not start or failed its sanity check.
//
// Routes (FUZZ_ROUTES): public `/public` (methods [GET], auth public) · `/api` [GET, POST] any
// signed-in user · `/api` any other method, admin only · `/admin` admin only (the three `/api` and
// `/admin` routes take bearer tokens) · `/s` stripPrefix onto the upstream's `/s-base` · catch-all
// `/` (signed in, websocket). Clients: bob's session cookie (not in `admin`), a tampered copy, no
// cookie; and Authorization headers (TOKEN_KINDS) — bob's and alice's (in `admin`) valid tokens,
// and alice's expired, not-yet-valid, for another audience or issuer, an ID token, a logout token,
// `alg: none`, HS256 keyed with the public key, an unknown key, a swapped payload, garbage, Basic —
// sometimes two headers (Node keeps the first).
//
// Doorways and connections: plain requests and upgrades; forward-auth checks (GET /oauth2/auth
// describing a request in X-Forwarded-Method/-Host/-Uri or X-Original-URL, mostly from the trusted
// peer); requests from the untrusted peer 127.0.0.1 or the stack's trustProxy 127.0.0.2 (a
// loopback alias), or the same request from both ("twins"); HTTP/1.1 pipelines of 2–4 requests on
// one connection, often a refused one (with an unread body, or a request hidden in it) first.
//
// Invariants (each violation is printed with seed, request index and the raw request):
//   5xx            no 5xx from Portcullis (nothing fails upstream here), no crash, still serving at the end
//   forbidden      no request the rules forbid for that client reaches the upstream: the upstream's path
//                  read as Tomcat/Jetty would (unreserved escapes decoded, `;params` stripped from every
//                  segment, empty segments collapsed, dot segments resolved), as a lenient server would
//                  (%2F %5C `\` as separators, other escapes decoded, NUL ends the path) and as a
//                  WHATWG URL parser would; judged with the upstream's method against an independent
//                  reference of the route table (REF_ROUTES; the proxy's matcher is not used). The
//                  client's own target is judged the same way.
//   headers        the upstream never sees a client-sent forwarding-family or identity header (any case,
//                  `_` for `-`), only Portcullis's values (X-Forwarded-For = X-Real-IP = 127.0.0.1,
//                  X-Forwarded-Proto = http, X-Forwarded-Host = the client's Host, identity = bob's, once);
//                  no hop-by-hop header (Connection-listed names, Keep-Alive, TE, Trailer,
//                  Proxy-Connection, HTTP2-Settings, Upgrade and Connection except on a real WebSocket
//                  upgrade, Expect); no Portcullis cookie (`portcullis`, `portcullis_*`) nor the session value
//   method         the upstream sees the method sent
//   one            each request reaches the upstream at most once, and nothing reaches it that was not
//                  sent as a request (a smuggled request inside a body)
//   bearer         the reference judges who a request is per route: on a bearer route its (first)
//                  token's user — nobody for a token that must not verify — else its cookie's; the
//                  upstream's identity headers are that user's
//   trust          from the trusted peer, its forwarding headers pass with this hop appended
//                  (X-Forwarded-For/Forwarded end with 127.0.0.2); identity headers never; twins get
//                  the same decision and the same upstream request but for forwarding headers
//   forward-auth   the check itself never reaches the upstream; an untrusted peer never gets a 2xx; a
//                  202 only for a request every reading of the described raw path allows for that user
//                  (for every method when X-Forwarded-Method is missing), with that user's identity
//                  and nothing the client forged
//   pipeline       answers come in order (an upstream answer names its own request), and no request
//                  reaches the upstream whose answer never came (one behind an answer that closed
//                  the connection)
import { connect } from 'node:net';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { importJWK, SignJWT, type JWK } from 'jose';
import { startStack, type Stack } from '../test/helpers/stack.js';
import { loginViaHttp } from '../test/helpers/browserless-login.js';
import type { CleanupScope } from '../test/helpers/idp.js';
import type { RecordedRequest } from '../dev/devidp/upstream.js';
import { responseEnd } from '../test/helpers/raw-http.js';

// ---------------------------------------------------------------------------------------------
// Seeded PRNG

/** mulberry32: small, fast, good enough for test generation. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of items) total += w;
    let x = this.next() * total;
    for (const [w, v] of items) {
      x -= w;
      if (x < 0) return v;
    }
    return items[items.length - 1]![1];
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/** Seed of request `index` in run `seed`: every request is generated independently (replayable alone). */
export function requestSeed(seed: number, index: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (index + 0x7f4a7c15), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h ^ index, 0x27d4eb2f);
  h ^= h >>> 15;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Route table: the stack's config, and an independent reference of what it means

const ADMIN_ONLY = { claim: 'groups', contains: 'admin' };

export const FUZZ_ROUTES: Array<Record<string, unknown>> = [
  { name: 'public', match: { path: '/public', methods: ['GET'] }, upstream: '{upstream}', auth: 'public' },
  { name: 'api', match: { path: '/api', methods: ['GET', 'POST'] }, upstream: '{upstream}', bearer: true },
  { name: 'api-other', match: { path: '/api' }, upstream: '{upstream}', allow: ADMIN_ONLY, bearer: true },
  { name: 'admin', match: { path: '/admin' }, upstream: '{upstream}', allow: ADMIN_ONLY, bearer: true },
  { name: 'strip', match: { path: '/s' }, upstream: '{upstream}/s-base', stripPrefix: true },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true },
];

type Access = 'public' | 'user' | 'admin';
/** Who a credential proves: bob (signed in, not in `admin`), alice (in `admin`: only ever by bearer token), nobody. */
export type Who = 'bob' | 'alice' | 'anonymous';

/**
 * A request's credentials as the reference reads them: the session cookie's user, and — when the
 * (first) Authorization header carries a bearer token — who that token proves ('anonymous' for
 * one that must not verify). On a `bearer` route a token decides and the cookie is not read.
 */
export interface Principal {
  cookie: Who;
  bearer?: Who | undefined;
}

export interface RefRoute {
  name: string;
  prefix: string[];
  /** undefined: any method. GET allows HEAD (README). */
  methods?: string[];
  access: Access;
  websocket: boolean;
  bearer: boolean;
}

/** What FUZZ_ROUTES mean, written out by hand (first match wins; prefix at a segment boundary). */
export const REF_ROUTES: RefRoute[] = [
  { name: 'public', prefix: ['public'], methods: ['GET', 'HEAD'], access: 'public', websocket: false, bearer: false },
  { name: 'api', prefix: ['api'], methods: ['GET', 'HEAD', 'POST'], access: 'user', websocket: false, bearer: true },
  { name: 'api-other', prefix: ['api'], access: 'admin', websocket: false, bearer: true },
  { name: 'admin', prefix: ['admin'], access: 'admin', websocket: false, bearer: true },
  { name: 'strip', prefix: ['s'], access: 'user', websocket: false, bearer: false },
  { name: 'app', prefix: [], access: 'user', websocket: true, bearer: false },
];
/** Where the strip route's requests land on the upstream. */
const STRIP_BASE = ['s-base'];

function routeFor(segments: string[], method: string): RefRoute {
  for (const r of REF_ROUTES) {
    if (r.prefix.length > segments.length) continue;
    if (!r.prefix.every((p, i) => segments[i] === p)) continue;
    if (r.methods && !r.methods.includes(method)) continue;
    return r;
  }
  return REF_ROUTES[REF_ROUTES.length - 1]!;
}

/** Who a request is on `route`: its bearer token's user on a bearer route that got one, else its cookie's. */
export function whoOn(route: RefRoute, p: Principal | Who): Who {
  if (typeof p === 'string') return p;
  return route.bearer && p.bearer !== undefined ? p.bearer : p.cookie;
}

function allows(route: RefRoute, p: Principal | Who): boolean {
  const who = whoOn(route, p);
  if (route.access === 'public') return true;
  if (route.access === 'user') return who !== 'anonymous';
  return who === 'alice';
}

// ---------------------------------------------------------------------------------------------
// Path readings: how a server behind the proxy could understand a request target

export type Reading = 'tomcat' | 'lenient' | 'whatwg' | 'overlong';

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** The path of a request target: origin-form up to `?`, absolute-form's path; null for `*` and the like. */
export function targetPath(target: string): string | null {
  let p: string;
  if (target.startsWith('/')) p = target;
  else {
    const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*(.*)$/.exec(target);
    if (!m) return null;
    p = m[1]!.startsWith('/') ? m[1]! : `/${m[1]!}`;
  }
  const q = p.indexOf('?');
  return q === -1 ? p : p.slice(0, q);
}

function resolveSegments(raw: string[]): string[] {
  const out: string[] = [];
  for (const seg of raw) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return out;
}

/** Tomcat/Jetty: `;params` stripped from every segment, unreserved escapes decoded, `//` collapsed, dot segments resolved. */
function readTomcat(path: string): string[] {
  return resolveSegments(path.split('/').map((seg) => {
    const semi = seg.indexOf(';');
    const bare = semi === -1 ? seg : seg.slice(0, semi);
    return bare.replace(/%([0-9A-Fa-f]{2})/g, (all, hex: string) => {
      const c = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(c) ? c : all;
    });
  }));
}

/**
 * A lenient server: `?`/`#` end the path, `\` and encoded `/` `\` are separators, every other escape
 * decoded once (but `%25 %3B %3F %23`), NUL ends the path, then Tomcat's reading. With `overlong`,
 * also the overlong UTF-8 forms of `.` and `/` (%C0%AE, %C0%AF, %E0%80%AE…) as old servers did.
 */
function readLenient(path: string, overlong: boolean): string[] {
  let p = path.replace(/[#].*$/s, '').replace(/\\/g, '/');
  if (overlong) p = p.replace(/%c0%ae|%e0%80%ae/gi, '.').replace(/%c0%af|%e0%80%af/gi, '/');
  p = p.replace(/%([0-9A-Fa-f]{2})/g, (all, hex: string) => {
    const code = parseInt(hex, 16);
    if (code === 0x25 || code === 0x3b || code === 0x3f || code === 0x23) return all;
    if (code === 0x5c) return '/';
    return String.fromCharCode(code);
  });
  const nul = p.indexOf('\0');
  if (nul !== -1) p = p.slice(0, nul);
  return readTomcat(p);
}

function readWhatwg(target: string): string[] | null {
  try {
    return readTomcat(new URL(target, 'http://upstream.invalid').pathname);
  } catch {
    return null;
  }
}

function readings(target: string, overlong: boolean): Array<[Reading, string[]]> {
  const out: Array<[Reading, string[]]> = [];
  const path = targetPath(target);
  if (path !== null) {
    out.push(['tomcat', readTomcat(path)]);
    out.push(['lenient', readLenient(path, false)]);
    if (overlong) out.push(['overlong', readLenient(path, true)]);
  }
  if (target.startsWith('/')) {
    const w = readWhatwg(target);
    if (w) out.push(['whatwg', w]);
  }
  return out;
}

export interface Judgement {
  reading: Reading;
  route: RefRoute;
  segments: string[];
}

/**
 * The first reading under which `who` may not send `method` to this request target, if any (the
 * reference judge). `viaUpstream`: the target is what the upstream received, where `/s-base/…` may
 * also be the strip route's `/s/…`.
 */
export function forbiddenReading(target: string, method: string, who: Who | Principal, overlong = false, viaUpstream = false): Judgement | undefined {
  for (const [reading, segs] of readings(target, overlong)) {
    const route = routeFor(segs, method);
    if (allows(route, who)) continue;
    // On the upstream, `/s-base/…` may also be the strip route's `/s/…`.
    if (viaUpstream && STRIP_BASE.every((p, i) => segs[i] === p)) {
      const viaStrip = routeFor(['s', ...segs.slice(STRIP_BASE.length)], method);
      if (viaStrip.name === 'strip' && allows(viaStrip, who)) continue;
    }
    return { reading, route, segments: segs };
  }
  return undefined;
}

/** The most telling trick in a target, for grouping violations into classes. */
function trickOf(target: string): string {
  const p = targetPath(target) ?? target;
  if (!target.startsWith('/')) return target === '*' ? 'asterisk-form' : /^[a-z]+:\/\//i.test(target) ? 'absolute-form' : 'no-leading-slash';
  if (/%2f|%5c|\\/i.test(p)) return 'encoded-separator';
  if (/%00/.test(p)) return 'nul';
  if (/(^|\/);/.test(p)) return 'params-on-empty-segment';
  if (/(^|\/)(\.|%2e){1,2};/i.test(p)) return 'dot-segment-params';
  if (/;/.test(p)) return 'params';
  if (/%2e/i.test(p)) return 'encoded-dot-segment';
  if (/(^|\/)\.\.?(\/|$)/.test(p)) return 'dot-segment';
  if (/%c0|%e0%80/i.test(p)) return 'overlong-utf8';
  if (/%[0-9a-f]{2}/i.test(p)) return 'encoded-unreserved';
  if (/\/\//.test(p)) return 'double-slash';
  return 'plain';
}

/** What a non-Tomcat reading decoded differently in a forwarded path. */
function readingTrick(reading: Reading, url: string): string {
  if (reading === 'overlong') return 'overlong-utf8';
  if (reading === 'lenient') {
    if (/%2f|%5c|\\/i.test(url)) return 'encoded-separator';
    if (/%00/.test(url)) return 'nul';
    if (url.includes('#')) return 'fragment';
  }
  return trickOf(url);
}

// ---------------------------------------------------------------------------------------------
// Header families

export const FORWARDING_FAMILY = [
  'Forwarded', 'X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'X-Forwarded-Port', 'X-Forwarded-Ssl',
  'X-Forwarded-Scheme', 'X-Forwarded-Server', 'X-Real-IP', 'True-Client-IP', 'X-Client-IP', 'CF-Connecting-IP',
  'Fastly-Client-IP', 'X-Cluster-Client-IP', 'X-Original-Forwarded-For', 'Front-End-Https', 'X-Url-Scheme',
  'X-Original-URL', 'X-Rewrite-URL', 'X-Forwarded-Uri', 'X-Forwarded-Prefix', 'X-Forwarded-Path', 'X-Original-Uri',
  'X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X-Forwarded-Method',
];
export const IDENTITY_FAMILY = [
  'X-Forwarded-User', 'X-Forwarded-Email', 'X-Forwarded-Preferred-Username', 'X-Forwarded-Groups',
  'X-Forwarded-Groups-Truncated', 'X-WEBAUTH-USER', 'X-WEBAUTH-EMAIL', 'X-WEBAUTH-NAME', 'X-WEBAUTH-ROLE',
  'X-WEBAUTH-GROUPS', 'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Auth-Request-Preferred-Username',
  'X-Auth-Request-Groups', 'X-Auth-Request-Access-Token', 'X-Portcullis-Assertion', 'X-Forwarded-Access-Token',
];
const FAMILY = new Set([...FORWARDING_FAMILY, ...IDENTITY_FAMILY].map((n) => n.toLowerCase()));
/** Family members Portcullis itself sets (hyphen, lower case), each checked by value. */
/** Family members Portcullis itself sets (hyphen, lower case), each checked by value: the identity of each user. */
const IDENTITY_OF: Record<'bob' | 'alice', Record<string, string>> = {
  bob: { 'x-forwarded-user': 'bob', 'x-forwarded-email': 'bob@example.com', 'x-forwarded-preferred-username': 'bob', 'x-forwarded-groups': '' },
  alice: { 'x-forwarded-user': 'alice', 'x-forwarded-email': 'alice@example.com', 'x-forwarded-preferred-username': 'alice', 'x-forwarded-groups': 'admin,dev' },
};
const BOB_IDENTITY = IDENTITY_OF.bob;
/** Forwarding-family members, and the routing overrides, a trusted proxy may send (hyphen, lower case). */
const FORWARDING_LOWER = new Set(FORWARDING_FAMILY.map((n) => n.toLowerCase()));
const PORTCULLIS_SETS = new Set(['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip', 'x-request-id', ...Object.keys(BOB_IDENTITY)]);
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings', 'expect']);
const FORGED = /fzforged|6\.6\.6\.6|7\.7\.7\.7/i;
const SESSION_COOKIE = 'portcullis';

function spell(rng: Rng, canonical: string, underscores = true): string {
  const lower = canonical.toLowerCase();
  switch (rng.int(underscores ? 7 : 4)) {
    case 0: return canonical;
    case 1: return lower;
    case 2: return canonical.toUpperCase();
    case 3: return [...canonical].map((c) => (rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase())).join('');
    case 4: return lower.replace(/-/g, '_');
    case 5: return canonical.replace(/-/g, '_');
    default: return canonical.replace('-', '_');
  }
}

function forgedValue(rng: Rng, canonical: string): string {
  const n = canonical.toLowerCase();
  if (n === 'forwarded') return rng.pick(['for=6.6.6.6;host=fzforged.example;proto=https', 'for="[2001:db8::6]";by=fzforged', 'for=6.6.6.6, for=7.7.7.7']);
  if (n.endsWith('-for') || n.endsWith('-ip')) return rng.pick(['6.6.6.6', '6.6.6.6, 7.7.7.7', '127.0.0.1, 6.6.6.6', 'fzforged']);
  if (n.endsWith('-host') || n.endsWith('-server')) return 'fzforged.example';
  if (n.endsWith('-proto') || n.endsWith('-scheme')) return 'https';
  if (n.endsWith('-port')) return '6666';
  if (n.endsWith('-ssl') || n.endsWith('-https')) return 'on';
  if (/(url|uri|path|prefix)$/.test(n)) return rng.pick(['/admin?fzforged', '/admin', '/api/fzforged']);
  if (n.includes('method')) return rng.pick(['DELETE', 'PUT', 'PROPFIND']);
  if (n.endsWith('groups')) return 'admin,fzforged';
  if (n.endsWith('email')) return 'fzforged@example.com';
  return rng.pick(['fzforged-admin', 'alice fzforged']);
}

// ---------------------------------------------------------------------------------------------
// Generation

export interface FuzzContext {
  port: number;
  /** bob's session cookie value. */
  bob: string;
  /** Bearer tokens by kind (TOKEN_KINDS), minted once per run. */
  tokens: Record<string, string>;
}

/** Where a request comes from: 127.0.0.1, an untrusted client; 127.0.0.2, the stack's trustProxy. */
export type Peer = 'untrusted' | 'trusted';
export const PEER_ADDRESS: Record<Peer, string> = { untrusted: '127.0.0.1', trusted: '127.0.0.2' };

/** The original request a forward-auth check describes (X-Forwarded-Method/-Uri or X-Original-URL). */
export interface Described {
  /** undefined: no X-Forwarded-Method sent. */
  method: string | undefined;
  /** The path (and query) as the fronting proxy would forward it, raw. */
  path: string;
}

export interface FuzzRequest {
  index: number;
  id: string;
  method: string;
  target: string;
  /** Header lines as sent (some deliberately malformed). */
  lines: string[];
  body: string;
  /** Head sent first; the body after `100 Continue` (or 1 s). */
  expectContinue: boolean;
  who: Who;
  cookieKind: 'bob' | 'tampered' | 'none';
  /** Lower-case names listed in the client's Connection header(s). */
  connectionListed: string[];
  /** Host values the client asked for (Host headers, absolute-form authority). */
  hosts: string[];
  upgrade: 'none' | 'websocket' | 'h2c' | 'no-connection' | 'other';
  requestId: string | undefined;
  /** A request Portcullis may legitimately wait on (a body shorter than its Content-Length). */
  mayHang: boolean;
  head: string;
  /** Who the first Authorization header's bearer token proves (undefined: no bearer token). */
  bearer?: Who | undefined;
  /** The kinds of Authorization headers sent, in order (TOKEN_KINDS names). */
  auth?: string[];
  /** Sent from this peer (default untrusted). */
  peer?: Peer;
  /** Also sent from the trusted peer, as `<id>-t`, and both compared. */
  twin?: boolean;
  /** This is the trusted copy of that request id. */
  twinOf?: string;
  /** One of a pipeline's requests. */
  inPipeline?: boolean;
  /** A forward-auth check (GET /oauth2/auth) describing this request. */
  described?: Described | undefined;
  /** Several requests written at once on one connection (HTTP/1.1 pipelining); this one only carries them. */
  pipeline?: FuzzRequest[];
}

/**
 * Authorization headers: [weight, kind, who a verifying Portcullis may take it for]. Only
 * `valid-*` tokens verify; every `*-alice` is signed or shaped like alice's (in `admin`) to try
 * the rule it must fail: expired, not yet valid, another audience or issuer, an ID token (for the
 * client, or for a bearer audience but with a nonce), a logout token, `alg: none`, HS256 keyed
 * with the public key, a key the IdP does not publish, a payload swapped under bob's signature.
 * `basic` and `bearer-empty` carry no bearer token (the cookie decides).
 */
export const TOKEN_KINDS: ReadonlyArray<readonly [number, string, Who | undefined]> = [
  [10, 'valid-bob', 'bob'], [8, 'valid-alice', 'alice'], [5, 'expired-alice', 'anonymous'], [3, 'nbf-future-alice', 'anonymous'],
  [4, 'wrong-aud-alice', 'anonymous'], [3, 'wrong-iss-alice', 'anonymous'], [4, 'id-token-alice', 'anonymous'],
  [4, 'id-token-aud-alice', 'anonymous'], [2, 'logout-token-alice', 'anonymous'], [3, 'alg-none-alice', 'anonymous'],
  [3, 'hs256-alice', 'anonymous'], [3, 'unknown-key-alice', 'anonymous'], [4, 'tampered-alice', 'anonymous'],
  [6, 'garbage', 'anonymous'], [3, 'session-cookie', 'anonymous'], [4, 'basic', undefined], [2, 'bearer-empty', undefined],
];
const TOKEN_WEIGHTS = TOKEN_KINDS.map(([w, kind]) => [w, kind] as const);
const PROVES = new Map(TOKEN_KINDS.map(([, kind, who]) => [kind, who]));

/** The Authorization header value for a token kind. */
function authorizationValue(rng: Rng, kind: string, ctx: FuzzContext): string {
  const scheme = rng.pick(['Bearer', 'Bearer', 'Bearer', 'bearer', 'BEARER']);
  switch (kind) {
    case 'basic': return `Basic ${Buffer.from(rng.pick(['bob:bob-password', 'alice:x', ':'])).toString('base64')}`;
    case 'bearer-empty': return rng.pick(['Bearer', 'Bearer ', 'Bearer    ']);
    case 'session-cookie': return `${scheme} ${ctx.bob}`;
    case 'garbage': return `${scheme} ${rng.pick(['not.a.jwt', 'x', 'a.b.c', 'eyJhbGciOiJub25lIn0..', 'e30.e30.e30', '%00', `${'A'.repeat(rng.range(100, 5000))}`, 'garbage-token'])}`;
    default: return `${scheme} ${ctx.tokens[kind]}`;
  }
}

/** `oidc.bearerAudiences` of the fuzz stack. */
const FUZZ_AUDIENCE = 'urn:portcullis-fuzz';

/** Every TOKEN_KINDS token that is a JWT, signed (or not) as its kind says. */
async function mintTokens(idpJwk: JWK, issuer: string, clientId: string): Promise<Record<string, string>> {
  const key = await importJWK(idpJwk, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const bob = { sub: 'bob', email: 'bob@example.com', preferred_username: 'bob', groups: [] as string[] };
  const alice = { sub: 'alice', email: 'alice@example.com', preferred_username: 'alice', groups: ['admin', 'dev'] };
  const sign = (claims: Record<string, unknown>, o: { aud?: string; iss?: string; iat?: number; exp?: number; nbf?: number } = {}, signWith: { key: Parameters<SignJWT['sign']>[0]; alg: string; kid: string } = { key, alg: 'RS256', kid: idpJwk.kid! }) => {
    const j = new SignJWT(claims).setProtectedHeader({ alg: signWith.alg, kid: signWith.kid, typ: 'JWT' }).setIssuer(o.iss ?? issuer)
      .setAudience(o.aud ?? FUZZ_AUDIENCE).setIssuedAt(o.iat ?? now).setExpirationTime(o.exp ?? now + 6 * 3600);
    if (o.nbf !== undefined) j.setNotBefore(o.nbf);
    return j.sign(signWith.key);
  };
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const validBob = await sign(bob);
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const publicPem = createPublicKeyPem(idpJwk);
  return {
    'valid-bob': validBob,
    'valid-alice': await sign(alice),
    'expired-alice': await sign(alice, { iat: now - 7200, exp: now - 3600 }),
    'nbf-future-alice': await sign(alice, { nbf: now + 3600 }),
    'wrong-aud-alice': await sign(alice, { aud: 'urn:portcullis-fuzz-other' }),
    'wrong-iss-alice': await sign(alice, { iss: 'http://fzforged.example/' }),
    'id-token-alice': await sign({ ...alice, nonce: 'fz-nonce', at_hash: 'fz-at-hash', azp: clientId }, { aud: clientId }),
    'id-token-aud-alice': await sign({ ...alice, nonce: 'fz-nonce', at_hash: 'fz-at-hash' }),
    'logout-token-alice': await sign({ sub: 'alice', groups: alice.groups, sid: 'fz-sid', jti: 'fz-jti', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }),
    'alg-none-alice': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...alice, iss: issuer, aud: FUZZ_AUDIENCE, iat: now, exp: now + 6 * 3600 })}.`,
    'hs256-alice': await sign(alice, {}, { key: new TextEncoder().encode(publicPem), alg: 'HS256', kid: idpJwk.kid! }),
    'unknown-key-alice': await sign(alice, {}, { key: other, alg: 'RS256', kid: idpJwk.kid! }),
    'tampered-alice': `${validBob.split('.')[0]}.${b64({ ...alice, iss: issuer, aud: FUZZ_AUDIENCE, iat: now, exp: now + 6 * 3600 })}.${validBob.split('.')[2]}`,
  };
}

/** The IdP's public key as PEM: what an "HMAC keyed with the public key" forgery uses as its secret. */
function createPublicKeyPem(jwk: JWK): string {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return createPublicKey({ key: pub as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
}

/** Who a request's credentials prove, as the reference judges them (Node keeps the first Authorization header). */
function bearerOf(auth: string[]): Who | undefined {
  return auth.length ? PROVES.get(auth[0]!) : undefined;
}

const METHODS: ReadonlyArray<readonly [number, string]> = [
  [30, 'GET'], [12, 'POST'], [6, 'HEAD'], [5, 'PUT'], [5, 'DELETE'], [4, 'OPTIONS'], [4, 'PATCH'], [3, 'PROPFIND'],
  [2, 'PROPPATCH'], [2, 'MKCOL'], [2, 'LOCK'], [1, 'UNLOCK'], [2, 'REPORT'], [2, 'SEARCH'], [1, 'MKCALENDAR'],
  [1, 'COPY'], [1, 'MOVE'], [1, 'TRACE'], [1, 'PURGE'], [1, 'QUERY'], [0.5, 'CONNECT'], [2, 'get'], [1, 'Post'],
  [1, 'FOO'], [0.5, 'G3T'], [0.5, 'BREW'], [0.5, 'M-SEARCH'], [0.5, 'GET\t'],
];

const TAME_METHODS = METHODS.filter(([, m]) => /^[A-Z]+$/.test(m) && !['CONNECT', 'FOO', 'BREW', 'QUERY'].includes(m));

const ROUTE_WORDS = ['public', 'admin', 'api', 's'];
const WORDS = [
  'public', 'admin', 'api', 's', 's-base', 'x', 'panel', 'users', 'ADMIN', 'Admin', 'PUBLIC', 'Api', 'administrator',
  'publicity', 'apis', 'sx', 'index.html', 'a.b', '~user', 'admin.', 'admin~', '.admin', '...',
];
const ENCODED_WORDS = [
  '%61dmin', 'adm%69n', '%61%64%6d%69%6e', '%41DMIN', '%70ublic', 'publi%63', '%61pi', '%73', '%61%70%69',
  'caf%E9', 'caf%c3%a9', 'x%23y', 'a%20b', 'x%3By', 'admin%3b', 'x%3fy', 'x%25y', '%7Euser', 'admin%20', 'admin%09',
];
const UNSAFE_WORDS = ['x"y', '<x>', '{a}', 'a|b', 'a^b', 'a`b', '"', '<', '}', "it's", 'a[0]'];
const TRICK_SEGMENTS = [
  '', '.', '..', '%2e', '%2E', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '..;', '.;', ';', ';x', ';jsessionid=1', '..%3B',
  '..%3b', '%2f', '%2F', '..%2f', '%2e%2e%2f', '%5c', '..%5c', '%5C', '\\', '..\\', '\\..', '%00', '..%00', '%',
  '%4', '%zz', '%g1', '%%32%65', '%252e%252e', '%252f', '%C0%AE%C0%AE', '%c0%ae', '%C0%AF', '%e0%80%ae', '%E9',
  '%ff', '%u002e', 'x%0d%0ay', '%09', '..%2500', '%2e%2e;x', '..;jsessionid=1', '.%2e;',
];
const UP_SEGMENTS = ['..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '..;', '..;x', '%2e%2e;', '..%2f', '..%5c', '..\\', '..%00', '%C0%AE%C0%AE', '%252e%252e', '..%3B'];
const PARAMS = [';', ';x', ';jsessionid=ABC123', ';a=b;c=d', ';%2e%2e', ';=', ';/'];
/** What a tame request uses: tricks the proxy should resolve and forward, rather than refuse. */
const TAME_TRICKS = ['', '.', '..', '%2e', '%2E', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '..%3B', '%E9', '%ff', '%252e%252e', '%C0%AE%C0%AE', '%c0%ae'];
const TAME_UPS = ['..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%252e%252e', '%C0%AE%C0%AE', '..%3B'];
const TAME_PARAMS = [';x', ';jsessionid=ABC123', ';a=b;c=d', ';', ';='];
const LEADS = ['/;/', '/;x/', '/;jsessionid=1/', '/.;/', '//', '///', '/./', '/%2e/', '/%2f', '/%5c', '/\\', '/;', '/..;/', '/x/../', '/public/..;/'];
const QUERIES = ['?a=1', '?next=/admin', '?x=%2F..%2Fadmin', '?', '?;x', '?a=1&b=%00', '?x=<>"', '?/admin', '?%2e%2e', '??'];

function segment(rng: Rng, tame = false): string {
  const kind = tame
    ? rng.weighted([[50, 'word'], [20, 'encoded'], [20, 'trick'], [6, 'unsafe'], [4, 'garbage']] as const)
    : rng.weighted([[40, 'word'], [15, 'encoded'], [30, 'trick'], [6, 'unsafe'], [9, 'garbage']] as const);
  let s: string;
  if (kind === 'word') s = rng.pick(WORDS);
  else if (kind === 'encoded') s = rng.pick(ENCODED_WORDS);
  else if (kind === 'trick') s = rng.pick(tame ? TAME_TRICKS : TRICK_SEGMENTS);
  else if (kind === 'unsafe') s = rng.pick(UNSAFE_WORDS);
  else {
    const alphabet = tame ? 'abcxyz019-._~!$&\'()*+,=:@"<>{}|^`[]' : 'abcxyz019-._~!$&\'()*+,=:@%;"<>{}|^`[]\\';
    s = Array.from({ length: rng.range(1, 8) }, () => rng.pick([...alphabet])).join('');
  }
  if (kind !== 'trick' && rng.chance(0.15)) s += rng.pick(tame ? TAME_PARAMS : PARAMS);
  return s;
}

function joinSegments(rng: Rng, segs: string[]): string {
  return segs.map((s, i) => (i === 0 ? s : (rng.chance(0.08) ? '//' : '/') + s)).join('');
}

function genPath(rng: Rng, tame: boolean): string {
  const shape = tame
    ? rng.weighted([[40, 'random'], [35, 'traversal'], [25, 'decorated']] as const)
    : rng.weighted([[35, 'random'], [30, 'traversal'], [20, 'decorated'], [15, 'lead']] as const);
  let path: string;
  if (shape === 'random') {
    const segs = Array.from({ length: rng.range(1, 5) }, () => segment(rng, tame));
    if (rng.chance(0.6)) segs[0] = rng.pick(ROUTE_WORDS);
    path = `/${joinSegments(rng, segs)}`;
  } else if (shape === 'traversal') {
    const from = [rng.pick(['public', 'api', 's', 'x', 'public', 's-base'])];
    if (rng.chance(0.4)) from.push(segment(rng, tame));
    const ups = Array.from({ length: rng.range(1, 3) }, () => (rng.chance(0.8) ? rng.pick(tame ? TAME_UPS : UP_SEGMENTS) : segment(rng, tame)));
    const to = [rng.pick(['admin', 'admin', 'api', 'public', 'x', '%61dmin', 'admin;x'])];
    if (rng.chance(0.4)) to.push(segment(rng, tame));
    path = `/${joinSegments(rng, [...from, ...ups, ...to])}`;
  } else if (shape === 'decorated' && tame) {
    const word = rng.pick(['admin', 'admin', 'api', 'public', 's']);
    path = `/${rng.weighted([
      [4, `${word}${rng.pick(TAME_PARAMS)}`], [2, `${word}/.`], [2, `${word}/..`], [2, `${word}/${segment(rng, true)}`],
      [2, `${word}${rng.pick(TAME_PARAMS)}/${segment(rng, true)}`], [1, `${word}.`], [1, `${word}%20`], [1, `${word}%2e`],
      [1, `%2e/${word}`], [1, `./${word}`], [1, `/${word}`],
    ] as const)}`;
  } else if (shape === 'decorated') {
    const word = rng.pick(['admin', 'admin', 'api', 'public', 's']);
    const deco = rng.weighted([
      [4, `${word}${rng.pick(PARAMS)}`], [2, `${word}%2f`], [2, `${word}%2F..`], [2, `${word}/.`], [2, `${word}/..`],
      [2, `${word}%00`], [2, `${word}%`], [1, `${word}%4`], [2, `${word}/${segment(rng)}`], [2, `${word}${rng.pick(PARAMS)}/${segment(rng)}`],
      [1, `${word}.`], [1, `${word}%20`], [1, `${word}%2e`], [1, `${word}#/../public`], [1, `${word}\\`],
    ] as const);
    path = `/${deco}`;
  } else {
    path = `${rng.pick(LEADS)}${joinSegments(rng, [rng.pick(['admin', 'api', 'public', 's', '%61dmin']), ...(rng.chance(0.4) ? [segment(rng)] : [])])}`;
  }
  if (rng.chance(0.1)) path += '/';
  if (rng.chance(0.25)) path += rng.pick(QUERIES);
  if (rng.chance(0.03)) path += rng.pick(['#frag', '#/../admin']);
  return path;
}

function genLongPath(rng: Rng): string {
  const n = rng.pick([600, 2_000, 5_000, 9_000, 20_000]);
  switch (rng.int(5)) {
    case 0: return `/public/${'a'.repeat(n)}/../../admin`;
    case 1: return `/${'x/../'.repeat(Math.ceil(n / 5))}admin`;
    case 2: return `/public/${'%2e%2e/'.repeat(Math.ceil(n / 7))}admin`;
    case 3: return `/public${';'.repeat(n)}/x`;
    default: return `/api/${Array.from({ length: Math.ceil(n / 3) }, () => rng.pick(['a/', './', '//', ';/'])).join('')}admin?q=${'z'.repeat(rng.int(2000))}`;
  }
}

function genTarget(rng: Rng, ctx: FuzzContext, tame: boolean): string {
  if (tame) return rng.chance(0.9) ? genPath(rng, true) : `http://127.0.0.1:${ctx.port}${genPath(rng, true)}`;
  const form = rng.weighted([
    [80, 'origin'], [6, 'absolute'], [2, 'absolute-foreign'], [1, 'absolute-upper'], [1.5, 'asterisk'], [1.5, 'relative'],
    [2, 'scheme-relative'], [5, 'long'],
  ] as const);
  switch (form) {
    case 'origin': return genPath(rng, false);
    case 'absolute': return `http://127.0.0.1:${ctx.port}${genPath(rng, false)}`;
    case 'absolute-foreign': return `http://${rng.pick(['evil.example', 'localhost', '127.0.0.1'])}${genPath(rng, false)}`;
    case 'absolute-upper': return `HTTP://127.0.0.1:${ctx.port}${genPath(rng, false)}`;
    case 'asterisk': return '*';
    case 'relative': return genPath(rng, false).slice(1) || 'admin';
    case 'scheme-relative': return `//evil.example${genPath(rng, false)}`;
    default: return genLongPath(rng);
  }
}

function tamper(rng: Rng, value: string): string {
  switch (rng.int(4)) {
    case 0: {
      const i = Math.floor(value.length / 2);
      const c = value[i] === 'A' ? 'B' : 'A';
      return value.slice(0, i) + c + value.slice(i + 1);
    }
    case 1: return value.slice(0, Math.floor(value.length * 0.7));
    case 2: return `${value.slice(0, 20)}${'A'.repeat(Math.max(0, value.length - 40))}${value.slice(-20)}`;
    default: return rng.pick(['', 'garbage', 'e30', 'a.b.c.d.e', `${value}x`]);
  }
}

const SMUGGLE_ROUTES = ['/admin', '/api', '/public'];

/**
 * Request `index` of run `seed`, a pure function of (seed, index, ctx): most are one request (from
 * the untrusted peer, the trusted one, or both in turn); some are forward-auth checks; some are a
 * pipeline of several requests on one connection.
 */
export function generate(seed: number, index: number, ctx: FuzzContext): FuzzRequest {
  const rng = new Rng(requestSeed(seed, index));
  const id = `${seed}-${index}`;
  const shape = rng.weighted([[86, 'single'], [8, 'forward-auth'], [6, 'pipeline']] as const);
  // Forward-auth answers trusted peers: most checks come from there (the others must all be refused).
  const peer = rng.weighted(shape === 'forward-auth' ? [[25, 'untrusted'], [60, 'trusted'], [15, 'twin']] as const : [[72, 'untrusted'], [13, 'trusted'], [15, 'twin']] as const);
  if (shape === 'pipeline') return pipeline(rng, index, id, ctx, peer === 'trusted' ? 'trusted' : 'untrusted');
  const req = build(rng, index, id, ctx, { forwardAuth: shape === 'forward-auth' });
  req.peer = peer === 'trusted' ? 'trusted' : 'untrusted';
  req.twin = peer === 'twin';
  return req;
}

/** The same request from the trusted peer, as `<id>-t`. */
export function twinOf(req: FuzzRequest): FuzzRequest {
  const id = `${req.id}-t`;
  return { ...req, id, peer: 'trusted', twin: false, twinOf: req.id, head: req.head.replace(`\r\nX-Fuzz-Id: ${req.id}\r\n`, `\r\nX-Fuzz-Id: ${id}\r\n`) };
}

/** A plain well-formed request (sanity checks, the designed members of a pipeline). */
function simpleRequest(index: number, id: string, ctx: FuzzContext, method: string, target: string, cookie: boolean, o: { token?: string; body?: string; contentType?: string; extra?: string[] } = {}): FuzzRequest {
  const body = o.body ?? '';
  const auth = o.token ? [o.token] : [];
  const lines = [
    `Host: 127.0.0.1:${ctx.port}`, `X-Fuzz-Id: ${id}`, 'Accept: application/json', ...(cookie ? [`Cookie: ${SESSION_COOKIE}=${ctx.bob}`] : []),
    ...(o.token ? [`Authorization: Bearer ${ctx.tokens[o.token]}`] : []), ...(o.extra ?? []), ...(body ? [`Content-Type: ${o.contentType ?? 'text/plain'}`, `Content-Length: ${Buffer.byteLength(body)}`] : []),
  ];
  return {
    index, id, method, target, lines, body, expectContinue: false, who: cookie ? 'bob' : 'anonymous', cookieKind: cookie ? 'bob' : 'none',
    connectionListed: [], hosts: [`127.0.0.1:${ctx.port}`], upgrade: 'none', requestId: undefined, mayHang: false,
    head: `${method} ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`, auth, bearer: bearerOf(auth),
  };
}

/**
 * Several requests on one connection, written at once (HTTP/1.1 pipelining): well-framed tame
 * ones, often led by a refused request (with or without an unread body — or one carrying a
 * request in its body) followed by an allowed one. Each must get its own answer, in order, and
 * the upstream exactly what the rules allow for each.
 */
function pipeline(rng: Rng, index: number, id: string, ctx: FuzzContext, peer: Peer): FuzzRequest {
  const subs: FuzzRequest[] = [];
  const n = rng.range(2, 4);
  const sub = () => `${id}.${subs.length}`;
  if (rng.chance(0.5)) {
    const smuggled = `GET /admin/fz HTTP/1.1\r\nHost: 127.0.0.1:${ctx.port}\r\nX-Fuzz-Id: ${id}.0-smuggled\r\nCookie: ${SESSION_COOKIE}=${ctx.bob}\r\n\r\n`;
    const refused = rng.pick([
      () => simpleRequest(index, sub(), ctx, 'GET', '/admin/x', true),
      () => simpleRequest(index, sub(), ctx, 'DELETE', '/api/x', true),
      () => simpleRequest(index, sub(), ctx, 'POST', '/api/x', false, { body: '{"a":1}', contentType: 'application/json' }),
      () => simpleRequest(index, sub(), ctx, 'POST', '/admin/x', true, { body: smuggled }),
      () => simpleRequest(index, sub(), ctx, 'GET', '/admin/x', false, { token: 'expired-alice' }),
    ]);
    subs.push(refused());
    const allowed = rng.pick([
      () => simpleRequest(index, sub(), ctx, 'GET', '/api/y', true),
      () => simpleRequest(index, sub(), ctx, 'GET', '/public/z', false),
      () => simpleRequest(index, sub(), ctx, 'GET', '/admin/ok', false, { token: 'valid-alice' }),
    ]);
    subs.push(allowed());
  }
  while (subs.length < n) subs.push(build(new Rng(rng.int(2 ** 32)), index, sub(), ctx, { pipelined: true }));
  for (const r of subs) { r.peer = peer; r.inPipeline = true; }
  const head = subs.map((r) => r.head + r.body).join('');
  return {
    index, id, method: 'PIPELINE', target: subs.map((r) => r.target).join(' '), lines: [], body: '', expectContinue: false,
    who: 'anonymous', cookieKind: 'none', connectionListed: [], hosts: [], upgrade: 'none', requestId: undefined,
    mayHang: false, head, peer, pipeline: subs,
  };
}

const TAME_FA_METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'PROPFIND', 'OPTIONS'];

/** One request; `forwardAuth`: a check of the request it describes; `pipelined`: well-framed, to share a connection. */
function build(rng: Rng, index: number, id: string, ctx: FuzzContext, mode: { forwardAuth?: boolean; pipelined?: boolean }): FuzzRequest {
  // Tame requests are well-formed HTTP with paths the proxy should resolve and forward (so the
  // header invariants see many forwarded requests); wild ones also try what must be refused.
  const tame = mode.pipelined ? true : rng.chance(0.5);
  let method = rng.weighted(tame ? TAME_METHODS : METHODS);
  let target = genTarget(rng, ctx, tame);
  let described: Described | undefined;
  if (mode.forwardAuth) {
    method = rng.weighted([[85, 'GET'], [5, 'HEAD'], [5, 'POST'], [5, 'PUT']] as const);
    target = rng.weighted([[90, '/oauth2/auth'], [4, '/oauth2/auth?x=1'], [3, '/oauth2/%61uth'], [3, '/oauth2//auth']] as const);
    const dMethod = rng.weighted([[72, 'tame'], [10, 'missing'], [6, 'lower'], [4, 'odd'], [8, 'any']] as const);
    described = {
      method: dMethod === 'missing' ? undefined : dMethod === 'tame' ? rng.pick(TAME_FA_METHODS)
        : dMethod === 'lower' ? rng.pick(TAME_FA_METHODS).toLowerCase() : dMethod === 'odd' ? rng.pick(['G3T', 'GET, DELETE', ' GET', 'FOO', 'Get']) : rng.weighted(METHODS).trim(),
      path: rng.chance(0.3) ? rng.pick(['/api/x', '/public/x', '/admin/x', '/s/x', '/x', '/api']) : genPath(rng, rng.chance(0.7)),
    };
  }
  let version = 'HTTP/1.1';
  const lines: string[] = [];
  const connectionListed: string[] = [];
  const hosts: string[] = [];
  const add = (name: string, value: string): void => {
    lines.push(`${name}: ${value}`);
  };

  // Host
  const ours = `127.0.0.1:${ctx.port}`;
  const hostKind = tame ? 'ours' : rng.weighted([[84, 'ours'], [4, 'duplicate'], [3, 'missing'], [3, 'foreign'], [2, 'upper'], [2, 'junk'], [2, 'empty']] as const);
  const hostValue = hostKind === 'foreign' ? rng.pick(['evil.example', 'localhost', `localhost:${ctx.port}`])
    : hostKind === 'junk' ? rng.pick([`${ours}@evil.example`, `${ours}/admin`, `evil.example:${ctx.port}`, `[::1]:${ctx.port}`])
      : hostKind === 'empty' ? '' : ours;
  if (hostKind !== 'missing') {
    add(hostKind === 'upper' ? 'HOST' : 'Host', hostValue);
    hosts.push(hostValue);
  }
  if (hostKind === 'duplicate') {
    const other = rng.pick(['evil.example', 'dup.example', ours]);
    add(rng.pick(['Host', 'host']), other);
    hosts.push(other);
  }
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(target);
  if (authority) hosts.push(authority[1]!);

  add('X-Fuzz-Id', id);

  // Accept: API client, browser navigation, or nothing
  const accept = rng.weighted([[50, 'api'], [35, 'navigation'], [15, 'none']] as const);
  if (accept === 'api') add('Accept', 'application/json');
  if (accept === 'navigation') {
    add('Accept', 'text/html,application/xhtml+xml');
    add('Sec-Fetch-Mode', 'navigate');
  }

  // Cookies
  const cookieKind = rng.weighted([[45, 'bob'], [15, 'tampered'], [40, 'none']] as const);
  const cookies: string[] = [];
  if (cookieKind === 'bob') cookies.push(`${SESSION_COOKIE}=${ctx.bob}`);
  if (cookieKind === 'tampered') {
    if (rng.chance(0.8)) cookies.push(`${SESSION_COOKIE}=${tamper(rng, ctx.bob)}`);
    else {
      const t = tamper(rng, ctx.bob);
      cookies.push(`${SESSION_COOKIE}_0=${t.slice(0, 40)}`, `${SESSION_COOKIE}_1=${t.slice(40)}`);
    }
  }
  if (rng.chance(0.3)) cookies.push(rng.pick(['a=1', 'theme=dark', `${SESSION_COOKIE}_txn_fz=zzz`, `${SESSION_COOKIE}_0=abc`, `${SESSION_COOKIE}x=keep`, 'b="q;r"']));
  rng.shuffle(cookies);
  if (cookies.length > 0) {
    if (cookies.length > 1 && rng.chance(0.3)) {
      const cut = rng.range(1, cookies.length - 1);
      add('Cookie', cookies.slice(0, cut).join('; '));
      add(rng.pick(['Cookie', 'cookie']), cookies.slice(cut).join('; '));
    } else add(rng.pick(['Cookie', 'cookie', 'COOKIE']), cookies.join(rng.pick(['; ', ';'])));
  }
  const who: Who = cookieKind === 'bob' ? 'bob' : 'anonymous';

  // Forwarding family and routing overrides (on a forward-auth check they are the fronting proxy's: below)
  for (let i = mode.forwardAuth ? 0 : rng.weighted([[40, 0], [25, 1], [20, 2], [15, 4]] as const); i > 0; i--) {
    const name = rng.pick(FORWARDING_FAMILY);
    add(spell(rng, name), forgedValue(rng, name));
  }
  // Identity headers
  for (let i = rng.weighted([[50, 0], [25, 1], [15, 2], [10, 3]] as const); i > 0; i--) {
    const name = rng.pick(IDENTITY_FAMILY);
    add(spell(rng, name), forgedValue(rng, name));
  }
  let requestId: string | undefined;
  if (rng.chance(0.1)) {
    requestId = rng.pick(['fzforged-request-id', '0123456789abcdef0123456789abcdef', 'fz\u0001id']);
    add(spell(rng, 'X-Request-Id', false), requestId);
  }
  // Authorization: bearer tokens of every kind, sometimes two headers (Node keeps the first).
  const authLines = new Map<string, string>();
  if (rng.chance(0.28)) {
    for (let i = rng.chance(0.2) ? 2 : 1; i > 0; i--) {
      const kind = rng.weighted(TOKEN_WEIGHTS);
      const line = `${spell(rng, 'Authorization', false)}: ${authorizationValue(rng, kind, ctx)}`;
      authLines.set(line, kind);
      lines.push(line);
    }
  }

  // Hop-by-hop, any case
  for (let i = rng.weighted([[45, 0], [30, 1], [15, 2], [10, 3]] as const); i > 0; i--) {
    const kind = rng.pick(['connection', 'connection', 'keep-alive', 'te', 'trailer', 'proxy-connection', 'http2-settings', 'upgrade-alone'] as const);
    if (kind === 'connection') {
      const tokens = Array.from({ length: rng.range(1, 4) }, () => rng.pick([
        'close', 'keep-alive', 'Keep-Alive', 'TE', 'x-fz-hop', 'X-Fz-Hop2', 'X-Forwarded-For', 'x-forwarded-user', 'X-Real-IP',
        'Forwarded', 'x-request-id', 'Authorization', 'Proxy-Connection', 'Trailer', 'X-Forwarded-Host', 'x-forwarded-proto',
      ]));
      add(spell(rng, 'Connection', false), tokens.join(rng.pick([', ', ',', ' , '])));
      for (const t of tokens) {
        const lower = t.toLowerCase();
        if (lower !== 'close' && lower !== 'keep-alive') connectionListed.push(lower);
        if (lower.startsWith('x-fz-hop')) add(t, 'fzhop');
      }
    } else if (kind === 'keep-alive') add(spell(rng, 'Keep-Alive', false), 'timeout=5, max=100');
    else if (kind === 'te') add(spell(rng, 'TE', false), rng.pick(['trailers', 'gzip', 'trailers, deflate;q=0.5']));
    else if (kind === 'trailer') add(spell(rng, 'Trailer', false), 'X-Fz-Trailer');
    else if (kind === 'proxy-connection') add(spell(rng, 'Proxy-Connection', false), rng.pick(['keep-alive', 'close']));
    else if (kind === 'http2-settings') add(spell(rng, 'HTTP2-Settings', false), 'AAMAAABkAARAAAAAAAIAAAAA');
    else add(spell(rng, 'Upgrade', false), rng.pick(['websocket', 'h2c', 'fzproto']));
  }

  // Upgrades
  let upgrade: FuzzRequest['upgrade'] = 'none';
  if (lines.some((l) => /^upgrade:/i.test(l))) upgrade = 'no-connection';
  if (!mode.pipelined && rng.chance(0.1)) {
    const kind = tame ? rng.weighted([[70, 'websocket'], [30, 'no-connection']] as const)
      : rng.weighted([[55, 'websocket'], [15, 'h2c'], [10, 'other'], [20, 'no-connection']] as const);
    upgrade = kind;
    if (kind === 'websocket' && rng.chance(0.8)) method = 'GET';
    const connection = rng.pick(['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, HTTP2-Settings']);
    if (kind !== 'no-connection') {
      add(spell(rng, 'Connection', false), kind === 'h2c' ? 'Upgrade, HTTP2-Settings' : connection);
      for (const t of (kind === 'h2c' ? 'Upgrade, HTTP2-Settings' : connection).split(',')) {
        const lower = t.trim().toLowerCase();
        if (lower !== 'keep-alive' && lower !== 'close') connectionListed.push(lower);
      }
    }
    add(spell(rng, 'Upgrade', false), kind === 'h2c' ? 'h2c' : kind === 'other' ? rng.pick(['fzproto', 'TLS/1.2', 'websocket, h2c']) : rng.pick(['websocket', 'WebSocket']));
    if (kind === 'h2c') add('HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA');
    if (kind === 'websocket' || kind === 'no-connection') {
      const key = Buffer.from(Array.from({ length: 16 }, () => rng.int(256))).toString('base64');
      add('Sec-WebSocket-Key', key);
      add('Sec-WebSocket-Version', '13');
    }
  }

  // Body and Expect
  let body = '';
  let mayHang = false;
  const wantsBody = ['POST', 'PUT', 'PATCH', 'PROPFIND', 'PROPPATCH', 'REPORT', 'SEARCH', 'LOCK', 'QUERY'].includes(method);
  const bodyKind = tame ? rng.weighted([[wantsBody ? 20 : 70, 'none'], [wantsBody ? 40 : 12, 'length'], [wantsBody ? 20 : 6, 'chunked'], [3, 'smuggle'], [2, 'length-zero']] as const) : rng.weighted([
    [wantsBody ? 20 : 70, 'none'], [wantsBody ? 40 : 12, 'length'], [wantsBody ? 20 : 6, 'chunked'], [3, 'length+chunked'],
    [2, 'chunked-odd'], [1, 'short'], [1, 'length-twice'], [3, 'smuggle'], [2, 'length-zero'],
  ] as const);
  const content = rng.pick(['{"a":1}', 'a=1&b=2', '<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>', 'x'.repeat(rng.range(1, 3000))]);
  const smuggled = `GET ${rng.pick(SMUGGLE_ROUTES)} HTTP/1.1\r\nHost: ${ours}\r\nX-Fuzz-Id: ${id}-smuggled\r\nCookie: ${SESSION_COOKIE}=${ctx.bob}\r\n\r\n`;
  const chunk = (s: string): string => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n0\r\n\r\n`;
  if (bodyKind !== 'none') add('Content-Type', content.startsWith('{') ? 'application/json' : content.startsWith('<') ? 'application/xml' : 'application/x-www-form-urlencoded');
  switch (bodyKind) {
    case 'none': break;
    case 'length': body = content; add('Content-Length', String(Buffer.byteLength(body))); break;
    case 'length-zero': add('Content-Length', '0'); break;
    case 'chunked': body = chunk(content); add(spell(rng, 'Transfer-Encoding', false), 'chunked'); break;
    case 'chunked-odd':
      body = chunk(content);
      add('Transfer-Encoding', rng.pick(['Chunked', 'gzip, chunked', 'chunked, identity', ' chunked', 'chunked\t', 'xchunked']));
      mayHang = true;
      break;
    case 'length+chunked':
      body = chunk(content);
      add('Content-Length', String(Buffer.byteLength(content)));
      add('Transfer-Encoding', 'chunked');
      mayHang = true;
      break;
    case 'short': body = content.slice(0, 1); add('Content-Length', String(Buffer.byteLength(content) + 10)); mayHang = true; break;
    case 'length-twice':
      body = content;
      add('Content-Length', String(Buffer.byteLength(body)));
      add('Content-Length', rng.pick([String(Buffer.byteLength(body)), '0']));
      mayHang = true;
      break;
    default:
      // A second request hidden in the body: it must never reach the upstream as a request of its own.
      if (tame || rng.chance(0.5)) {
        body = smuggled;
        add('Content-Length', String(Buffer.byteLength(body)));
      } else {
        body = `0\r\n\r\n${smuggled}`;
        add('Content-Length', String(Buffer.byteLength(body)));
        add('Transfer-Encoding', rng.pick(['chunked', 'Chunked', ' chunked']));
        mayHang = true;
      }
  }
  const expectContinue = !mode.pipelined && rng.chance(0.07);
  if (expectContinue) add(spell(rng, 'Expect', false), rng.chance(0.9) ? '100-continue' : '100-Continue');
  else if (!tame && rng.chance(0.01)) add('Expect', 'fzexpect');

  // Malformed framing, rarely
  if (!tame && rng.chance(0.06)) {
    switch (rng.int(8)) {
      case 0: lines.push('X-Forwarded-User : fzforged-admin'); break;
      case 1: lines.push('X-Fz-Fold: a', ' X-Forwarded-User: fzforged-admin'); break;
      case 2: lines.push('NoColonLine'); break;
      case 3: lines.push('X Forwarded User: fzforged-admin'); break;
      case 4: lines.push('X-Fz: a\rX-Forwarded-User: fzforged-admin'); break;
      case 5: for (let i = 0; i < 120; i++) lines.push(`X-Fz-${i}: ${'v'.repeat(150)}`); break;
      case 6: version = rng.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 ', 'http/1.1', 'HTTP/0.9', 'HTTP/1.2']); break;
      default: lines.push(`X-Forwarded-User:\tfzforged-admin`); break;
    }
  }
  if (method === 'CONNECT' && rng.chance(0.5) && !mode.forwardAuth) target = `127.0.0.1:${ctx.port}`;

  // The original request, as nginx (X-Original-URL) or Traefik (X-Forwarded-*) describes it.
  if (described) {
    const style = rng.weighted([[65, 'traefik'], [30, 'nginx'], [5, 'none']] as const);
    const host = rng.chance(0.9) ? ours : 'fzforged.example';
    if (described.method !== undefined) add(spell(rng, 'X-Forwarded-Method', false), described.method);
    if (style === 'traefik') {
      add(spell(rng, 'X-Forwarded-Proto', false), 'http');
      add(spell(rng, 'X-Forwarded-Host', false), host);
      add(spell(rng, 'X-Forwarded-Uri', false), described.path);
    } else if (style === 'nginx') {
      add(spell(rng, 'X-Original-URL', false), rng.chance(0.95) ? `http://${host}${described.path}` : rng.pick(['not a url', described.path, 'http://[::1']));
    }
  }

  // Request line first, X-Fuzz-Id where it is; the other headers in a seeded order.
  rng.shuffle(lines);
  const head = `${method} ${target} ${version}\r\n${lines.join('\r\n')}\r\n\r\n`;
  // The Authorization headers in the order sent (the first is the one that counts).
  const auth = lines.filter((l) => authLines.has(l)).map((l) => authLines.get(l)!);
  return {
    index, id, method, target, lines, body, expectContinue, who, cookieKind, connectionListed, hosts, upgrade,
    requestId, mayHang, head, auth, bearer: bearerOf(auth), described,
  };
}

// ---------------------------------------------------------------------------------------------
// One exchange over a raw socket

export interface Exchange {
  /** Final status; 0 when the connection ended (or timed out) without one. */
  status: number;
  statusLine: string;
  /** The response head and the start of its body. */
  response: string;
  timedOut: boolean;
  error: string | undefined;
  ms: number;
  /** Request ids (UUID-shaped) in the response: to find Portcullis's log lines for it. */
  ids: string[];
  /** A `100 Continue` came before the final response. */
  continued: boolean;
}

export function exchange(port: number, req: FuzzRequest, timeoutMs: number): Promise<Exchange> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: PEER_ADDRESS[req.peer ?? 'untrusted'] });
    socket.setNoDelay(true);
    let buf = '';
    let pos = 0;
    let status = 0;
    let statusLine = '';
    let bodyStart = -1;
    let length: number | undefined;
    let chunked = false;
    let noBody = false;
    let bodySent = false;
    let timedOut = false;
    let continued = false;
    let error: string | undefined;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(bodyTimer);
      socket.destroy();
      const ids = [...new Set(buf.slice(0, 65_536).match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi) ?? [])].slice(0, 4);
      resolve({ status, statusLine, response: buf.slice(0, 2000), timedOut, error, ms: Date.now() - started, ids, continued });
    };
    const sendBody = (): void => {
      if (bodySent || done || status !== 0) return;
      bodySent = true;
      if (req.body) socket.write(req.body, 'latin1');
    };
    const timer = setTimeout(() => { timedOut = true; finish(); }, timeoutMs);
    const bodyTimer = req.expectContinue ? setTimeout(sendBody, 1000) : undefined;
    const complete = (): boolean => {
      while (status === 0) {
        const end = buf.indexOf('\r\n\r\n', pos);
        if (end === -1) return false;
        const head = buf.slice(pos, end);
        const m = /^HTTP\/\d\.\d (\d{3})/.exec(head);
        if (!m) {
          statusLine = head.split('\r\n')[0] ?? '';
          status = -1;
          return true;
        }
        const code = Number(m[1]);
        if (code >= 100 && code < 200 && code !== 101) {
          if (code === 100) continued = true;
          pos = end + 4;
          if (req.expectContinue) sendBody();
          continue;
        }
        status = code;
        statusLine = head.split('\r\n')[0] ?? '';
        bodyStart = end + 4;
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        length = cl ? Number(cl[1]) : undefined;
        chunked = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head);
        noBody = code === 101 || code === 204 || code === 304 || req.method === 'HEAD';
      }
      if (noBody) return true;
      if (length !== undefined) return Buffer.byteLength(buf.slice(bodyStart), 'latin1') >= length;
      if (chunked) return buf.endsWith('0\r\n\r\n');
      return false;
    };
    socket.on('connect', () => {
      socket.write(req.head, 'latin1');
      if (!req.expectContinue) sendBody();
    });
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (complete()) finish();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
    socket.on('close', () => {
      complete();
      finish();
    });
  });
}

/**
 * HTTP/1.1 pipelining: every request of `reqs` written at once on one connection, then the answers
 * read in order — one Exchange per request (status 0 for one never answered).
 */
export function exchangePipeline(port: number, reqs: FuzzRequest[], peer: Peer, timeoutMs: number): Promise<Exchange[]> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: PEER_ADDRESS[peer] });
    socket.setNoDelay(true);
    let buf = '';
    let pos = 0;
    let timedOut = false;
    let error: string | undefined;
    let done = false;
    const out: Exchange[] = [];
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      // A response with no request left to answer is garbage on the connection: reported on the last.
      if (pos < buf.length && out.length === reqs.length) out[out.length - 1]!.error = `extra bytes after the last answer: ${buf.slice(pos, pos + 200)}`;
      while (out.length < reqs.length) out.push({ status: 0, statusLine: '', response: buf.slice(pos, pos + 2000), timedOut, error, ms: Date.now() - started, ids: [], continued: false });
      resolve(out);
    };
    const parse = (closed: boolean): void => {
      while (out.length < reqs.length) {
        const r = responseEnd(buf, pos, reqs[out.length]!.method, closed);
        if (r === undefined) return;
        if (r === 'garbage') {
          out.push({ status: -1, statusLine: buf.slice(pos).split('\r\n')[0] ?? '', response: buf.slice(pos, pos + 2000), timedOut, error, ms: Date.now() - started, ids: [], continued: false });
          pos = buf.length;
          return finish();
        }
        const text = buf.slice(pos, r.end);
        const ids = [...new Set(text.slice(0, 65_536).match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi) ?? [])].slice(0, 4);
        out.push({ status: r.status, statusLine: r.statusLine, response: text.slice(0, 2000), timedOut: false, error: undefined, ms: Date.now() - started, ids, continued: false });
        pos = r.end;
      }
      if (out.length === reqs.length) finish();
    };
    const timer = setTimeout(() => { timedOut = true; finish(); }, timeoutMs);
    socket.on('connect', () => { socket.write(reqs.map((r) => r.head + r.body).join(''), 'latin1'); });
    socket.on('data', (d: Buffer) => { buf += d.toString('latin1'); parse(false); });
    socket.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
    socket.on('close', () => { parse(true); finish(); });
  });
}

// ---------------------------------------------------------------------------------------------
// Invariants on what the upstream received

export interface Violation {
  /** Invariant and its distinguishing parts: the deduplication key. */
  cls: string;
  seed: number;
  index: number;
  detail: string;
  /** The raw request (head and body). */
  raw: string;
}

/** A response (or its start) on one line: head lines joined with ` | `, then the body. */
function oneLine(response: string, max: number): string {
  return response.replace(/\r\n\r\n/, ' || ').replace(/\r\n/g, ' | ').slice(0, max);
}

function headerPairs(rec: RecordedRequest): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < rec.rawHeaders.length; i += 2) out.push([rec.rawHeaders[i]!, rec.rawHeaders[i + 1]!]);
  return out;
}

function fuzzIdOf(rec: RecordedRequest): string | undefined {
  const v = rec.headers['x-fuzz-id'];
  return Array.isArray(v) ? v.join(',') : v;
}

interface Check {
  cls: string;
  detail: string;
  /** Worth a look, outside the invariants: reported apart, never fails a run. */
  advisory?: boolean;
  /** Where it was seen (spelling, doorway, client, reading): collected per class, not part of its key. */
  variant?: string;
}

/** Header name/value pairs of a response head. */
function responseHeaders(response: string): Array<[string, string]> {
  const head = response.slice(0, Math.max(0, response.indexOf('\r\n\r\n')));
  return head.split('\r\n').slice(1).map((l): [string, string] => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]);
}

/** The entries of a comma-separated forwarding header, trimmed. */
const entries = (v: string): string[] => v.split(',').map((x) => x.trim()).filter(Boolean);

/** Methods a forward-auth check without X-Forwarded-Method must be right for. */
const ANY_METHOD = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'PROPFIND', 'MKCOL', 'FOO'];

/** A forward-auth check: nothing proxied; an untrusted peer refused; a 202 only for what the rules allow, with that user's identity. */
function checkForwardAuth(req: FuzzRequest, res: Exchange, records: RecordedRequest[], principal: Principal, overlong: boolean): Check[] {
  const out: Check[] = [];
  const d = req.described!;
  if (records.length > 0) out.push({ cls: 'forward-auth: the check itself reached the upstream', detail: records.map((r) => `${r.method} ${r.url}`).join(' | ') });
  if (req.peer !== 'trusted' && res.status >= 200 && res.status < 300) {
    out.push({ cls: `forward-auth: an untrusted peer got ${res.status}`, detail: oneLine(res.response, 300) });
  }
  if (req.peer !== 'trusted' || res.status !== 202) return out;
  // The fronting proxy forwards the original request as it came: the Tomcat and the lenient reading of its raw path must allow it.
  // A header value's surrounding whitespace is not part of it (any HTTP parser drops it).
  for (const m of d.method !== undefined ? [d.method.trim()] : ANY_METHOD) {
    const j = forbiddenReading(d.path, m, principal, overlong, false);
    // Not the URL parser's reading: `//public/api` as a scheme-relative URL (host `public`) is the
    // upstream's own parsing bug, which a fronting proxy forwarding raw paths exposes (docs/security.md).
    if (j && j.reading !== 'whatwg') {
      out.push({
        cls: `forward-auth: 202 for a request the rules forbid (${whoOn(j.route, principal)}${req.bearer !== undefined ? ', bearer' : ''} → route ${j.route.name}, ${j.reading} reading${d.method === undefined ? ', no X-Forwarded-Method' : ''}) trick=${trickOf(d.path)}`,
        variant: d.method ?? '(no method)',
        detail: `described ${d.method ?? '(no X-Forwarded-Method)'} ${d.path} — ${j.reading} reads /${j.segments.join('/')} → ${j.route.name}; judged as ${m}`,
      });
      break;
    }
  }
  const route = routeFor(readTomcat(targetPath(d.path) ?? '/'), d.method?.trim() ?? 'GET');
  const who = whoOn(route, principal);
  const want: Record<string, string> = who === 'anonymous' ? {} : IDENTITY_OF[who];
  const seen = new Set<string>();
  for (const [name, value] of responseHeaders(res.response)) {
    if (FORGED.test(value)) out.push({ cls: `forward-auth: the 202 carries a client's forged value in ${name}`, detail: `${name}: ${value}` });
    if (!(FAMILY.has(name) || name.startsWith('x-forwarded-'))) continue;
    if (seen.has(name)) out.push({ cls: `forward-auth: ${name} twice in the 202`, detail: `${name}: ${value}` });
    seen.add(name);
    if (name in BOB_IDENTITY && value !== want[name]) {
      out.push({ cls: `forward-auth: ${name} is not ${who}'s`, detail: `${name}: ${value} (want ${JSON.stringify(want[name] ?? '(none)')}; route ${route.name})` });
    }
  }
  return out;
}

/** Every invariant for one request: its exchange and what the upstream recorded for it. */
function check(req: FuzzRequest, res: Exchange, records: RecordedRequest[], opts: { bob: string; overlong: boolean; late: boolean; errorLogs: string[] }): Check[] {
  const out: Check[] = [];
  const principal: Principal = { cookie: req.who, bearer: req.bearer };
  const trusted = req.peer === 'trusted';
  const code = /"error":"([\w.-]+)"/.exec(res.response)?.[1];
  const logged = opts.errorLogs[0];
  if (res.status >= 500) out.push({ cls: `5xx: ${res.status} — ${logged ? `logged: ${logged}` : code ?? 'no error line tied to it (HEAD/HTML: replay with --only)'}`, detail: oneLine(res.response, 400) });
  else if (logged) out.push({ cls: `5xx: error logged for a ${res.status || 'closed'} response: ${logged}`, detail: oneLine(res.response, 300) });
  if (req.expectContinue && res.continued && res.status >= 300 && res.status < 500) {
    out.push({ cls: '100 Continue sent before a refusal or redirect (the spec: only once the request is authorized)', detail: oneLine(res.response, 300), advisory: true, variant: `${res.status}` });
  }
  if (res.timedOut && !req.mayHang) out.push({ cls: 'no complete response in time (hang)', detail: `got: ${res.response.slice(0, 300) || '(nothing)'}`, advisory: true });
  if (req.described) return [...out, ...checkForwardAuth(req, res, records, principal, opts.overlong)];
  if (records.length > 0 && req.lines.filter((l) => /^host:/i.test(l)).length > 1) {
    out.push({ cls: 'duplicate Host header accepted and forwarded (RFC 9112 §3.2: 400)', detail: `upstream got host ${String(records[0]!.headers.host)}, x-forwarded-host ${String(records[0]!.headers['x-forwarded-host'])}`, advisory: true });
  }
  if (records.length > 1) out.push({ cls: 'one: request reached the upstream more than once', detail: records.map((r) => `${r.method} ${r.url}`).join(' | ') });
  if (opts.late && records.length > 0) out.push({ cls: 'one: request reached the upstream after the client had its response', detail: `${records[0]!.method} ${records[0]!.url}; client got ${res.status}` });
  let forbidden = false;
  const client = `${req.who}${req.bearer !== undefined ? ` bearer:${req.auth![0]}` : ''}`;
  for (const rec of records) {
    const doorway = rec.headers.upgrade !== undefined && /upgrade/i.test(String(rec.headers.connection ?? '')) ? 'upgrade' : 'http';
    if (rec.method !== req.method) out.push({ cls: `method: upstream saw ${rec.method} for ${req.method}`, detail: `upstream got ${rec.method} ${rec.url}` });

    // Forbidden: the upstream's path and method, read as a server behind the proxy would.
    const j = forbiddenReading(rec.url, rec.method, principal, opts.overlong, true);
    if (j) {
      forbidden = true;
      const methodDependent = allows(routeFor(j.segments, 'GET'), principal);
      // Under Tomcat's reading the client's trick got through; under the others, what the proxy forwarded as is.
      const trick = j.reading === 'tomcat' ? trickOf(req.target) : `${readingTrick(j.reading, rec.url)} forwarded as is`;
      out.push({
        cls: `forbidden: ${whoOn(j.route, principal)}${j.route.bearer && req.bearer !== undefined ? ' (bearer)' : ''} reached route ${j.route.name}${methodDependent ? ' with a method the path\'s own route does not list' : ''} — ${j.reading} reading, trick=${trick}`,
        variant: methodDependent ? rec.method : `${req.cookieKind} cookie${req.bearer !== undefined ? `, ${req.auth![0]}` : ''}`,
        detail: `upstream got ${rec.method} ${rec.url} — ${j.reading} reads /${j.segments.join('/')} → route ${j.route.name} (${j.route.access}); client is ${client} (${req.cookieKind} cookie)`,
      });
    }
    // Whose identity the upstream may see: the user of the route Portcullis served it on.
    const served = routeFor(readTomcat(targetPath(rec.url) ?? '/'), rec.method);
    const who = whoOn(served, principal);

    // Headers
    const pairs = headerPairs(rec);
    const counts = new Map<string, number>();
    for (const [n] of pairs) counts.set(n.toLowerCase(), (counts.get(n.toLowerCase()) ?? 0) + 1);
    const upgradeOk = req.upgrade === 'websocket' && rec.method === 'GET' && doorway === 'upgrade'
      && routeFor(readTomcat(targetPath(rec.url) ?? '/'), 'GET').websocket;
    const seen = new Set<string>();
    const flag = (cls: string, detail: string, spelling = ''): void => {
      if (seen.has(cls)) return;
      seen.add(cls);
      out.push({ cls, detail, variant: `${doorway}/${req.peer ?? 'untrusted'}/${client}${spelling}` });
    };
    const clientSentSession = new Set(req.lines.filter((l) => opts.bob.length > 40 && l.includes(opts.bob.slice(0, 40))).map((l) => l.slice(0, l.indexOf(':')).trim().toLowerCase()));
    const sent = (name: string): string[] => req.lines.filter((l) => l.slice(0, l.indexOf(':')).trim().toLowerCase() === name).map((l) => l.slice(l.indexOf(':') + 1).trim());
    for (const [name, value] of pairs) {
      const lower = name.toLowerCase();
      const canon = lower.replace(/_/g, '-');
      if (FAMILY.has(canon) || canon === 'x-request-id') {
        const kind = FORWARDING_LOWER.has(canon) ? 'forwarding' : canon === 'x-request-id' ? 'request-id' : 'identity';
        if (lower !== canon) { flag(`headers: client ${kind} header reached upstream: ${canon}`, `${name}: ${value}`, '/underscore'); continue; }
        // A trusted proxy's own forwarding headers and request id pass (Portcullis's hop appended, checked below).
        const trustedSays = trusted && kind !== 'identity';
        if (!PORTCULLIS_SETS.has(canon)) { if (!trustedSays) flag(`headers: client ${kind} header reached upstream: ${canon}`, `${name}: ${value}`); continue; }
        if ((counts.get(lower) ?? 0) > 1) flag(`headers: ${canon} sent twice to the upstream`, pairs.filter(([n]) => n.toLowerCase() === lower).map(([n, v]) => `${n}: ${v}`).join(' | '));
        let ok = true;
        let want = '';
        const peer = PEER_ADDRESS[req.peer ?? 'untrusted'];
        if (trustedSays) {
          // This hop appended to the proxy's chain; host/proto/port from its last entries.
          if (canon === 'x-forwarded-for') { want = `…, ${peer}`; ok = entries(value).at(-1) === peer; }
          else if (canon === 'forwarded') { want = `…, for=${peer};…`; ok = new RegExp(`(^|,)\\s*for="?${peer.replace(/\./g, '\\.')}"?;[^,]*$`).test(value); }
          else if (canon === 'x-real-ip') { want = 'an address of the chain'; ok = [...sent('x-forwarded-for').flatMap(entries), peer].includes(value); }
          else if (canon === 'x-request-id') { want = 'an id'; ok = /^[\w.:-]{1,128}$/.test(value); }
        } else if (canon === 'x-forwarded-for' || canon === 'x-real-ip') { want = peer; ok = value === want; }
        else if (canon === 'x-forwarded-proto') { want = 'http'; ok = value === want; }
        else if (canon === 'x-forwarded-port') { want = 'digits, not the client\'s'; ok = /^\d+$/.test(value) && value !== '6666'; }
        else if (canon === 'x-forwarded-host') { want = `one of the client's Host values (${req.hosts.join(', ') || 'none'})`; ok = req.hosts.some((h) => h.toLowerCase() === value.toLowerCase()) && !FORGED.test(value) || (req.hosts.length === 0 && !FORGED.test(value)); }
        else if (canon === 'forwarded') { want = `for=${peer} and nothing the client sent`; ok = !FORGED.test(value) && new RegExp(`for="?${peer.replace(/\./g, '\\.')}`, 'i').test(value); }
        else if (canon === 'x-request-id') { want = 'an id of Portcullis\'s'; ok = req.requestId === undefined || value !== req.requestId; }
        else if (canon in BOB_IDENTITY) {
          if (who === 'anonymous') { flag(`headers: identity header for an anonymous client (${req.cookieKind} cookie${req.bearer !== undefined ? `, ${req.auth![0]}` : ''}): ${canon}`, `${name}: ${value}`); continue; }
          want = JSON.stringify(IDENTITY_OF[who][canon]);
          ok = value === IDENTITY_OF[who][canon];
        }
        if (!ok) flag(`headers: ${canon} is not Portcullis's value${trustedSays ? ' (trusted peer)' : ''}`, `${name}: ${value} (want ${want})`);
        continue;
      }
      if (HOP_BY_HOP.has(lower)) {
        const v = value.trim().toLowerCase();
        const ok = lower === 'connection' ? (v === 'keep-alive' || v === 'close' || (upgradeOk && v === 'upgrade'))
          : lower === 'upgrade' ? upgradeOk && v === 'websocket'
            : lower === 'transfer-encoding' ? v === 'chunked' : false;
        if (!ok) flag(`headers: hop-by-hop header reached upstream: ${lower}${lower === 'upgrade' || lower === 'connection' ? ` (client upgrade: ${req.upgrade})` : ''}`, `${name}: ${value}`);
        continue;
      }
      if (req.connectionListed.includes(lower)) { flag(`headers: Connection-listed header reached upstream: ${lower.startsWith('x-fz-hop') ? 'x-fz-hop*' : lower}`, `${name}: ${value}`); continue; }
      if (lower === 'cookie') {
        for (const part of value.split(';')) {
          const eq = part.indexOf('=');
          const cname = (eq === -1 ? part : part.slice(0, eq)).trim();
          if (cname === SESSION_COOKIE || cname.startsWith(`${SESSION_COOKIE}_`)) flag(`headers: Portcullis cookie reached upstream: ${cname.startsWith(`${SESSION_COOKIE}_txn_`) ? `${SESSION_COOKIE}_txn_*` : cname.startsWith(`${SESSION_COOKIE}_`) ? `${SESSION_COOKIE}_N` : cname}`, part.trim().slice(0, 80));
        }
      }
      if (opts.bob.length > 40 && value.includes(opts.bob.slice(0, 40)) && lower !== 'cookie' && !clientSentSession.has(lower)) flag(`headers: session value reached upstream in ${lower}`, `${name}: ${value.slice(0, 80)}…`);
      else if (FORGED.test(value) && lower !== 'cookie') flag(`headers: client's forged value reached upstream in ${lower}`, `${name}: ${value}`);
    }
  }

  // The client's own request, judged the same way: forbidden → nothing at the upstream.
  if (!forbidden && records.length > 0) {
    const j = forbiddenReading(req.target, req.method, principal, opts.overlong, false);
    if (j && j.reading === 'tomcat') {
      out.push({
        cls: `forbidden: ${whoOn(j.route, principal)} request for route ${j.route.name} reached the upstream as another path (tomcat reading) trick=${trickOf(req.target)}`,
        detail: `client sent ${req.method} ${req.target} (reads /${j.segments.join('/')} → ${j.route.name}); upstream got ${records.map((r) => `${r.method} ${r.url}`).join(' | ')}`,
      });
    }
  }
  return out;
}

/** Headers that say who and where the client is: a trusted proxy's are believed, so they may differ between the twins. */
const PER_PEER = (canon: string): boolean => FORWARDING_LOWER.has(canon) || canon === 'x-request-id' || canon === 'x-fuzz-id'
  // Body framing belongs to each hop (a body already read whole may go with a length, one still coming chunked).
  || canon === 'content-length' || canon === 'transfer-encoding';

/** The upstream's view of a request, minus what may rightly differ between an untrusted and a trusted peer. */
function peerFreeView(rec: RecordedRequest): string {
  const lines = headerPairs(rec).filter(([n]) => !PER_PEER(n.toLowerCase().replace(/_/g, '-'))).map(([n, v]) => `${n.toLowerCase()}: ${v}`).sort();
  return [`${rec.method} ${rec.url}`, ...lines].join('\n');
}

/**
 * The same request from an untrusted and a trusted peer: the same decision, and the upstream the
 * same request but for the forwarding headers (and request id) a trusted proxy may state.
 */
function checkTwins(a: { req: FuzzRequest; res: Exchange; records: RecordedRequest[] }, b: { req: FuzzRequest; res: Exchange; records: RecordedRequest[] }): Check[] {
  // Forward-auth answers trusted peers only: there the twins must differ (checked in checkForwardAuth).
  if (a.res.status <= 0 || b.res.status <= 0 || a.req.mayHang || a.req.described) return [];
  const out: Check[] = [];
  const refused = (x: number) => x >= 300;
  if (refused(a.res.status) !== refused(b.res.status) || a.records.length !== b.records.length) {
    out.push({ cls: 'trust: an untrusted and a trusted peer got different decisions for the same request', detail: `untrusted ${a.res.status} (${a.records.length} upstream), trusted ${b.res.status} (${b.records.length} upstream)` });
  } else if (a.records.length === 1) {
    const va = peerFreeView(a.records[0]!);
    const vb = peerFreeView(b.records[0]!);
    if (va !== vb) {
      const la = va.split('\n');
      const lb = vb.split('\n');
      out.push({ cls: 'trust: the upstream saw the same request differently from a trusted peer (beyond forwarding headers)', detail: `only untrusted: ${la.filter((l) => !lb.includes(l)).join(' | ')} — only trusted: ${lb.filter((l) => !la.includes(l)).join(' | ')}` });
    }
  }
  return out;
}

/** Pipelined answers come in order: an answer from the upstream names its own request's id. */
function checkPipelineOrder(container: FuzzRequest, results: Exchange[]): Check[] {
  const out: Check[] = [];
  results.forEach((res, i) => {
    const ids = [...new Set(res.response.match(new RegExp(`${container.id.replace(/[-.]/g, '\\$&')}\\.\\d+(-smuggled)?`, 'g')) ?? [])];
    const own = container.pipeline![i]!.id;
    const others = ids.filter((x) => x !== own);
    if (others.length) out.push({ cls: 'pipeline: an answer belongs to another request (out of order)', detail: `answer ${i} (for ${own}) names ${others.join(', ')}: ${oneLine(res.response, 200)}` });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// The run

export interface FuzzOptions {
  seed: number;
  /** Stop after this many requests (default 2,000 unless `minutes` is given). */
  requests?: number;
  /** Stop starting requests after this long. */
  minutes?: number;
  /** Only these request indices (replay). */
  only?: number[];
  /** Requests in flight at once (default 8; `only` runs one at a time). */
  concurrency?: number;
  /** Cleanup scope for the stack (a node:test context); the CLI passes its own. */
  scope: CleanupScope;
  /** false: no session cache (`session.cacheMaxEntries: 0`): every request opens its cookie. */
  sessionCache?: boolean;
  /** Also read paths as legacy servers did (overlong UTF-8 dots). */
  overlong?: boolean;
  /** Per-request timeout, ms (default 5,000). */
  timeoutMs?: number;
  /** Progress and violation lines; default: none. */
  log?: (line: string) => void;
  /** Violations printed per class as they happen (default 3). */
  maxPrint?: number;
  /** Print every request's exchange and upstream record (replay). */
  verbose?: boolean;
}

export interface ViolationClass {
  cls: string;
  count: number;
  /** Where it was seen: spellings, doorways (http/upgrade), clients, path readings. */
  variants: string[];
  /** The shortest example seen. */
  example: Violation;
  /** The first few request indices. */
  indices: number[];
}

export interface FuzzReport {
  seed: number;
  sent: number;
  reachedUpstream: number;
  statuses: Record<string, number>;
  /** How many requests exercised each doorway and client kind (bearer, forward-auth, trusted peer, twins, pipelining). */
  coverage: Record<string, number>;
  violationCount: number;
  classes: ViolationClass[];
  /** Findings outside the invariants (hangs, a duplicate Host forwarded): reported, never counted. */
  advisories: ViolationClass[];
  ms: number;
}

/** The raw request, readable: CRLF shown as `\r\n` + newline, other control bytes escaped, long runs cut. */
export function showRaw(raw: string, max = 2400): string {
  let s = raw.length > max ? `${raw.slice(0, max - 400)}…[${raw.length - max} more chars]…${raw.slice(-400)}` : raw;
  s = s.replace(/[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return s.replace(/\r\n/g, '\\r\\n\n').replace(/\r/g, '\\r');
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const log = opts.log ?? ((): void => {});
  const seed = opts.seed >>> 0;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const maxPrint = opts.maxPrint ?? 3;
  const overlong = opts.overlong ?? false;
  const limit = opts.only ? opts.only.length : opts.requests ?? (opts.minutes !== undefined ? Number.POSITIVE_INFINITY : 2000);
  const deadline = opts.minutes !== undefined ? started + opts.minutes * 60_000 : Number.POSITIVE_INFINITY;
  const concurrency = opts.only ? 1 : Math.max(1, opts.concurrency ?? 8);

  // The dev IdP signs with a key of ours, so the run can mint bearer tokens of every kind.
  const jwk = { ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK), kid: 'fuzz-idp', alg: 'RS256', use: 'sig' };
  const s: Stack = await startStack(opts.scope, {
    routes: FUZZ_ROUTES,
    idp: { keys: { keys: [jwk] } },
    edit: (raw) => {
      raw.logLevel = 'warn';
      raw.trustProxy = [PEER_ADDRESS.trusted];
      (raw.oidc as Record<string, unknown>).bearerAudiences = [FUZZ_AUDIENCE];
      if (opts.sessionCache === false) (raw.session as Record<string, unknown>).cacheMaxEntries = 0;
    },
  });
  const bobLogin = await loginViaHttp(`${s.url}/`, { user: 'bob', password: 'bob-password' });
  const bob = bobLogin.jar.get(SESSION_COOKIE, s.url);
  if (bobLogin.status !== 200 || !bob) throw new Error(`bob could not sign in (status ${bobLogin.status} at ${bobLogin.finalUrl})`);
  const ctx: FuzzContext = { port: Number(new URL(s.url).port), bob, tokens: await mintTokens(jwk, s.idp.issuer, s.idp.clientId) };
  /** For reading: bob's cookie named, other long tokens (tampered copies, long paths) shortened. `--only` replays the exact bytes. */
  const redact = (raw: string): string => raw.split(bob).join('<bob-session>').replace(/[A-Za-z0-9_\-.~]{160,}/g, (m) => `<${m.length} chars: ${m.slice(0, 24)}…>`);

  // Sanity: the stack does what the reference says for plain requests, before any fuzzing.
  const sanity = async (method: string, path: string, cookie: boolean, want: number, o: { token?: string; extra?: string[]; peer?: Peer } = {}): Promise<void> => {
    const req = simpleRequest(-1, `sanity-${path}`, ctx, method, path, cookie, o);
    req.peer = o.peer;
    const r = await exchange(ctx.port, req, timeoutMs);
    if (r.status !== want) throw new Error(`sanity check: ${method} ${path} (${cookie ? 'bob' : 'anonymous'}${o.token ? `, ${o.token}` : ''}, ${o.peer ?? 'untrusted'} peer) answered ${r.status}, want ${want}:\n${r.response.slice(0, 500)}`);
  };
  await sanity('GET', '/public', false, 200);
  await sanity('GET', '/api/x', true, 200);
  await sanity('GET', '/admin', true, 403);
  await sanity('GET', '/x', false, 401);
  await sanity('GET', '/admin/x', false, 200, { token: 'valid-alice' });
  await sanity('GET', '/admin/x', true, 403, { token: 'valid-bob' });
  for (const bad of TOKEN_KINDS.filter(([, k, who]) => who === 'anonymous' && k in ctx.tokens)) await sanity('GET', '/admin/x', false, 401, { token: bad[1] });
  await sanity('GET', '/public', false, 200, { peer: 'trusted' });
  const described = ['X-Forwarded-Method: GET', 'X-Forwarded-Uri: /api/x', `X-Forwarded-Host: 127.0.0.1:${ctx.port}`];
  await sanity('GET', '/oauth2/auth', true, 202, { extra: described, peer: 'trusted' });
  await sanity('GET', '/oauth2/auth', true, 400, { extra: described });
  s.upstream.requests.splice(0);
  s.logs.splice(0);

  const classes = new Map<string, ViolationClass>();
  const advisories = new Map<string, ViolationClass>();
  let violationCount = 0;
  const statuses: Record<string, number> = {};
  let sent = 0;
  let reachedUpstream = 0;
  const coverage: Record<string, number> = {};
  const inFlight = new Set<number>();
  const record = (v: Violation, advisory = false, variant?: string): void => {
    const map = advisory ? advisories : classes;
    if (!advisory) violationCount += 1;
    const c = map.get(v.cls);
    if (!c) {
      map.set(v.cls, { cls: v.cls, count: 1, variants: variant ? [variant] : [], example: v, indices: [v.index] });
    } else {
      c.count += 1;
      if (variant && !c.variants.includes(variant) && c.variants.length < 20) c.variants.push(variant);
      if (c.indices.length < 10 && !c.indices.includes(v.index)) c.indices.push(v.index);
      if (v.raw.length < c.example.raw.length) c.example = v;
    }
    const n = map.get(v.cls)!.count;
    if (n <= maxPrint) {
      log(`\n${advisory ? 'ADVISORY' : 'VIOLATION'} ${v.cls}\n  seed ${v.seed} request ${v.index} — replay: npm run fuzz -- --seed ${v.seed} --only ${v.index}\n  ${v.detail}\n${showRaw(v.raw).replace(/^/gm, '    | ')}`);
    } else if (n === maxPrint + 1) log(`  (more of "${v.cls}" counted, not printed)`);
  };

  // Crashes: an exception escaping the proxy would end a real process.
  const onCrash = (e: unknown): void => {
    record({ cls: `crash: ${e instanceof Error ? `${e.name}: ${e.message.slice(0, 120)}` : String(e).slice(0, 120)}`, seed, index: [...inFlight][0] ?? -1, detail: `uncaught while requests ${[...inFlight].join(', ')} were in flight: ${e instanceof Error ? e.stack : String(e)}`, raw: '' });
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);

  // Upstream records by fuzz id; requests waiting a moment for theirs (a late arrival is a finding too).
  const byId = new Map<string, RecordedRequest[]>();
  const evaluated = new Map<string, { req: FuzzRequest; res: Exchange }>();
  const pending: Array<{ req: FuzzRequest; res: Exchange; at: number }> = [];
  /** Error-level log lines by request id, waiting for the request whose response carries that id. */
  type ErrorLog = { key: string; msg: string; line: string; inFlight: number[] };
  const errorLogs = new Map<string, ErrorLog>();
  /** Error lines written while only one request was in flight: surely its own (HEAD and HTML answers carry no id). */
  const soleLogs = new Map<number, ErrorLog[]>();
  const drain = (): void => {
    for (const rec of s.upstream.requests.splice(0)) {
      const id = fuzzIdOf(rec) ?? '(none)';
      const list = byId.get(id);
      if (list) list.push(rec);
      else byId.set(id, [rec]);
    }
    for (const line of s.logs.splice(0)) {
      let level: unknown;
      let msg = line;
      let reqId = '';
      try {
        const o = JSON.parse(line) as { level?: unknown; msg?: unknown; reqId?: unknown; requestId?: unknown; err?: { message?: unknown } };
        level = o.level;
        reqId = String(o.reqId ?? o.requestId ?? '');
        msg = `${String(o.msg ?? '')}${o.err?.message ? `: ${String(o.err.message)}` : ''}`;
      } catch { /* not JSON */ }
      if ((typeof level === 'number' && level >= 50) || level === 'error' || level === 'fatal') {
        const key = reqId || `(no request id) ${errorLogs.size}`;
        const entry = { key, msg: msg.replace(/\d+/g, 'N').slice(0, 100), line, inFlight: [...inFlight] };
        errorLogs.set(key, entry);
        if (entry.inFlight.length === 1) soleLogs.set(entry.inFlight[0]!, [...(soleLogs.get(entry.inFlight[0]!) ?? []), entry]);
        if (errorLogs.size > 5000) errorLogs.delete(errorLogs.keys().next().value!);
      }
    }
  };
  const evaluate = (req: FuzzRequest, res: Exchange, records: RecordedRequest[], late: boolean): void => {
    if (records.length > 0 && !late) reachedUpstream += 1;
    if (!late) {
      const count = (k: string, yes: boolean) => { if (yes) coverage[k] = (coverage[k] ?? 0) + 1; };
      count('bearer token reached the upstream', req.bearer !== undefined && req.bearer !== 'anonymous' && records.length > 0);
      count('bad bearer token refused', req.bearer === 'anonymous' && res.status === 401);
      count('forward-auth 202', req.described !== undefined && res.status === 202);
      count('forward-auth refused', req.described !== undefined && res.status >= 400);
      count('from the trusted peer', req.peer === 'trusted' && res.status > 0);
      count('twins compared', req.twinOf !== undefined);
      count('pipelined', req.inPipeline === true && res.status > 0);
    }
    const logged: string[] = [];
    for (const id of res.ids) {
      const e = errorLogs.get(id);
      if (e) {
        logged.push(e.msg);
        errorLogs.delete(id);
      }
    }
    for (const e of soleLogs.get(req.index) ?? []) {
      if (errorLogs.delete(e.key)) logged.push(e.msg);
    }
    soleLogs.delete(req.index);
    const found = check(req, res, records, { bob, overlong, late, errorLogs: logged });
    if (req.inPipeline && res.status === 0 && records.length > 0) {
      found.push({ cls: 'pipeline: a request reached the upstream but its answer never came', detail: `upstream got ${records.map((r) => `${r.method} ${r.url}`).join(' | ')}; the connection ended first` });
    }
    // The twins: compared once the trusted copy (sent second) is judged.
    if (req.twin && !late) twins.set(req.id, { req, res, records });
    const first = req.twinOf !== undefined && !late ? twins.get(req.twinOf) : undefined;
    if (first) {
      twins.delete(req.twinOf!);
      found.push(...checkTwins(first, { req, res, records }));
    }
    for (const c of found) {
      record({ cls: c.cls, seed, index: req.index, detail: c.detail, raw: redact(req.head + req.body) }, c.advisory, c.variant);
    }
  };
  const twins = new Map<string, { req: FuzzRequest; res: Exchange; records: RecordedRequest[] }>();
  const settle = (all: boolean): void => {
    drain();
    const now = Date.now();
    while (pending.length > 0 && (all || pending[0]!.at < now - 300)) {
      const p = pending.shift()!;
      const records = byId.get(p.req.id) ?? [];
      byId.delete(p.req.id);
      evaluate(p.req, p.res, records, false);
      evaluated.set(p.req.id, { req: p.req, res: p.res });
      if (evaluated.size > 20_000) evaluated.delete(evaluated.keys().next().value!);
      if (opts.verbose) {
        log(`\n#${p.req.index} ${p.req.who} (${p.req.cookieKind} cookie) → ${p.res.status || `no status${p.res.timedOut ? ' (timeout)' : ''}${p.res.error ? ` (${p.res.error})` : ''}`} in ${p.res.ms} ms\n${showRaw(redact(p.req.head + p.req.body)).replace(/^/gm, '  > ')}`);
        const [head = '', body = ''] = p.res.response.split('\r\n\r\n');
        log(`${head.split('\r\n').map((l) => `  < ${l}`).join('\n')}${body ? `\n  < \n  < ${body.slice(0, 300)}` : ''}`);
        for (const r of records) log(`  upstream: ${r.method} ${r.url}\n${headerPairs(r).map(([n, v]) => `    ${n}: ${v}`).join('\n')}`);
        if (records.length === 0) log('  upstream: (nothing)');
      }
    }
  };

  let next = 0;
  let lastProgress = Date.now();
  /** Requests whose client gave up waiting and went away (for the shutdown check). */
  const timedOut: number[] = [];
  const worker = async (): Promise<void> => {
    for (;;) {
      if (next >= limit || Date.now() >= deadline) return;
      const k = next++;
      const index = opts.only ? opts.only[k]! : k;
      const req = generate(seed, index, ctx);
      inFlight.add(index);
      const done: Array<{ req: FuzzRequest; res: Exchange }> = [];
      if (req.pipeline) {
        const results = await exchangePipeline(ctx.port, req.pipeline, req.peer ?? 'untrusted', timeoutMs);
        req.pipeline.forEach((sub, i) => done.push({ req: sub, res: results[i]! }));
        for (const c of checkPipelineOrder(req, results)) record({ cls: c.cls, seed, index, detail: c.detail, raw: redact(req.head) });
      } else {
        done.push({ req, res: await exchange(ctx.port, req, timeoutMs) });
        if (req.twin) {
          const t = twinOf(req);
          done.push({ req: t, res: await exchange(ctx.port, t, timeoutMs) });
        }
      }
      drain(); // while this request still counts as in flight: its error lines are tied to it
      inFlight.delete(index);
      for (const { req: r, res } of done) {
        sent += 1;
        const key = res.status > 0 ? String(res.status) : res.timedOut ? 'timeout' : res.status === -1 ? 'garbage' : 'closed';
        if (res.timedOut && timedOut.length < 50) timedOut.push(index);
        statuses[key] = (statuses[key] ?? 0) + 1;
        pending.push({ req: r, res, at: Date.now() });
      }
      settle(false);
      if (Date.now() - lastProgress > 10_000) {
        lastProgress = Date.now();
        log(`… ${sent} requests, ${Math.round(sent / ((Date.now() - started) / 1000))}/s, ${reachedUpstream} reached the upstream, ${violationCount} violations in ${classes.size} classes`);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
    await new Promise((r) => setTimeout(r, 400));
    settle(true);
    // Whatever is left arrived after its request was judged, or belongs to no request sent.
    for (const [id, recs] of byId) {
      const e = evaluated.get(id);
      if (e) evaluate(e.req, e.res, recs, true);
      else {
        const m = /^(\d+)-(\d+)/.exec(id);
        const index = m ? Number(m[2]) : -1;
        const req = m ? generate(seed, index, ctx) : undefined;
        for (const r of recs) {
          record({
            cls: `one: upstream received a request nobody sent${id.endsWith('-smuggled') ? ' (smuggled in a body)' : ''}`,
            seed, index, detail: `upstream got ${r.method} ${r.url} with x-fuzz-id ${id}`, raw: req ? redact(req.head + req.body) : '',
          });
        }
      }
    }
    byId.clear();
    // Error lines no response could be tied to.
    for (const [id, e] of errorLogs) {
      record({ cls: `5xx: error logged: ${e.msg}`, seed, index: e.inFlight[0] ?? -1, detail: `request id ${id}, logged while requests ${e.inFlight.join(', ') || '(none)'} were in flight: ${e.line.slice(0, 800)}`, raw: '' });
    }
    errorLogs.clear();
    soleLogs.clear();

    // Still serving?
    const before = s.upstream.requests.length;
    const endReq = generate(seed, 0, ctx);
    const alive = await exchange(ctx.port, {
      ...endReq, id: 'final', method: 'GET', target: '/public', body: '', expectContinue: false,
      head: `GET /public?final HTTP/1.1\r\nHost: 127.0.0.1:${ctx.port}\r\nAccept: application/json\r\n\r\n`,
    }, timeoutMs);
    if (alive.status !== 200 || s.upstream.requests.length <= before) {
      record({ cls: '5xx: not serving at the end', seed, index: -1, detail: `GET /public → ${alive.status} ${alive.error ?? ''}`, raw: '' });
    }

    // Nothing left hanging: once every client is gone the proxy closes at once. A request whose client
    // went away mid-body must not keep its upstream request (and so the proxy) busy until the
    // upstream's own timeout.
    const closed = await Promise.race([
      s.server.close().then(() => true, () => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 3000).unref()),
    ]);
    if (!closed) {
      const first = timedOut[0] ?? -1;
      const req = first >= 0 ? generate(seed, first, ctx) : undefined;
      record({
        cls: 'shutdown: the proxy still holds a request 3 s after every client left (an upstream request not aborted when its client went away?)',
        seed, index: first,
        detail: `server.close() did not finish; clients that gave up waiting and closed their connection: ${timedOut.join(', ') || '(none)'}`,
        raw: req ? redact(req.head + req.body) : '',
      }, true);
      await s.upstream.close(); // ends what the proxy still waits on, so the stack can stop
    }
  } finally {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }
  return {
    seed, sent, reachedUpstream, statuses, coverage, violationCount,
    classes: [...classes.values()].sort((a, b) => b.count - a.count),
    advisories: [...advisories.values()].sort((a, b) => b.count - a.count),
    ms: Date.now() - started,
  };
}

export function formatReport(r: FuzzReport): string {
  const lines = [
    `seed ${r.seed}: ${r.sent} requests in ${(r.ms / 1000).toFixed(1)} s, ${r.reachedUpstream} reached the upstream`,
    `statuses: ${Object.entries(r.statuses).sort().map(([k, v]) => `${k}×${v}`).join(' ')}`,
    `coverage: ${Object.entries(r.coverage).sort().map(([k, v]) => `${k} ×${v}`).join(', ')}`,
    `${r.violationCount} violation(s) in ${r.classes.length} class(es); ${r.advisories.length} advisory class(es)`,
  ];
  const show = (list: ViolationClass[], title: string): void => {
    if (list.length > 0) lines.push('', `--- ${title} ---`);
    for (const c of list) {
      lines.push('', `[${c.count}×] ${c.cls}${c.variants.length ? `  (seen: ${c.variants.join(', ')})` : ''}`, `  e.g. request ${c.example.index} (replay: npm run fuzz -- --seed ${r.seed} --only ${c.example.index}); also ${c.indices.filter((i) => i !== c.example.index).slice(0, 5).join(', ') || '—'}`, `  ${c.example.detail.slice(0, 400)}`);
      if (c.example.raw) lines.push(showRaw(c.example.raw, 1200).replace(/^/gm, '    | '));
    }
  };
  show(r.classes, 'violations');
  show(r.advisories, 'advisories (not invariants; never fail a run)');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// CLI

/** A node:test-like cleanup scope for the CLI: runs the collected `after` callbacks, last first. */
class Scope implements CleanupScope {
  private readonly fns: Array<() => unknown> = [];
  after(fn: () => unknown): void {
    this.fns.push(fn);
  }
  /** Runs the cleanups; returns those that took over 2 s (a slow shutdown is worth knowing about). */
  async close(): Promise<string[]> {
    const slow: string[] = [];
    for (const [i, fn] of this.fns.reverse().entries()) {
      const t0 = Date.now();
      try {
        await fn();
      } catch (e) {
        console.error('cleanup:', e);
      }
      if (Date.now() - t0 > 2000) slow.push(`cleanup step ${i + 1} of ${this.fns.length} (${String(fn).replace(/\s+/g, ' ').slice(0, 60)}) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    return slow;
  }
}

function parseArgs(argv: string[]): Omit<FuzzOptions, 'scope'> {
  const o: Omit<FuzzOptions, 'scope'> = { seed: Math.floor(Math.random() * 2 ** 31) };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const num = (): number => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) throw new Error(`${flag}: not a number`);
      return v;
    };
    switch (flag) {
      case '--seed': o.seed = num(); break;
      case '--requests': o.requests = num(); break;
      case '--minutes': o.minutes = num(); break;
      case '--only': o.only = value().split(',').map((x) => Number(x.trim())).filter((x) => Number.isInteger(x) && x >= 0); o.verbose = true; break;
      case '--concurrency': o.concurrency = num(); break;
      case '--timeout': o.timeoutMs = num(); break;
      case '--max-print': o.maxPrint = num(); break;
      case '--no-session-cache': o.sessionCache = false; break;
      case '--overlong': o.overlong = true; break;
      case '--verbose': o.verbose = true; break;
      case '--help': case '-h':
        console.log('usage: npm run fuzz -- [--seed N] [--requests N] [--minutes M] [--only N[,N…]] [--concurrency C] [--timeout MS] [--max-print K] [--no-session-cache] [--overlong] [--verbose]');
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a} (--help)`);
    }
  }
  return o;
}

async function main(): Promise<void> {
  let args: Omit<FuzzOptions, 'scope'>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(String(e instanceof Error ? e.message : e));
    process.exit(2);
  }
  const scope = new Scope();
  const log = (line: string): void => { process.stdout.write(`${line}\n`); };
  log(`portcullis fuzz: seed ${args.seed}${args.only ? `, only ${args.only.join(',')}` : ''}${args.minutes !== undefined ? `, ${args.minutes} min` : ''}${args.requests !== undefined ? `, ${args.requests} requests` : ''}`);
  let report: FuzzReport;
  try {
    report = await runFuzz({ ...args, scope, log });
  } catch (e) {
    console.error('fuzz: could not run:', e);
    await scope.close();
    process.exit(2);
  }
  log(`\n${'='.repeat(78)}\n${formatReport(report)}`);
  // Stop the stack; a shutdown that does not finish is reported (not an invariant) and cut short.
  const stopped = await Promise.race([scope.close(), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 60_000).unref())]);
  if (stopped === 'hung') log('\nnote: stopping the stack took over 60 s (server.close() waiting on connections?); exiting anyway');
  else for (const line of stopped) log(`\nnote: ${line}`);
  process.exit(report.violationCount > 0 ? 1 : 0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
