// `npm run bench:memory`: what 100,000 distinct live sessions cost in the verified-session cache
// (issue #8: ≤ 200 MB). Builds the real SessionManager over the cookie store (src/session/*), creates
// realistic sessions (claims shaped like the dev IdP's, an RS256-sized ID token, opaque access and
// refresh tokens), reads each back once from a browser-like Cookie header (parsed with `cookie`'s
// parseCookie, as the door does) so every one lands in the LRU, then forces GC and compares the heap
// and RSS with the empty manager. The harness keeps no cookie of its own (each one is dropped after its
// lookup), so the difference is what the cache holds.
//
//   npm run bench:memory [-- --sessions 100000 --access-token opaque|jwt --keep-access-token --other-cookies 120]
//   (= node --expose-gc --import tsx bench/sessions-memory.ts …)
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { parseCookie } from 'cookie';
import { SessionCodec } from '../src/session/codec.js';
import { cookieSettings } from '../src/session/cookies.js';
import { SessionManager, type SessionRecord } from '../src/session/sessions.js';
import { CookieStore } from '../src/session/store.js';

const { values: opt } = parseArgs({
  options: {
    sessions: { type: 'string', default: '100000' },
    // oidc-provider (the dev IdP) issues opaque 43-character tokens; Keycloak, Entra ID … sign JWTs.
    'access-token': { type: 'string', default: 'opaque' },
    // As with a route that has passAccessToken / passAuthorization: the cached view then holds it too.
    'keep-access-token': { type: 'boolean', default: false },
    // Bytes of unrelated cookies around the session cookie in the request's Cookie header.
    'other-cookies': { type: 'string', default: '120' },
    'time-limit': { type: 'string', default: '55' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opt.help) {
  console.log('usage: npm run bench:memory -- [--sessions N] [--access-token opaque|jwt] [--keep-access-token] [--other-cookies BYTES] [--time-limit S]');
  process.exit(0);
}
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc (npm run bench:memory does)');
  process.exit(2);
}
const N = Math.max(1, Math.floor(Number(opt.sessions)));
const JWT_AT = opt['access-token'] === 'jwt';
if (!JWT_AT && opt['access-token'] !== 'opaque') throw new Error('--access-token must be opaque or jwt');
const TARGET_MB = 200;
const started = Date.now();
const deadline = started + Number(opt['time-limit']) * 1000;

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const opaque = () => randomBytes(32).toString('base64url'); // 43 characters, like oidc-provider's
/** A JWT of the real size for RS256 (2048-bit key: 256-byte signature); the signature itself is random. */
const jwt = (payload: Record<string, unknown>) => `${b64({ alg: 'RS256', typ: 'JWT', kid: KID })}.${b64(payload)}.${randomBytes(256).toString('base64url')}`;
const KID = randomBytes(32).toString('base64url');
const ISS = 'https://idp.example.com';
const CLIENT = 'portcullis';
const GROUPS = ['admin', 'dev', 'ops', 'finance', 'hr', 'sales', 'support', 'platform', 'security', 'data',
  'eng-frontend', 'eng-backend', 'oncall', 'release-managers', 'auditors', 'contractors', 'marketing', 'legal', 'design', 'qa'];
const FIRST = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'niaj', 'olivia', 'peggy'];
const LAST = ['example', 'smith', 'jones', 'garcia', 'miller', 'davis', 'martinez', 'lopez', 'wilson', 'anderson', 'taylor', 'thomas'];

function record(i: number, now: number): SessionRecord {
  const first = FIRST[i % FIRST.length]!;
  const last = LAST[(i * 7) % LAST.length]!;
  const iat = Math.floor(now / 1000);
  const groups = Array.from({ length: 5 }, (_, k) => GROUPS[(i * 3 + k * 5) % GROUPS.length]!);
  // What openid-client's tokens.claims() returns for the dev IdP's ID token (sub, email, profile,
  // groups scopes), with a realistic sub (a UUID, as Keycloak uses) and a unique user per session.
  const claims = {
    sub: randomUUID(),
    email: `${first}.${last}${i}@example.com`,
    email_verified: true,
    name: `${first[0]!.toUpperCase()}${first.slice(1)} ${last[0]!.toUpperCase()}${last.slice(1)} ${i}`,
    preferred_username: `${first}.${last}${i}`,
    groups,
    at_hash: randomBytes(16).toString('base64url'),
    aud: CLIENT,
    exp: iat + 3600,
    iat,
    auth_time: iat,
    nonce: randomBytes(32).toString('base64url'),
    iss: ISS,
    sid: randomBytes(16).toString('base64url'),
  };
  return {
    v: 1,
    sid: SessionManager.newSid(),
    claims,
    idToken: jwt(claims),
    accessToken: JWT_AT
      ? jwt({ iss: ISS, sub: claims.sub, aud: 'account', exp: iat + 3600, iat, jti: randomUUID(), azp: CLIENT, scope: 'openid email profile groups', sid: claims.sid, groups })
      : opaque(),
    refreshToken: opaque(),
    tokenExpiresAt: (iat + 3600) * 1000,
    createdAt: now,
    seenAt: now,
  };
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
function settle(): NodeJS.MemoryUsage {
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage();
}

const cookies = cookieSettings('https://app.example.com', 'portcullis', undefined);
const codec = new SessionCodec([randomBytes(32).toString('base64url')]);
let hits = 0;
let misses = 0;
const manager = new SessionManager(cookies, new CookieStore(codec, cookies.session), {
  idleTimeoutMs: 8 * 3600_000,
  absoluteTimeoutMs: 24 * 3600_000,
  cacheMaxEntries: Math.max(N, 100_000), // the default, or more when asked for more sessions
  keepAccessToken: opt['keep-access-token'],
}, Date.now, () => false, (hit) => { if (hit) hits += 1; else misses += 1; });
const otherBefore = `_ga=GA1.1.${randomBytes(12).toString('hex')}; theme=dark`;
const otherAfter = `; csrftoken=${randomBytes(Math.max(0, Math.ceil((Number(opt['other-cookies']) - otherBefore.length - 14) * 3 / 4))).toString('base64url')}`;

// One session through the whole path first, so code and lazily built objects are not counted as sessions.
{
  const h = await manager.create(record(N, Date.now()), {});
  const r = await manager.lookup(parseCookie(`${otherBefore}; ${h.map((l) => l.split(';')[0]).join('; ')}${otherAfter}`));
  if (r.kind !== 'valid') throw new Error(`warm-up session did not verify: ${JSON.stringify(r)}`);
  await manager.destroy(parseCookie(h.map((l) => l.split(';')[0]).join('; ')));
}
hits = 0;
misses = 0;
const before = settle();

let cookieChars = 0;
let headerChars = 0;
let chunked = 0;
const samples: string[] = []; // ten Cookie headers (≈ 20 KB in all) to check afterwards that nothing was evicted
let created = 0;
for (let i = 0; i < N; i++) {
  if ((i & 1023) === 0 && Date.now() > deadline) break;
  const setCookie = await manager.create(record(i, Date.now()), {});
  if (setCookie.length > 1) chunked += 1;
  const pairs = setCookie.map((l) => l.split(';')[0]!);
  // A new string per request, as the HTTP parser makes one; the cookie values parseCookie returns are
  // slices of it, so what the cache keeps of the value can keep the whole header alive.
  const header = `${otherBefore}; ${pairs.join('; ')}${otherAfter}`;
  const parsed = parseCookie(header) as Record<string, string | undefined>;
  const r = await manager.lookup(parsed);
  if (r.kind !== 'valid') throw new Error(`session ${i} did not verify: ${r.kind}`);
  cookieChars += manager.cookieValue(parsed)!.length;
  headerChars += header.length;
  if (i % Math.ceil(N / 10) === 0) samples.push(header);
  created += 1;
}
const populateMs = Date.now() - started;
const after = settle();
const filledMisses = misses;

// Every session is still cached: the sampled ones hit, without opening the cookie.
hits = 0;
misses = 0;
for (const h of samples) {
  const r = await manager.lookup(parseCookie(h));
  if (r.kind !== 'valid') throw new Error('a sampled session no longer verifies');
}
const cacheSize = (manager as unknown as { cache?: { size: number } }).cache?.size;
const heapDelta = after.heapUsed - before.heapUsed;
const externalDelta = after.external - before.external;
const rssDelta = after.rss - before.rss;
const perSession = (heapDelta + externalDelta) / created;
const forN = (perSession * 100_000) / 1024 / 1024;

const lines = [
  `# ${created.toLocaleString('en')} distinct sessions created and looked up once (cookie store, SessionManager from src/session), ${(populateMs / 1000).toFixed(1)} s, ${process.version}`,
  `access token: ${JWT_AT ? 'JWT' : 'opaque (43 chars, like the dev IdP)'}${opt['keep-access-token'] ? ', kept in the cached view' : ''}; mean session cookie ${Math.round(cookieChars / created)} chars${chunked ? ` (${chunked} chunked)` : ''}; mean Cookie header ${Math.round(headerChars / created)} chars`,
  `cache: ${cacheSize ?? '?'} entries; ${filledMisses} misses while filling, ${hits}/${samples.length} sampled sessions still cached afterwards`,
  '',
  '                 before     after     delta',
  `heap used MB  ${mb(before.heapUsed).padStart(9)} ${mb(after.heapUsed).padStart(9)} ${mb(heapDelta).padStart(9)}`,
  `external MB   ${mb(before.external).padStart(9)} ${mb(after.external).padStart(9)} ${mb(externalDelta).padStart(9)}`,
  `RSS MB        ${mb(before.rss).padStart(9)} ${mb(after.rss).padStart(9)} ${mb(rssDelta).padStart(9)}`,
  '',
  `per session: ${Math.round(perSession)} bytes of heap (+external); 100,000 sessions ≈ ${forN.toFixed(0)} MB   (issue #8 target ≤ ${TARGET_MB} MB: ${forN <= TARGET_MB ? 'met' : 'NOT met'})`,
  `process RSS with ${created.toLocaleString('en')} sessions cached: ${mb(after.rss)} MB`,
];
if (created < N) lines.push(`note: stopped at ${created} of ${N} sessions (time limit ${opt['time-limit']} s); per-session figures still hold`);
console.log(lines.join('\n'));
if (hits !== samples.length) {
  console.error('FAIL: sessions were evicted from the cache (or the cache is off)');
  process.exit(3);
}
