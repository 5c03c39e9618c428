// `npm run bench`: Portcullis side by side with the echo upstream served directly, its own public-route
// passthrough, the unauthenticated 302, the session cache switched off, the Redis session store, and
// Apache httpd + mod_auth_openidc —
// one run, interleaved rounds (A B C … A B C …), medians. Loopback only, bounded in time; every server
// is started here, in this process's session, and stopped by PID.
//
//   npm run bench [-- --duration 5 --rounds 3 --warmup 1 --connections 50]
//   npm run bench -- --fixed-rate 1000          latency at a fixed, moderate rate (p99 added over direct)
//   npm run bench -- --scenarios direct,public,auth --no-build --workers auto
//   npm run bench -- --compare d02a8a9          the same scenarios against another commit's build, same rounds
//
// See bench/README.md for what each column means and how to read the ratios.
import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { validateConfigObject, formatIssues } from '../src/config/index.js';
import { startDevIdp, DEMO_USERS, type DevIdp } from '../dev/devidp/provider.js';
import { CookieJar, loginViaHttp } from '../test/helpers/browserless-login.js';
import { apacheMissing, startApache } from './apache.js';
import { browserLogin, CHROMIUM_PATH } from './browser-login.js';
import { closedLoop, fixedRate, type LoadResult, type LoadSpec } from './load.js';
import {
  freePorts, httpGet, redisCommand, sampleOtherCpu, sampleResources, startChild, stopAll, stopChild, waitForHttp, waitForStdout,
  type Child, type ResourceUse,
} from './processes.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const log = (...a: unknown[]) => console.error('[bench]', ...a);

const USAGE = `usage: npm run bench -- [options]
  --duration S        seconds per measured run (default 5, max 60)
  --rounds N          interleaved rounds; the table shows medians (default 3)
  --warmup S          warm-up seconds per scenario before its first round (default 1)
  --connections N     autocannon connections (default 50)
  --fixed-rate R      instead of max throughput: R req/s open loop, report p99 added over direct
  --fixed-rate-tool T paced (default: evenly spaced requests) | autocannon (overallRate; bursty)
  --scenarios LIST    comma list of: ${['direct', 'baseline', 'public', 'auth', 'stepup', 'nocache', 'unauth', 'redis', 'apache', 'apache-plain', 'bearer-jwt', 'bearer-introspect', 'bearer-introspect-uncached', 'auth-enterprise'].join(', ')}
                      (default: all but baseline and apache-plain)
  --workers W         Portcullis "workers" setting (default 1)
  --log-level L       Portcullis "logLevel" (default: not set, i.e. Portcullis's default, info)
  --audit-log A       Portcullis "auditLog": all | denials | off (default: not set, i.e. all)
  --compare REF       also run the public, auth and nocache scenarios against the build of git ref REF
                      (git worktree in a temp dir, npm ci + npm run build there, removed at the end):
                      same config, IdP, upstream and cookie handling, interleaved in the same rounds;
                      adds public@REF, auth@REF, nocache@REF and current/REF ratios
  --no-build          skip "npm run build" (dist/ must be current)
  --json-out FILE     default bench/results/latest.json
  --keep-logs         keep the run directory (configs, server logs) even on success
  --node-args=ARGS    extra Node.js flags for Portcullis (workers inherit them), e.g. --node-args=--max-semi-space-size=32
  --cpu-prof          run Portcullis with --cpu-prof; profiles land in the (kept) run directory,
                      summarise them with: node --import tsx bench/profile-summary.ts FILE.cpuprofile`;

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '50' },
    'fixed-rate': { type: 'string' },
    'fixed-rate-tool': { type: 'string', default: 'paced' },
    scenarios: { type: 'string', default: 'direct,public,auth,nocache,unauth,redis,apache' },
    workers: { type: 'string', default: '1' },
    'no-build': { type: 'boolean', default: false },
    'json-out': { type: 'string', default: join(REPO, 'bench', 'results', 'latest.json') },
    'keep-logs': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'node-args': { type: 'string', default: '' },
    'log-level': { type: 'string' },
    'audit-log': { type: 'string' },
    compare: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}

const DURATION = clamp(Number(opt.duration), 1, 60);
const ROUNDS = clamp(Number(opt.rounds), 1, 10);
const WARMUP = clamp(Number(opt.warmup), 0, 10);
const CONNECTIONS = clamp(Number(opt.connections), 1, 1000);
const FIXED_RATE = opt['fixed-rate'] === undefined ? undefined : clamp(Number(opt['fixed-rate']), 1, 100_000);
const FIXED_TOOL = opt['fixed-rate-tool'];
if (FIXED_TOOL !== 'paced' && FIXED_TOOL !== 'autocannon') throw new Error(`--fixed-rate-tool must be paced or autocannon, not ${FIXED_TOOL}`);
const WANTED = new Set(opt.scenarios.split(',').map((s) => s.trim()).filter(Boolean));
const WORKERS: number | 'auto' = opt.workers === 'auto' ? 'auto' : clamp(Number(opt.workers), 1, 64);
const PATH = '/bench/item?id=42';
const COMPARE_REF = opt.compare?.trim() || undefined;
if (COMPARE_REF !== undefined && !/^[\w./^~@{}-]+$/.test(COMPARE_REF)) throw new Error(`--compare: not a git ref: ${COMPARE_REF}`);
/** Suffix of the scenarios run against the --compare build: `auth@d02a8a9`. */
const REF_SUFFIX = COMPARE_REF === undefined ? undefined : `@${COMPARE_REF}`;
/** The scenarios --compare repeats against the other build. */
const COMPARED = ['public', 'auth', 'nocache'];
/** Only what the command line sets: by default the generated config leaves logging at Portcullis's defaults. */
const LOGGING: Record<string, string> = {
  ...(opt['log-level'] !== undefined ? { logLevel: opt['log-level'] } : {}),
  ...(opt['audit-log'] !== undefined ? { auditLog: opt['audit-log'] } : {}),
};
const LOGGING_LABEL = `logLevel ${LOGGING.logLevel ?? 'default (info)'}, auditLog ${LOGGING.auditLog ?? 'default (all)'}`;
const ALICE = { user: 'alice', password: DEMO_USERS.alice!.password };
/**
 * How often Portcullis writes an active session's last-seen time back (src/session/sessions.ts:
 * min(60 s, idleTimeout / 10); idleTimeout defaults to 8 h). With the session cache off, a cookie older
 * than this is re-sealed on *every* request until the client sends the new one.
 */
const TOUCH_INTERVAL_MS = 60_000;

function clamp(n: number, lo: number, hi: number): number {
  if (!Number.isFinite(n)) throw new Error(`not a number: ${n}\n\n${USAGE}`);
  return Math.min(hi, Math.max(lo, n));
}

/** Browsers' top-level navigation: what gets a 302 to the IdP (instead of a 401) without a session. */
const BROWSER_NAV = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
  'user-agent': 'portcullis-bench/1',
};
/** Every 200 scenario asks for the same JSON echo, so bodies differ only by the headers a proxy adds. */
const API = { accept: 'application/json', 'user-agent': 'portcullis-bench/1' };

interface Scenario extends LoadSpec {
  /** `auth`, or `auth@REF` for the --compare build. */
  key: string;
  name: string;
  /** The proxy process whose RSS/CPU is sampled (undefined: direct). */
  proxy?: Child;
  /** Checks one response before the load (identity reached the upstream, Location is the IdP …). */
  check: (r: { status: number; headers: Record<string, unknown>; body: string }) => string | undefined;
  preflight?: { status: number; bytes: number; location?: string; upstreamSaw?: string[] };
  /** Authenticated scenarios: take up a re-issued session cookie between runs, as a browser would. */
  browserCookies?: boolean;
  /** How many times that happened. */
  cookiesReissued?: number;
  /** The Cookie header right after sign-in. */
  signInCookie?: string;
  /** When the cookie being sent was issued (sign-in or take-up). */
  cookieAt?: number;
  /**
   * Signs in again. Used when the cookie would pass the touch interval during the next run: with the
   * cache off every request would then be re-sealed (a browser takes up the new cookie at once; a
   * closed-loop generator cannot), which would measure autocannon's cookie handling, not the cache.
   */
  renewSession?: () => Promise<string>;
  /** How many times that happened. */
  sessionsRenewed?: number;
  runs: Array<LoadResult & Partial<ResourceUse> & { otherCpuPercent?: number; loadavg?: string }>;
  summary?: Summary;
}

interface Summary {
  rps: number;
  p50: number;
  p99: number;
  rssPeakMb?: number;
  cpuPercent?: number;
  unexpected: number;
  total: number;
  errors: number;
  /** Fixed rate with a direct twin per request (see load.ts): medians of this run's p50 / p99 minus the twin's. */
  paired50?: number;
  paired99?: number;
  /** The twins' own medians. */
  twin50?: number;
  twin99?: number;
  /** CPU % of one core used by processes outside the bench while it ran (median over rounds). */
  otherCpuPercent?: number;
  /** Proxy CPU time per response, µs (CPU % over the run / req/s): less sensitive to what else the box runs than req/s. */
  cpuUsPerReq?: number;
}

/** The --compare build: a detached git worktree of REF with its own node_modules and dist/. */
interface CompareBuild {
  ref: string;
  commit: string;
  subject: string;
  /** The worktree (its bin/portcullis.mjs is started). */
  root: string;
  /** How its node_modules came about. */
  deps: string;
}

const notes: string[] = [];
const versions: Record<string, string> = { node: process.version, cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}` };
let idp: DevIdp | undefined;
/** Further IdPs a scenario started (auth-enterprise's second provider), closed in cleanup(). */
const extraIdps: DevIdp[] = [];
let runDir = '';
let failed = false;
/** The --compare worktree, removed in cleanup(). */
let compareDir: string | undefined;
let compareTree: string | undefined;

async function main(): Promise<number> {
  // Other work on the machine (a test suite, a build) skews everything: record it before our own build.
  versions.loadavgAtStart = loadavg();
  // What is measured is the working tree as built now (HEAD may move while the bench runs).
  versions.headAtBuild = git(['rev-parse', 'HEAD']);
  versions.dirtyAtBuild = String(git(['status', '--porcelain', '--untracked-files=no']) !== '');
  if (Number(versions.loadavgAtStart.split(' ')[0]) > 0.5) {
    notes.push(`the machine was busy when the bench started (load average ${versions.loadavgAtStart}): absolute figures are low and noisy; compare ratios`);
  }
  if (!opt['no-build']) {
    log('npm run build');
    const b = spawnSync('npm', ['run', 'build', '--silent'], { cwd: REPO, stdio: ['ignore', 2, 2] });
    // tsc still emits on type errors; measure what was emitted, but say so next to the numbers.
    if (b.status !== 0) notes.push('npm run build reported errors (see above); dist/ as emitted by tsc was measured');
  }
  if (!existsSync(join(REPO, 'dist', 'main.js'))) throw new Error('dist/main.js is missing: run npm run build');
  const compare = COMPARE_REF === undefined ? undefined : prepareCompare(COMPARE_REF);
  if (compare) {
    versions.compare = `${compare.ref} = ${compare.commit.slice(0, 12)} ${compare.subject.slice(0, 100)}`;
    versions.compareDeps = compare.deps;
  }
  runDir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  log(`run directory (configs, server logs): ${runDir}`);

  const [upstreamPort, proxyPort, proxyMetrics, redisProxyPort, redisProxyMetrics, redisPort, apachePort, apachePlainPort, baselinePort, noCachePort, noCacheMetrics,
    refProxyPort, refProxyMetrics, refNoCachePort, refNoCacheMetrics, bearerPort, bearerMetrics, bearerUncachedPort, bearerUncachedMetrics, enterprisePort, enterpriseMetrics] = await freePorts(21);
  const enterpriseBase = `http://127.0.0.1:${enterprisePort}`;
  const bearerBase = `http://127.0.0.1:${bearerPort}`;
  const proxyBase = `http://127.0.0.1:${proxyPort}`;
  const noCacheBase = `http://127.0.0.1:${noCachePort}`;
  const redisProxyBase = `http://127.0.0.1:${redisProxyPort}`;
  const apacheBase = `http://127.0.0.1:${apachePort}`;

  // --- upstream: its own process; the IdP lives here (idle while load runs).
  const upstreamChild = startChild('upstream', process.execPath, ['--import', 'tsx', join(REPO, 'bench', 'upstream.ts'), String(upstreamPort)], join(runDir, 'upstream.log'), { cwd: REPO, pipeStdout: true });
  await waitForStdout(upstreamChild, /READY /, 20_000);
  const upstream = `http://127.0.0.1:${upstreamPort}`;
  const proxyClient = { client_id: 'portcullis-bench', client_secret: randomBytes(24).toString('base64url') };
  const apacheClient = { client_id: 'apache-bench', client_secret: randomBytes(24).toString('base64url') };
  // A signing key of our own for the IdP, so the bearer-jwt scenario can sign access tokens with it.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const idpKey = { ...(await exportJWK(privateKey)), kid: 'bench-key', alg: 'RS256', use: 'sig' };
  idp = await startDevIdp({
    host: '127.0.0.1',
    keys: { keys: [idpKey] },
    // The stepup scenario's session is an mfa sign-in; with acr values every ID token carries acr and
    // auth_time, the same for every scenario and build.
    ...(WANTED.has('stepup') ? { acrValues: ['pwd', 'mfa'] } : {}),
    clients: [
      { ...proxyClient, redirect_uris: [proxyBase, redisProxyBase, noCacheBase, bearerBase, enterpriseBase, `http://127.0.0.1:${refProxyPort}`, `http://127.0.0.1:${refNoCachePort}`].map((b) => `${b}/oauth2/callback`) },
      { ...apacheClient, redirect_uris: [`${apacheBase}/oauth2/callback`] },
    ],
  });
  log(`upstream ${upstream}, dev IdP ${idp.issuer}`);

  const proxyConfig = (port: number, metricsPort: number, session: Record<string, unknown>, extraRoutes: Array<Record<string, unknown>> = []) => ({
    listen: { host: '127.0.0.1', port },
    publicUrl: `http://127.0.0.1:${port}`,
    workers: WORKERS,
    ...LOGGING,
    metrics: { host: '127.0.0.1', port: metricsPort },
    oidc: { issuer: idp!.issuer, clientId: proxyClient.client_id, clientSecret: proxyClient.client_secret, scopes: ['openid', 'email', 'profile', 'groups'] },
    session: { secrets: [randomBytes(32).toString('base64url')], ...session },
    routes: [
      { name: 'public', match: { path: '/public' }, upstream, auth: 'public' },
      ...extraRoutes,
      // The same rule as Apache's `Require claim groups:admin`.
      { name: 'app', match: { path: '/' }, upstream, allow: { claim: 'groups', contains: 'admin' } },
    ],
  });
  // The stepup scenario's route: the app's rule plus a step-up the session meets (this build only:
  // an older one may not know the key).
  const stepUpRoutes = [{ name: 'stepup', match: { path: '/stepup' }, upstream, allow: { claim: 'groups', contains: 'admin' }, stepUp: { acr: ['mfa', 'phr'], maxAge: '1h' } }];

  const scenarios: Scenario[] = [];
  const add = (s: Omit<Scenario, 'runs'>) => { if (WANTED.has(baseKey(s.key))) scenarios.push({ ...s, runs: [] }); };
  const echoed = (body: string): Record<string, string> => {
    try {
      return (JSON.parse(body) as { headers: Record<string, string> }).headers;
    } catch {
      return {};
    }
  };

  add({
    key: 'direct', name: 'echo upstream, direct', url: upstream + PATH, headers: API, expect: (s) => s === 200,
    check: (r) => (r.status === 200 ? undefined : `status ${r.status}`),
  });

  // --- the bare stack (node:http + undici dispatch, nothing else): what every proxied request in Portcullis is built on
  if (WANTED.has('baseline')) {
    const baseline = startChild('baseline', process.execPath, [join(REPO, 'bench', 'baseline-proxy.mjs'), String(baselinePort), upstream], join(runDir, 'baseline.log'), { cwd: REPO, pipeStdout: true });
    await waitForStdout(baseline, /READY /, 20_000);
    add({
      key: 'baseline', name: 'bare node:http + undici (no auth)', proxy: baseline, url: `http://127.0.0.1:${baselinePort}${PATH}`, headers: API, expect: (s) => s === 200,
      check: (r) => (r.status === 200 ? undefined : `status ${r.status}`),
    });
  }

  // --- Portcullis, cookie store (and, with --compare, the same again from the other build)
  const builds = [
    { suffix: '', label: '', root: REPO, port: proxyPort, metrics: proxyMetrics, noCachePort, noCacheMetrics },
    ...(compare ? [{ suffix: REF_SUFFIX!, label: ` ${REF_SUFFIX}`, root: compare.root, port: refProxyPort, metrics: refProxyMetrics, noCachePort: refNoCachePort, noCacheMetrics: refNoCacheMetrics }] : []),
  ];
  for (const b of builds) {
    const base = `http://127.0.0.1:${b.port}`;
    const needsProxy = ['public', 'auth', 'unauth', 'stepup'].some((k) => WANTED.has(k) && (b.suffix === '' || COMPARED.includes(k)));
    if (needsProxy) {
      const proxy = await startPortcullis(`portcullis${b.suffix}`, proxyConfig(b.port, b.metrics, { store: 'cookie' }, b.suffix === '' && WANTED.has('stepup') ? stepUpRoutes : []), b.root);
      const cookie = await signInHttp(base);
      add({
        key: `public${b.suffix}`, name: `Portcullis public route (no auth)${b.label}`, proxy, url: `${base}/public${PATH}`, headers: API, expect: (s) => s === 200,
        check: (r) => (r.status !== 200 ? `status ${r.status}` : echoed(r.body)['x-forwarded-user'] !== undefined ? 'identity on an anonymous request' : undefined),
      });
      add({
        key: `auth${b.suffix}`, name: `Portcullis authenticated (cookie store)${b.label}`, proxy, url: base + PATH, headers: { ...API, cookie }, expect: (s) => s === 200,
        browserCookies: true, signInCookie: cookie, cookieAt: Date.now(),
        check: (r) => checkIdentity(r, echoed(r.body)),
      });
      if (b.suffix === '' && WANTED.has('stepup')) {
        // Signed in through the step-up route: an mfa session, which the route admits (the check runs on every request).
        const stepUpCookie = await signInHttp(base, '/stepup/login');
        add({
          key: 'stepup', name: 'Portcullis step-up route, met (cookie store)', proxy, url: `${base}/stepup${PATH}`, headers: { ...API, cookie: stepUpCookie }, expect: (s) => s === 200,
          browserCookies: true, signInCookie: stepUpCookie, cookieAt: Date.now(),
          check: (r) => checkIdentity(r, echoed(r.body)),
        });
      }
      if (b.suffix === '') {
        add({
          key: 'unauth', name: 'Portcullis no session -> 302 to IdP', proxy, url: base + PATH, headers: BROWSER_NAV, expect: (s) => s === 302,
          check: (r) => (r.status !== 302 ? `status ${r.status}` : !String(r.headers.location).startsWith(`${idp!.issuer}/`) ? `Location ${String(r.headers.location)} is not the IdP` : undefined),
        });
      }
    }

    // --- Portcullis, cookie store, verified-session LRU off (session.cacheMaxEntries: 0): every request
    // hashes nothing, but decrypts (AES-256-GCM) and JSON-parses the cookie. Its own process, same routes.
    if (WANTED.has('nocache')) {
      const noCacheBase = `http://127.0.0.1:${b.noCachePort}`;
      const proxy = await startPortcullis(`portcullis-nocache${b.suffix}`, proxyConfig(b.noCachePort, b.noCacheMetrics, { store: 'cookie', cacheMaxEntries: 0 }), b.root);
      const cookie = await signInHttp(noCacheBase);
      add({
        key: `nocache${b.suffix}`, name: `Portcullis authenticated, session cache off${b.label}`, proxy, url: noCacheBase + PATH, headers: { ...API, cookie }, expect: (s) => s === 200,
        browserCookies: true, signInCookie: cookie, cookieAt: Date.now(),
        renewSession: () => signInHttp(noCacheBase),
        check: (r) => checkIdentity(r, echoed(r.body)),
      });
    }
  }

  // --- API clients with bearer tokens (issue 17's trade-off, measured): a JWT verified here, an opaque
  // token introspected at the IdP with the answer cached (30 s, the default), and introspected on
  // every request (cacheTtl 1ms: what a cache-less introspecting proxy pays — the IdP, oidc-provider
  // in this process, answers each one).
  if (['bearer-jwt', 'bearer-introspect', 'bearer-introspect-uncached'].some((k) => WANTED.has(k))) {
    const bearerRoutes = [
      { name: 'public', match: { path: '/public' }, upstream, auth: 'public' },
      // A rule on `sub`: an introspection answer carries token metadata (sub, scope, client_id), not groups.
      { name: 'jwt', match: { path: '/jwt' }, upstream, bearer: 'jwt', allow: { claim: 'sub', equals: 'alice' } },
      { name: 'intro', match: { path: '/intro' }, upstream, bearer: 'introspect', allow: { claim: 'sub', equals: 'alice' } },
      // Where the bench picks up alice's opaque access token after a browser-style sign-in.
      { name: 'app', match: { path: '/' }, upstream, passAccessToken: true, allow: { claim: 'groups', contains: 'admin' } },
    ];
    const bearerConfig = (port: number, metricsPort: number, introspection: Record<string, unknown>) => {
      const c = proxyConfig(port, metricsPort, { store: 'cookie' }) as Record<string, unknown> & { oidc: Record<string, unknown> };
      return { ...c, oidc: { ...c.oidc, bearerAudiences: ['urn:bench', proxyClient.client_id], introspection }, routes: bearerRoutes };
    };
    const proxy = await startPortcullis('portcullis-bearer', bearerConfig(bearerPort, bearerMetrics, {}));
    const cookie = await signInHttp(bearerBase);
    const opaque = echoed((await httpGet(bearerBase + PATH, { ...API, cookie })).body)['x-forwarded-access-token'];
    if (!opaque) throw new Error('no access token from the bearer proxy');
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new SignJWT({ iss: idp.issuer, aud: 'urn:bench', sub: 'alice', groups: ['admin', 'dev'], client_id: 'bench-api-client', jti: randomUUID(), iat: now, exp: now + 6 * 3600 })
      .setProtectedHeader({ alg: 'RS256', kid: 'bench-key', typ: 'at+jwt' }).sign(privateKey);
    const bearerCheck = (r: { status: number; body: string }) => (r.status !== 200 ? `status ${r.status}` : echoed(r.body)['x-forwarded-user'] !== 'alice' ? 'no identity' : undefined);
    add({ key: 'bearer-jwt', name: 'Portcullis bearer JWT (verified here)', proxy, url: `${bearerBase}/jwt${PATH}`, headers: { ...API, authorization: `Bearer ${jwt}` }, expect: (st) => st === 200, check: bearerCheck });
    add({ key: 'bearer-introspect', name: 'Portcullis bearer opaque, introspected (cached 30 s)', proxy, url: `${bearerBase}/intro${PATH}`, headers: { ...API, authorization: `Bearer ${opaque}` }, expect: (st) => st === 200, check: bearerCheck });
    if (WANTED.has('bearer-introspect-uncached')) {
      const uncached = await startPortcullis('portcullis-bearer-uncached', bearerConfig(bearerUncachedPort, bearerUncachedMetrics, { cacheTtl: '1ms', negativeCacheTtl: '1ms' }));
      add({
        key: 'bearer-introspect-uncached', name: 'Portcullis bearer opaque, introspected every request', proxy: uncached,
        url: `http://127.0.0.1:${bearerUncachedPort}/intro${PATH}`, headers: { ...API, authorization: `Bearer ${opaque}` }, expect: (st) => st === 200, check: bearerCheck,
      });
    }
  }

  // --- Issue 16's cost on the hot path: the same authenticated request through a config with two
  // providers (a second dev IdP, discovered, never signed in with) and step-up routes — the measured
  // route accepts one provider, has a step-up maxAge the session meets, and a rule testing the
  // provider — interleaved with `auth` (one provider, no step-up) in the same rounds.
  if (WANTED.has('auth-enterprise')) {
    const partners = await startDevIdp({ host: '127.0.0.1', clients: [{ ...proxyClient, redirect_uris: [`${enterpriseBase}/oauth2/callback`] }] });
    extraIdps.push(partners);
    const c = proxyConfig(enterprisePort, enterpriseMetrics, { store: 'cookie' }) as Record<string, unknown> & { oidc: Record<string, unknown> };
    const proxy = await startPortcullis('portcullis-enterprise', {
      ...c,
      oidc: [
        { ...c.oidc, id: 'corp', displayName: 'Employees' },
        { ...c.oidc, id: 'partners', displayName: 'Partners', issuer: partners.issuer },
      ],
      routes: [
        { name: 'public', match: { path: '/public' }, upstream, auth: 'public' },
        { name: 'admin', match: { path: '/admin' }, upstream, providers: ['corp'], stepUp: { acr: ['mfa'], maxAge: '10m' } },
        { name: 'partners', match: { path: '/partners' }, upstream, providers: ['partners'] },
        {
          name: 'app', match: { path: '/' }, upstream, providers: ['corp'], stepUp: { maxAge: '24h' },
          allow: { all: [{ provider: 'corp' }, { claim: 'groups', contains: 'admin' }] },
        },
      ],
    });
    const cookie = await signInHttp(enterpriseBase);
    add({
      key: 'auth-enterprise', name: 'Portcullis authenticated, two providers + step-up routes', proxy, url: enterpriseBase + PATH, headers: { ...API, cookie }, expect: (s) => s === 200,
      browserCookies: true, signInCookie: cookie, cookieAt: Date.now(),
      check: (r) => checkIdentity(r, echoed(r.body)),
    });
  }

  // --- Portcullis, Redis store (only when the option validates, redis-server exists, and sessions really land in Redis)
  if (WANTED.has('redis')) await addRedisScenario();
  async function addRedisScenario(): Promise<void> {
    const raw = proxyConfig(redisProxyPort, redisProxyMetrics, { store: 'redis', redis: { url: `redis://127.0.0.1:${redisPort}` } });
    const v = validateConfigObject(raw, {});
    if (!v.ok) return skip('redis', `session.store: redis does not validate yet:\n${formatIssues(v.issues)}`);
    const redisBin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p));
    if (!redisBin) return skip('redis', 'redis-server is not installed (apt-get install redis-server)');
    const redis = startChild('redis', redisBin, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], join(runDir, 'redis.log'));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pong = await redisCommand(redisPort, 'PING').catch(() => '');
      if (pong === '+PONG') break;
      if (Date.now() > deadline) return skip('redis', `redis-server did not answer PING (see ${redis.logFile})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    versions.redis = (spawnSync(redisBin, ['--version'], { encoding: 'utf8' }).stdout ?? '').trim();
    let proxy: Child;
    let cookie: string;
    try {
      proxy = await startPortcullis('portcullis-redis', raw);
      cookie = await signInHttp(redisProxyBase);
    } catch (err) {
      await stopChild(redis);
      return skip('redis', `Portcullis with session.store: redis did not start or sign in: ${(err as Error).message}`);
    }
    const keys = Number((await redisCommand(redisPort, 'DBSIZE')).replace(/^:/, ''));
    if (!(keys > 0)) {
      // Idle servers still hold memory and wake up for timers: stop them before the load starts.
      await stopChild(proxy);
      await stopChild(redis);
      return skip('redis', 'session.store: redis validates, but no session reached Redis after sign-in (the store is not wired in yet)');
    }
    add({
      key: 'redis', name: 'Portcullis authenticated (Redis store)', proxy, url: redisProxyBase + PATH, headers: { ...API, cookie }, expect: (s) => s === 200,
      browserCookies: true, signInCookie: cookie, cookieAt: Date.now(),
      check: (r) => checkIdentity(r, echoed(r.body)),
    });
  }

  // --- Apache + mod_auth_openidc
  if (WANTED.has('apache') || WANTED.has('apache-plain')) await addApacheScenarios();
  async function addApacheScenarios(): Promise<void> {
    const missing = apacheMissing();
    if (missing) return skip('apache', missing);
    if (!existsSync(CHROMIUM_PATH)) return skip('apache', `${CHROMIUM_PATH} is missing: the Apache session needs a browser sign-in (apt-get install chromium)`);
    const apache = await startApache({
      runDir, port: apachePort, plainPort: apachePlainPort, issuer: idp!.issuer, upstream,
      clientId: apacheClient.client_id, clientSecret: apacheClient.client_secret,
    });
    versions.apache = apache.version;
    versions.mod_auth_openidc = (spawnSync('dpkg-query', ['-W', '-f=${Version}', 'libapache2-mod-auth-openidc'], { encoding: 'utf8' }).stdout ?? '').trim() || 'unknown';
    log(`Apache ${apache.version} + mod_auth_openidc ${versions.mod_auth_openidc} on ${apacheBase} (plain proxy on :${apachePlainPort}); signing in with Chromium`);
    const { cookie, page } = await browserLogin({
      base: apacheBase, path: '/bench/login?from=chromium', ...ALICE,
      isProxyCookie: (n) => n.startsWith('mod_auth_openidc_session'),
    });
    if (!page.includes('alice@example.com')) throw new Error(`Apache sign-in did not reach the upstream as alice:\n${page.slice(0, 500)}`);
    add({
      key: 'apache-plain', name: 'Apache plain proxy (no auth)', proxy: apache, url: `http://127.0.0.1:${apachePlainPort}${PATH}`, headers: API, expect: (s) => s === 200,
      check: (r) => (r.status === 200 ? undefined : `status ${r.status}`),
    });
    add({
      key: 'apache', name: 'Apache + mod_auth_openidc authenticated', proxy: apache, url: apacheBase + PATH, headers: { ...API, cookie }, expect: (s) => s === 200,
      check: (r) => {
        if (r.status !== 200) return `status ${r.status}`;
        const h = echoed(r.body);
        return h['x-forwarded-email'] === 'alice@example.com' && /\badmin\b/.test(h['x-forwarded-groups'] ?? '') ? undefined : `identity missing in ${JSON.stringify(h)}`;
      },
    });
  }

  if (scenarios.length === 0) throw new Error('no scenario left to run');
  const order = ['direct', 'baseline', 'apache-plain', 'public', 'auth', 'stepup', 'auth-enterprise', 'nocache', 'redis', 'unauth', 'apache'];
  // A --compare scenario runs right after (or, every other round, right before) its current-build twin.
  const rank = (k: string) => order.indexOf(baseKey(k)) * 2 + (k === baseKey(k) ? 0 : 1);
  scenarios.sort((a, b) => rank(a.key) - rank(b.key));

  // --- pre-flight: one request each, checked
  for (const sc of scenarios) {
    const r = await httpGet(sc.url, sc.headers);
    const problem = sc.check(r);
    if (problem) throw new Error(`pre-flight ${sc.name}: ${problem}\n${r.body.slice(0, 300)}`);
    // The echo body lists the request headers the upstream got: their names (not values: cookies,
    // identity) show what each build adds, since that is also what makes the bodies differ in size.
    const upstreamSaw = Object.keys(echoed(r.body)).sort();
    sc.preflight = {
      status: r.status, bytes: Buffer.byteLength(r.body), ...(r.headers.location ? { location: String(r.headers.location).slice(0, 80) } : {}),
      ...(upstreamSaw.length ? { upstreamSaw } : {}),
    };
    log(`pre-flight ok: ${sc.name}: ${r.status}, ${sc.preflight.bytes} B body${upstreamSaw.length ? `; upstream got ${upstreamSaw.join(' ')}` : ''}`);
  }

  // --- the runs: interleaved, warm-up before each scenario's first round
  const mode = FIXED_RATE ? `fixed rate ${FIXED_RATE} req/s (${FIXED_TOOL})` : `closed loop, ${CONNECTIONS} connections (autocannon)`;
  log(`${mode}; ${DURATION} s per run, ${ROUNDS} round(s), ${WARMUP} s warm-up; ${scenarios.length} scenarios ≈ ${Math.round(scenarios.length * (ROUNDS * DURATION + WARMUP))} s`);
  const measure = (sc: Scenario, seconds: number) => {
    if (!FIXED_RATE) return closedLoop(sc, { connections: CONNECTIONS, seconds });
    if (FIXED_TOOL === 'autocannon') return closedLoop(sc, { connections: CONNECTIONS, seconds, overallRate: FIXED_RATE });
    // Every proxied request gets a direct twin half an interval later, so "added" compares like with like.
    const direct = scenarios.find((d) => d.key === 'direct');
    return fixedRate(sc, { rate: FIXED_RATE, seconds, connections: CONNECTIONS }, sc.key !== 'direct' ? direct : undefined);
  };
  for (let round = 1; round <= ROUNDS; round += 1) {
    // Each round starts one scenario later (A B C, B C A, C A B …): whatever follows a given scenario
    // (a proxy waking up after idling through the direct run, say) does not always hit the same one.
    const shift = (round - 1) % scenarios.length;
    const sequence = [...scenarios.slice(shift), ...scenarios.slice(0, shift)];
    // --compare: every other round the other build's twin goes first, so neither build always runs
    // right after the other one (a machine that is busier in the second half of a pair hits both).
    if (round % 2 === 0) {
      for (let i = 0; i + 1 < sequence.length; i += 1) {
        if (sequence[i + 1]!.key === `${sequence[i]!.key}${REF_SUFFIX}`) {
          [sequence[i], sequence[i + 1]] = [sequence[i + 1]!, sequence[i]!];
          i += 1;
        }
      }
    }
    log(`round ${round}/${ROUNDS} order: ${sequence.map((sc) => sc.key).join(' ')}`);
    for (const sc of sequence) {
      if (sc.browserCookies) await takeUpReissuedCookie(sc);
      const runMs = ((sc.runs.length === 0 ? WARMUP : 0) + DURATION) * 1000;
      if (sc.renewSession && Date.now() - sc.cookieAt! + runMs + 3000 >= TOUCH_INTERVAL_MS) {
        sc.headers = { ...sc.headers, cookie: await sc.renewSession() };
        sc.cookieAt = Date.now();
        sc.sessionsRenewed = (sc.sessionsRenewed ?? 0) + 1;
        const r = await httpGet(sc.url, sc.headers);
        const problem = sc.check(r);
        if (problem) throw new Error(`${sc.name}: after signing in again: ${problem}`);
        log(`${sc.name}: signed in again (the cookie would pass the ${TOUCH_INTERVAL_MS / 1000} s touch interval during the run)`);
      }
      if (sc.runs.length === 0 && WARMUP > 0) await measure(sc, WARMUP);
      const sampler = sc.proxy ? sampleResources(sc.proxy.pid) : undefined;
      const others = sampleOtherCpu();
      const r = await measure(sc, DURATION);
      const use = sampler?.stop();
      const otherCpuPercent = others.stop();
      sc.runs.push({ ...r, ...use, otherCpuPercent, loadavg: loadavg() });
      log(`round ${round}/${ROUNDS} ${sc.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, codes ${JSON.stringify(r.codes)}, errors ${r.errors}${use ? `, RSS ${use.rssPeakMb.toFixed(0)} MB, CPU ${use.cpuPercent.toFixed(0)} %` : ''}, other processes ${otherCpuPercent.toFixed(0)} % CPU`);
    }
  }

  // --- post-flight: does the proxy keep re-issuing the session cookie to a client that never updates it?
  for (const sc of scenarios.filter((s) => s.browserCookies)) {
    if (sc.cookiesReissued) notes.push(`${sc.name}: the session cookie was re-issued ${sc.cookiesReissued}× during the run and taken up between runs, as a browser would`);
    if (sc.sessionsRenewed) notes.push(`${sc.name}: signed in again ${sc.sessionsRenewed}× between runs so that no run crossed the ${TOUCH_INTERVAL_MS / 1000} s touch interval (without the cache, every request with an older cookie is re-sealed until the client takes up the new one)`);
    // Each probe is a new connection; with workers each may land on another process, and each worker's
    // session cache re-seals an old cookie once: "every request" needs more probes than workers.
    const probes = 2 * (WORKERS === 'auto' ? cpus().length : WORKERS) + 1;
    let reissued = 0;
    for (let i = 0; i < probes; i += 1) if ((await httpGet(sc.url, { ...sc.headers, cookie: sc.signInCookie! })).headers['set-cookie']) reissued += 1;
    if (reissued === probes) {
      if (sc.renewSession) notes.push(`${sc.name}: as expected without the cache, a client that keeps sending a cookie older than the touch interval gets it re-sealed on every request`);
      else notes.push(`${sc.name}: a client that keeps sending its sign-in cookie (ignoring Set-Cookie) gets the session re-written and a new Set-Cookie on every request once the cookie is older than the touch interval — a slow path for API clients with a fixed cookie`);
    }
  }

  for (const sc of scenarios) sc.summary = summarise(sc.runs);
  // How much of the machine the rest of it took while we measured (2 cores = 200 %).
  const other = scenarios.flatMap((sc) => sc.runs.map((r) => r.otherCpuPercent ?? 0));
  versions.loadavgAtEnd = loadavg();
  if (other.length) {
    const line = `other processes on the machine used ${f(median(other), 0)} % CPU (median of runs; min ${f(Math.min(...other), 0)}, max ${f(Math.max(...other), 0)}; ${cpus().length} cores = ${cpus().length * 100} %) while the runs went on; load average at start ${versions.loadavgAtStart}, at end ${versions.loadavgAtEnd}`;
    notes.push(line);
  }
  const { table, ratios } = FIXED_RATE ? fixedRateReport(scenarios) : throughputReport(scenarios);
  const header = FIXED_RATE
    ? `# fixed rate ${FIXED_RATE} req/s (${FIXED_TOOL === 'paced' ? 'evenly spaced, open loop, undici pool' : 'autocannon overallRate'}), ${DURATION} s per run (+${WARMUP} s warm-up), ${ROUNDS} round(s), medians, GET ${PATH}`
    : `# autocannon ${CONNECTIONS} connections, ${DURATION} s per run (+${WARMUP} s warm-up), ${ROUNDS} round(s), medians, GET ${PATH}; Portcullis workers: ${WORKERS}, ${LOGGING_LABEL}${compare ? `; compared with ${versions.compare}` : ''}`;
  const output = [header, table, '', ...ratios, ...(notes.length ? ['', ...notes.map((n) => `note: ${n}`)] : [])].join('\n');
  console.log(output);

  const jsonOut = opt['json-out'];
  mkdirSync(dirname(jsonOut), { recursive: true });
  writeFileSync(jsonOut, `${JSON.stringify({
    when: new Date().toISOString(),
    commit: versions.headAtBuild,
    dirty: versions.dirtyAtBuild === 'true',
    mode: FIXED_RATE ? { kind: 'fixed-rate', rate: FIXED_RATE, tool: FIXED_TOOL } : { kind: 'closed-loop', tool: 'autocannon', connections: CONNECTIONS },
    duration: DURATION, warmup: WARMUP, rounds: ROUNDS, workers: WORKERS, path: PATH, logging: LOGGING_LABEL,
    compare: compare ? { ref: compare.ref, commit: compare.commit, subject: compare.subject, deps: compare.deps } : undefined,
    versions,
    scenarios: scenarios.map(({ expect: _e, check: _c, proxy, headers, signInCookie: _s, ...rest }) => ({ ...rest, headers: Object.keys(headers), proxyPid: proxy?.pid })),
    ratios,
    notes,
    table: output,
  }, null, 2)}\n`);
  log(`JSON written to ${jsonOut}`);
  const bad = scenarios.filter((s) => s.summary!.unexpected > 0);
  if (bad.length) {
    log(`FAIL: unexpected statuses in ${bad.map((s) => s.name).join(', ')}`);
    return 3;
  }
  return 0;

  async function startPortcullis(name: string, raw: Record<string, unknown>, root = REPO): Promise<Child> {
    const v = validateConfigObject(raw, {});
    if (!v.ok) throw new Error(`${name}: generated config is invalid:\n${formatIssues(v.issues)}`);
    const file = join(runDir, `${name.replace(/[^\w.-]/g, '_')}.yaml`);
    writeFileSync(file, `# generated by bench/run.ts\n${toYaml(raw)}`, { mode: 0o600 });
    const nodeArgs = [
      ...String(opt['node-args']).split(/\s+/).filter(Boolean),
      ...(opt['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', join(runDir, 'profiles', name.replace(/[^\w.-]/g, '_'))] : []),
    ];
    const child = startChild(name, process.execPath, [...nodeArgs, join(root, 'bin', 'portcullis.mjs'), '--config', file], join(runDir, `${name.replace(/[^\w.-]/g, '_')}.log`), { cwd: root });
    const base = String(raw.publicUrl);
    await waitForHttp(`${base}/readyz`, (s) => s === 200, 20_000, child);
    // With workers, each connection may land on another process, and each answers /readyz for itself:
    // wait until a run of fresh connections all say ready.
    const workers = WORKERS === 'auto' ? cpus().length : WORKERS;
    if (workers > 1) {
      let streak = 0;
      const deadline = Date.now() + 20_000;
      while (streak < 5 * workers) {
        if (Date.now() > deadline) throw new Error(`${name}: not every worker became ready within 20 s (see ${child.logFile})`);
        streak = (await httpGet(`${base}/readyz`).catch(() => ({ status: 0 }))).status === 200 ? streak + 1 : 0;
        if (streak === 0) await new Promise((r) => setTimeout(r, 100));
      }
    }
    log(`${name} (pid ${child.pid}) ready on ${base}, config ${file}${root === REPO ? '' : `, build in ${root}`}`);
    return child;
  }
}

/** Signs alice in over HTTP (test/helpers/browserless-login.ts), starting at `path`, and returns the proxy's Cookie header. */
async function signInHttp(base: string, path = '/bench/login'): Promise<string> {
  const jar = new CookieJar();
  const r = await loginViaHttp(`${base}${path}?from=http`, { ...ALICE, jar });
  if (r.status !== 200 || r.finalUrl !== `${base}${path}?from=http`) {
    throw new Error(`sign-in at ${base} ended with ${r.status} at ${r.finalUrl}:\n${r.hops.map((h) => `  ${h.status} ${h.url}`).join('\n')}`);
  }
  // Every port of 127.0.0.1 shares one jar: keep the proxy's cookies, not the IdP's op_* ones.
  const names = jar.names(base).filter((n) => !n.startsWith('op_'));
  if (names.length === 0) throw new Error(`no session cookie from ${base}`);
  return names.map((n) => `${n}=${jar.get(n, base)}`).join('; ');
}

/**
 * autocannon cannot follow Set-Cookie mid-run. Between runs, one request shows whether the proxy has
 * re-issued the session cookie (last-seen time written back, key rotation); if so the scenario sends
 * the new one from now on, like a browser.
 */
async function takeUpReissuedCookie(sc: Scenario): Promise<void> {
  const r = await httpGet(sc.url, sc.headers);
  const setCookie = r.headers['set-cookie'];
  if (!setCookie?.length) return;
  const jar = new Map(sc.headers.cookie!.split('; ').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)] as const));
  for (const line of setCookie) {
    const pair = line.split(';')[0]!;
    const name = pair.slice(0, pair.indexOf('='));
    const value = pair.slice(pair.indexOf('=') + 1);
    if (value === '' || /;\s*max-age=0\b/i.test(line)) jar.delete(name);
    else jar.set(name, value);
  }
  sc.headers = { ...sc.headers, cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  sc.cookiesReissued = (sc.cookiesReissued ?? 0) + 1;
  sc.cookieAt = Date.now();
  log(`${sc.name}: session cookie re-issued; sending the new one from now on`);
}

function checkIdentity(r: { status: number }, h: Record<string, string>): string | undefined {
  if (r.status !== 200) return `status ${r.status}`;
  if (h['x-forwarded-user'] !== 'alice' || h['x-forwarded-groups'] !== 'admin,dev') return `identity headers missing: ${JSON.stringify(h)}`;
  if (/portcullis/.test(h.cookie ?? '')) return 'the session cookie reached the upstream';
  return undefined;
}

/** `auth@d02a8a9` → `auth`. */
function baseKey(key: string): string {
  const at = key.indexOf('@');
  return at < 0 ? key : key.slice(0, at);
}

/** Runs a command for the --compare build; throws with its output's tail when it fails. Bounded. */
function runStep(command: string, args: string[], cwd: string, timeoutMs: number): void {
  log(`${cwd}: ${command} ${args.join(' ')}`);
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`--compare: ${command} ${args.join(' ')} in ${cwd} ${r.error ? `failed: ${r.error.message}` : `exited ${r.status ?? r.signal}`}\n${out}`);
  }
}

/**
 * --compare REF: a detached worktree of REF in a temp dir, its own node_modules (a link to ours when
 * the lockfiles are byte-identical, else `npm ci` from the local cache first) and its own build.
 * Removed by cleanup(), whatever happens.
 */
function prepareCompare(ref: string): CompareBuild {
  const commit = git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`--compare: ${ref} is not a commit here`);
  compareDir = mkdtempSync(join(tmpdir(), 'portcullis-compare-'));
  const root = join(compareDir, 'tree');
  runStep('git', ['worktree', 'add', '--detach', root, commit], REPO, 60_000);
  compareTree = root;
  const lock = (dir: string) => (existsSync(join(dir, 'package-lock.json')) ? readFileSync(join(dir, 'package-lock.json')) : undefined);
  const ours = lock(REPO);
  const theirs = lock(root);
  let deps: string;
  if (ours && theirs && ours.equals(theirs)) {
    symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'), 'dir');
    deps = 'node_modules linked from the current tree (identical package-lock.json)';
  } else {
    // Scripts off: the root package's `prepare` would build a second time; none of the runtime
    // dependencies has an install script (esbuild's, for tsx, only checks its binary).
    runStep('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], root, 600_000);
    deps = 'npm ci --prefer-offline --ignore-scripts (package-lock.json differs)';
  }
  runStep('npm', ['run', 'build', '--silent'], root, 600_000);
  if (!existsSync(join(root, 'dist', 'main.js'))) throw new Error(`--compare: ${ref} built no dist/main.js`);
  const subject = spawnSync('git', ['log', '-1', '--format=%s', commit], { cwd: REPO, encoding: 'utf8' }).stdout.trim();
  log(`--compare: ${ref} = ${commit.slice(0, 12)} built in ${root} (${deps})`);
  return { ref, commit, subject, root, deps };
}

/** Removes the --compare worktree (and its temp dir); never throws. */
function removeCompareTree(): void {
  if (compareTree) {
    const r = spawnSync('git', ['worktree', 'remove', '--force', compareTree], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) log(`git worktree remove ${compareTree} failed: ${(r.stderr ?? '').trim()}`);
    compareTree = undefined;
  }
  if (compareDir) {
    rmSync(compareDir, { recursive: true, force: true });
    spawnSync('git', ['worktree', 'prune'], { cwd: REPO, timeout: 60_000 });
    compareDir = undefined;
  }
}

function skip(key: string, why: string): void {
  const line = `${key} scenario skipped: ${why}`;
  notes.push(line);
  log(line);
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function summarise(runs: Scenario['runs']): Summary {
  const twins = runs.map((r) => (r as { shadow?: LoadResult }).shadow);
  const paired = twins.every((t) => t !== undefined) && runs.length > 0;
  return {
    ...(paired ? {
      paired50: median(runs.map((r, i) => r.p50 - twins[i]!.p50)),
      paired99: median(runs.map((r, i) => r.p99 - twins[i]!.p99)),
      twin50: median(twins.map((t) => t!.p50)),
      twin99: median(twins.map((t) => t!.p99)),
    } : {}),
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    otherCpuPercent: median(runs.map((r) => r.otherCpuPercent ?? Number.NaN)),
    rssPeakMb: runs[0]?.rssPeakMb === undefined ? undefined : median(runs.map((r) => r.rssPeakMb!)),
    cpuPercent: runs[0]?.cpuPercent === undefined ? undefined : median(runs.map((r) => r.cpuPercent!)),
    cpuUsPerReq: runs[0]?.cpuPercent === undefined ? undefined : median(runs.map((r) => (r.rps > 0 ? (r.cpuPercent! / 100) * 1e6 / r.rps : Number.NaN))),
    unexpected: runs.reduce((a, r) => a + r.unexpected, 0),
    total: runs.reduce((a, r) => a + r.total, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}

function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(rows[0]!), fmt(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(fmt)].join('\n');
}

const f = (n: number | undefined, digits: number) => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));
const x = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) ? undefined : a / b);

function throughputReport(scenarios: Scenario[]): { table: string; ratios: string[] } {
  const by = (k: string) => scenarios.find((s) => s.key === k)?.summary;
  const direct = by('direct');
  const pub = by('public');
  const rows = [['scenario', 'req/s', 'x direct', 'x public', 'p50 ms', 'p99 ms', 'RSS MB', 'CPU %', 'CPU µs/req', 'other CPU %', 'bad/total', 'sock err']];
  for (const sc of scenarios) {
    const s = sc.summary!;
    const isPortcullis = ['public', 'auth', 'stepup', 'nocache', 'redis', 'unauth'].includes(baseKey(sc.key));
    // A --compare scenario is set against the other build's own public route.
    const ownPublic = sc.key === baseKey(sc.key) ? pub : by(`public${sc.key.slice(baseKey(sc.key).length)}`);
    rows.push([sc.name, f(s.rps, 0), f(x(s.rps, direct?.rps), 3), isPortcullis ? f(x(s.rps, ownPublic?.rps), 3) : '-', f(s.p50, 2), f(s.p99, 2),
      f(s.rssPeakMb, 0), f(s.cpuPercent, 0), f(s.cpuUsPerReq, 0), f(s.otherCpuPercent, 0), `${s.unexpected}/${s.total}`, String(s.errors)]);
  }
  const ratios: string[] = [];
  const ratio = (label: string, a: Summary | undefined, b: Summary | undefined, target?: string) => {
    const r = x(a?.rps, b?.rps);
    if (r !== undefined) ratios.push(`${label} = ${r.toFixed(2)}×${target ? `   (${target})` : ''}`);
    return r;
  };
  const auth = by('auth');
  const apache = by('apache');
  ratio('authenticated / public', auth, pub, 'target ≥ 0.8×, issue #8: ≥ 0.9×');
  ratio('authenticated, session cache on / cache off', auth, by('nocache'), 'what the verified-session LRU buys, issue #4');
  ratio('step-up route (met) / authenticated', by('stepup'), auth, 'issue 16: nothing measurable, ≈ 1.0×');
  ratio('authenticated, session cache off / public', by('nocache'), pub);
  const ent = by('auth-enterprise');
  if (ent && auth) {
    const e = scenarios.find((s) => s.key === 'auth-enterprise')!;
    const a = scenarios.find((s) => s.key === 'auth')!;
    const perRound = e.runs.map((r, i) => x(r.rps, a.runs[i]?.rps)).filter((v): v is number => v !== undefined);
    ratios.push(`two providers + step-up routes / one provider, authenticated = ${f(x(ent.rps, auth.rps), 2)}×   per round ${perRound.length ? `${median(perRound).toFixed(2)}× [${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}]` : '-'}   CPU µs/req ${f(x(ent.cpuUsPerReq, auth.cpuUsPerReq), 2)}×   (issue 16: nothing measurable)`);
  }
  ratio('authenticated (Redis store) / public', by('redis'), pub);
  ratio('no session 302 / public', by('unauth'), pub);
  ratio('public / direct upstream', pub, direct);
  ratio('public / bare node:http + undici', pub, by('baseline'));
  ratio('authenticated / direct upstream', auth, direct);
  ratio('authenticated / Apache + mod_auth_openidc', auth, apache, `issue #8: ≥ 1.5× with workers: auto; this run: workers ${WORKERS}`);
  ratio('Apache + mod_auth_openidc / direct upstream', apache, direct);
  if (auth && apache) ratios.push(`p99 at ${CONNECTIONS} connections: Portcullis authenticated ${f(auth.p99, 2)} ms vs Apache + mod_auth_openidc ${f(apache.p99, 2)} ms   (issue #8: below Apache's)`);
  if (REF_SUFFIX !== undefined) {
    // Current build / --compare build, per scenario: the ratio of the medians, and the median (min–max)
    // of the per-round ratios — each round runs both back to back, so that one pairs like with like.
    ratios.push('', `current / ${COMPARE_REF} (req/s: ratio of medians; per round: median [min–max] of the rounds' ratios; CPU µs/req: ratio of medians, < 1 = current cheaper)`);
    for (const k of COMPARED) {
      const cur = scenarios.find((s) => s.key === k);
      const ref = scenarios.find((s) => s.key === k + REF_SUFFIX);
      if (!cur || !ref) continue;
      const perRound = cur.runs.map((r, i) => x(r.rps, ref.runs[i]?.rps)).filter((v): v is number => v !== undefined);
      const pr = perRound.length ? `${median(perRound).toFixed(2)}× [${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}]` : '-';
      ratios.push(`  ${k.padEnd(8)} req/s ${f(x(cur.summary!.rps, ref.summary!.rps), 2)}×   per round ${pr}   p99 ${f(cur.summary!.p99, 2)} vs ${f(ref.summary!.p99, 2)} ms   CPU µs/req ${f(x(cur.summary!.cpuUsPerReq, ref.summary!.cpuUsPerReq), 2)}×`);
    }
  }
  return { table: formatTable(rows), ratios };
}

function fixedRateReport(scenarios: Scenario[]): { table: string; ratios: string[] } {
  const direct = scenarios.find((s) => s.key === 'direct')?.summary;
  const rows = [['scenario', 'req/s', 'p50 ms', 'p99 ms', '+p50 ms', '+p99 ms', 'twin p50/p99', '+p50 paired', '+p99 paired', 'RSS MB', 'CPU %', 'bad/total', 'errors']];
  const ratios: string[] = [];
  const sign = (n: number | undefined) => (n === undefined ? '-' : `${n >= 0 ? '+' : ''}${f(n, 3)}`);
  for (const sc of scenarios) {
    const s = sc.summary!;
    const d50 = direct ? s.p50 - direct.p50 : undefined;
    const d99 = direct ? s.p99 - direct.p99 : undefined;
    const own = sc.key === 'direct';
    rows.push([sc.name, f(s.rps, 0), f(s.p50, 3), f(s.p99, 3), own ? '-' : f(d50, 3), own ? '-' : f(d99, 3),
      s.twin50 === undefined ? '-' : `${f(s.twin50, 2)}/${f(s.twin99, 2)}`, own ? '-' : f(s.paired50, 3), own ? '-' : f(s.paired99, 3),
      f(s.rssPeakMb, 0), f(s.cpuPercent, 0), `${s.unexpected}/${s.total}`, String(s.errors)]);
    if (!own && d99 !== undefined) {
      const target = sc.key === 'auth' ? '   (issue #8 target ≤ 1 ms)' : '';
      ratios.push(`p99 added over direct at ${FIXED_RATE} req/s: ${sc.name}: ${sign(s.paired99)} ms against its direct twins in the same run, ${sign(d99)} ms against the separate direct run${target}`);
    }
  }
  if (direct) ratios.push('(twins: each proxied request has a direct request half an interval later in the same run, so both meet the same moments of the machine; the separate direct run meets others)');
  return { table: formatTable(rows), ratios };
}

function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

function git(args: string[]): string {
  const r = spawnSync('git', args, { cwd: REPO, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

async function cleanup(): Promise<void> {
  await stopAll();
  await idp?.close().catch(() => {});
  for (const other of extraIdps) await other.close().catch(() => {});
  idp = undefined;
  removeCompareTree();
  if (runDir && !failed && !opt['keep-logs'] && !opt['cpu-prof']) rmSync(runDir, { recursive: true, force: true });
  else if (runDir) log(`logs kept in ${runDir}`);
}

let exitCode = 1;
const onSignal = (signal: NodeJS.Signals) => {
  log(`${signal}: stopping servers`);
  failed = true;
  void cleanup().finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
try {
  exitCode = await main();
  if (exitCode !== 0) failed = true;
} catch (err) {
  failed = true;
  log(`FAILED: ${(err as Error).message}`);
} finally {
  await cleanup();
}
process.exit(exitCode);
