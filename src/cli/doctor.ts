// Command line: `portcullis doctor` — live checks of what a deployment depends on outside itself (the
// IdP, its keys and clock, the client registration, Redis, the upstreams, TLS certificates), each
// printed ✓/⚠/✗ with what to do. Exit 0 all good, 1 a failure, 2 warnings only.
//
// Every check is a small function returning a CheckResult; none may throw out of the command (an
// unexpected error is a ✗ with its message) and none may wait longer than oidc.timeout. The IdP
// checks go through the proxy's own sign-in code (IdentityProvider): the authorization request and
// the token request are exactly the ones a sign-in sends, with the same client authentication.
import { X509Certificate, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { importJWK, type JWK } from 'jose';
import { request } from 'undici';
import { formatIssues, loadConfigFile, type Config, type ProviderConfig } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { SessionCodec } from '../session/codec.js';
import { RedisStore } from '../session/redis-store.js';
import { describeError, IdentityProvider, randomSignInChecks } from '../signin/idp.js';
import { idpSettingsOf } from '../signin/providers.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  /** Stable per kind of check: `discovery`, `clock`, `jwks`, `client credentials`, `redirect uri`, `redis`, `microsoft graph`, `upstream <route>`, `certificate <host:port>`. */
  name: string;
  status: CheckStatus;
  /** What was found, in one line. */
  detail: string;
  /** What to do about it (warn and fail only). */
  fix?: string;
}

export interface DoctorOptions {
  /** This host's clock (ms since epoch): a parameter so tests can skew it. */
  now?: () => number;
}

/** A certificate that expires within this many days is a warning. */
export const CERT_WARN_DAYS = 14;
/** At most this much of an IdP's error page is read to find out why it refused a request. */
const MAX_PAGE_BYTES = 64 * 1024;

/** `portcullis doctor`: loads the config, runs every check, prints them; returns the exit code. */
export async function doctorCommand(configFile: string, opts: DoctorOptions & { json?: boolean } = {}): Promise<number> {
  const loaded = loadConfigFile(configFile);
  if (!loaded.ok) {
    // The same report as `portcullis check` (and, for machines, the same problems as one failed check).
    if (opts.json) {
      console.log(JSON.stringify(report([{ name: 'config', status: 'fail', detail: formatIssues(loaded.issues), fix: `portcullis check --config ${configFile}` }]), null, 2));
    } else {
      console.error(`${configFile}: ${loaded.issues.length} problem${loaded.issues.length === 1 ? '' : 's'}\n${formatIssues(loaded.issues)}`);
    }
    return 1;
  }
  const results = await runDoctor(loaded.config, opts);
  console.log(opts.json ? JSON.stringify(report(results), null, 2) : formatResults(results));
  return exitCodeOf(results);
}

/** 1 when a check failed, 2 when some only warned, 0 when all are fine. */
export function exitCodeOf(results: readonly CheckResult[]): 0 | 1 | 2 {
  if (results.some((r) => r.status === 'fail')) return 1;
  return results.some((r) => r.status === 'warn') ? 2 : 0;
}

/** The `--json` document. */
export function report(results: readonly CheckResult[]): { ok: boolean; exitCode: 0 | 1 | 2; checks: readonly CheckResult[] } {
  const exitCode = exitCodeOf(results);
  return { ok: exitCode === 0, exitCode, checks: results };
}

const MARK: Record<CheckStatus, string> = { ok: '✓', warn: '⚠', fail: '✗' };

/** One line per check, `fix:` indented below a warning or failure, and a count. */
export function formatResults(results: readonly CheckResult[]): string {
  const lines = results.flatMap((r) => [`${MARK[r.status]} ${r.name} — ${r.detail}`, ...(r.status !== 'ok' && r.fix ? [`    fix: ${r.fix}`] : [])]);
  const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
  const warnings = count('warn');
  const failures = count('fail');
  lines.push('', `${count('ok')} ok, ${warnings} warning${warnings === 1 ? '' : 's'}, ${failures} failure${failures === 1 ? '' : 's'}`);
  return lines.join('\n');
}

/** Runs every check that applies to this config (IdP, Redis, upstreams and certificates side by side). */
export async function runDoctor(config: Config, opts: DoctorOptions = {}): Promise<CheckResult[]> {
  const now = opts.now ?? Date.now;
  const timeoutMs = timeoutOf(config);
  // Every provider is checked (its group-overage Graph check too); with several, each check's name
  // starts with the provider's id.
  const several = config.providers.length > 1;
  const [idps, redis, upstreams, certificates] = await Promise.all([
    Promise.all(config.providers.map(async (p, i) => {
      const c: IdpCheckConfig = { oidc: p, publicUrl: config.publicUrl };
      const [checks, graph] = await Promise.all([
        idpChecks(c, now),
        p.groupOverage ? guarded('microsoft graph', p.timeoutMs * 2, () => graphCheck(c, p.groupOverage!.graphUrl)) : undefined,
      ]);
      // With several providers, `oidc.X` in what to fix is this provider's `oidc[i].X`.
      const at = (text: string | undefined) => text?.replace(/\boidc\./g, `oidc[${i}].`);
      return [...checks, ...(graph ? [graph] : [])].map((r) => (several ? { ...r, name: `${p.id}: ${r.name}`, detail: at(r.detail)!, ...(r.fix !== undefined ? { fix: at(r.fix) } : {}) } : r));
    })),
    config.session.store === 'redis' || config.session.redis.configured ? guarded('redis', timeoutMs * 2, () => redisCheck(config)) : undefined,
    upstreamChecks(config),
    certificateChecks(config, now),
  ]);
  return [...idps.flat(), ...(redis ? [redis] : []), ...upstreams, ...certificates, ...clientCertificateChecks(config, now)];
}

/** What the IdP checks read: one provider, and publicUrl for the callback. */
interface IdpCheckConfig { oidc: ProviderConfig; publicUrl: string }

/** The wait for checks that are not about one provider: the longest provider timeout. */
function timeoutOf(config: Config): number {
  return Math.max(...config.providers.map((p) => p.timeoutMs));
}

/**
 * Runs one check; a throw or a hang becomes a ✗ with the message. `deadlineMs` is a last resort:
 * each request inside already has its own timeout (oidc.timeout).
 */
async function guarded(name: string, deadlineMs: number, check: () => Promise<CheckResult>): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve({ name, status: 'fail', detail: `no answer within ${Math.round(deadlineMs / 1000)} s`, fix: 'check the network path from this host (DNS, firewall, egress proxy); oidc.timeout sets the limit' }), deadlineMs);
  });
  try {
    return await Promise.race([check(), hang]);
  } catch (err) {
    return { name, status: 'fail', detail: `unexpected error: ${oneLine(describeError(err))}` };
  } finally {
    clearTimeout(timer);
  }
}

// ---- The IdP ----

/** Discovery (and, from the same answer, the clock), then the keys, the client credentials and the redirect URI. */
async function idpChecks(config: IdpCheckConfig, now: () => number): Promise<CheckResult[]> {
  const deadline = config.oidc.timeoutMs * 2;
  const found = await discoveryCheck(config, now).catch((err: unknown) => ({
    result: { name: 'discovery', status: 'fail', detail: `unexpected error: ${oneLine(describeError(err))}` } satisfies CheckResult,
    metadata: undefined,
    clock: undefined,
  }));
  const results: CheckResult[] = [found.result];
  if (found.clock) results.push(found.clock);
  const notChecked = (name: string): CheckResult => ({ name, status: 'fail', detail: 'not checked: the discovery document is needed first (see above)' });
  if (!found.metadata) return [...results, notChecked('jwks'), notChecked('client credentials'), notChecked('redirect uri')];
  const metadata = found.metadata;
  const jwks = guarded('jwks', deadline, () => jwksCheck(config, metadata));
  // Portcullis's own client, as the running proxy builds it (runtime.ts): discovery, key priming,
  // client authentication by oidc.tokenEndpointAuthMethod.
  const idp = new IdentityProvider(idpSettingsOf(config.oidc, config.publicUrl));
  try {
    void idp.start();
    let notReady: string | undefined;
    await idp.waitReady(deadline).catch(() => { notReady = idp.lastError ?? 'discovery did not complete'; });
    const blocked = (name: string): CheckResult => ({ name, status: 'fail', detail: `not checked: Portcullis's IdP client could not start: ${oneLine(notReady!)}`, fix: 'fix the discovery and jwks checks first' });
    const [keys, credentials, redirect] = await Promise.all([
      jwks,
      notReady ? blocked('client credentials') : guarded('client credentials', deadline, () => clientCredentialsCheck(config, idp)),
      notReady ? blocked('redirect uri') : guarded('redirect uri', deadline, () => redirectUriCheck(config, idp)),
    ]);
    return [...results, keys, credentials, redirect];
  } finally {
    idp.close();
  }
}

type Discovered = { result: CheckResult; metadata: Record<string, unknown> | undefined; clock: CheckResult | undefined };

/** The discovery document: reachable, JSON, and naming exactly the configured issuer. Its `Date` header times the clock check. */
async function discoveryCheck(config: IdpCheckConfig, now: () => number): Promise<Discovered> {
  const { issuer, timeoutMs } = config.oidc;
  // As openid-client builds it: the issuer's path, without a trailing slash, + /.well-known/openid-configuration.
  const url = new URL(issuer);
  url.pathname = `${url.pathname.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const name = 'discovery';
  const t0 = now();
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    return {
      result: { name, status: 'fail', detail: `cannot reach ${url.href}: ${networkError(err)}`, fix: 'check oidc.issuer, and that this host can reach the IdP (DNS, firewall, egress proxy, the IdP running)' },
      metadata: undefined,
      clock: undefined,
    };
  }
  const t1 = now();
  const clock = clockCheck(config, res.headers.get('date'), (t0 + t1) / 2);
  const body = await res.text().catch(() => '');
  const fail = (detail: string, fix: string): Discovered => ({ result: { name, status: 'fail', detail, fix }, metadata: undefined, clock });
  const issuerFix = 'oidc.issuer must be the issuer exactly as the IdP names it (scheme, host, port, path, trailing slash): discovery is issuer + /.well-known/openid-configuration';
  if (res.status !== 200) return fail(`${url.href} answered HTTP ${res.status}${res.headers.get('location') ? ` (redirect to ${printable(res.headers.get('location')!, 200)})` : ''}`, issuerFix);
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return fail(`${url.href} did not answer JSON (content-type ${printable(res.headers.get('content-type') ?? 'none', 80)})`, issuerFix);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return fail(`${url.href} did not answer a JSON object`, issuerFix);
  const metadata = doc as Record<string, unknown>;
  if (metadata.issuer !== issuer) {
    return fail(
      `the IdP names itself ${JSON.stringify(printable(String(metadata.issuer ?? '(no issuer)'), 200))}, the config says ${JSON.stringify(issuer)}`,
      typeof metadata.issuer === 'string' ? `set oidc.issuer to ${JSON.stringify(printable(metadata.issuer, 200))} exactly (ID tokens carry it as iss)` : issuerFix,
    );
  }
  return { result: { name, status: 'ok', detail: `${url.href} names issuer ${issuer} (${Math.round(t1 - t0)} ms)` }, metadata, clock };
}

/**
 * This host's clock against the IdP's `Date` header: ID tokens are checked against oidc.clockTolerance,
 * so a skew beyond it refuses sign-ins (iat in the future, or exp already past); beyond half of it
 * is a warning. `Date` has whole seconds (truncated), so half a second is added to centre it.
 */
function clockCheck(config: IdpCheckConfig, date: string | null, localMs: number): CheckResult {
  const name = 'clock';
  const toleranceSec = config.oidc.clockToleranceSec;
  const idpMs = date ? Date.parse(date) : NaN;
  if (Number.isNaN(idpMs)) return { name, status: 'warn', detail: 'could not tell: the IdP sent no valid Date header', fix: 'make sure this host syncs its clock (NTP, chrony)' };
  const skewSec = Math.round((idpMs + 500 - localMs) / 1000);
  const how = skewSec === 0 ? 'in step with this host' : `${Math.abs(skewSec)} s ${skewSec > 0 ? 'ahead of' : 'behind'} this host`;
  const detail = `the IdP's clock is ${how} (oidc.clockTolerance ${toleranceSec} s)`;
  const fix = 'sync the clocks of this host and the IdP (NTP, chrony); raising oidc.clockTolerance only hides it';
  if (Math.abs(skewSec) > toleranceSec) return { name, status: 'fail', detail: `${detail}: ID tokens will be refused`, fix };
  if (Math.abs(skewSec) > toleranceSec / 2) return { name, status: 'warn', detail: `${detail}: more than half the tolerance`, fix };
  return { name, status: 'ok', detail };
}

/**
 * The signing keys: the jwks_uri answers a JWK set with at least one signing key usable with one of
 * oidc.idTokenSigningAlgs (each such key is imported with jose to be sure), and the IdP advertises
 * signing ID tokens with one of them.
 */
async function jwksCheck(config: IdpCheckConfig, metadata: Record<string, unknown>): Promise<CheckResult> {
  const name = 'jwks';
  const allowed = config.oidc.idTokenSigningAlgs;
  const algFix = `oidc.idTokenSigningAlgs (${allowed.join(', ')}) must include the algorithm the IdP signs ID tokens with, or the IdP's client settings changed to one of them`;
  if (typeof metadata.jwks_uri !== 'string') return { name, status: 'fail', detail: 'the discovery document has no jwks_uri: ID token signatures cannot be verified', fix: 'the IdP must publish its signing keys (jwks_uri)' };
  const uri = metadata.jwks_uri;
  let res: Response;
  try {
    res = await fetch(uri, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(config.oidc.timeoutMs) });
  } catch (err) {
    return { name, status: 'fail', detail: `cannot reach ${printable(uri, 200)}: ${networkError(err)}`, fix: 'this host must reach the IdP\'s jwks_uri too (it may be on another host than the issuer)' };
  }
  let keys: unknown;
  try {
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    keys = ((await res.json()) as { keys?: unknown }).keys;
    if (!Array.isArray(keys)) throw new Error('no "keys" array');
  } catch (err) {
    return { name, status: 'fail', detail: `${printable(uri, 200)}: not a JWK set (${oneLine((err as Error).message)})`, fix: 'the IdP\'s jwks_uri must answer its public keys as a JWK set' };
  }
  const usable = new Set<string>();
  for (const key of keys) {
    if (!key || typeof key !== 'object') continue;
    for (const alg of signingAlgsOf(key as JWK).filter((a) => allowed.includes(a))) {
      if (await importJWK(key as JWK, alg).then(() => true, () => false)) usable.add(alg);
    }
  }
  const advertised = Array.isArray(metadata.id_token_signing_alg_values_supported) ? metadata.id_token_signing_alg_values_supported.map(String) : undefined;
  if (usable.size === 0) return { name, status: 'fail', detail: `${keys.length} key${keys.length === 1 ? '' : 's'} at ${printable(uri, 200)}, none usable with ${allowed.join(', ')}`, fix: algFix };
  if (advertised && !advertised.some((a) => usable.has(a))) {
    return { name, status: 'fail', detail: `the IdP signs ID tokens with ${printable(advertised.join(', '), 200)}; keys here serve ${[...usable].join(', ')} of oidc.idTokenSigningAlgs`, fix: algFix };
  }
  return { name, status: 'ok', detail: `${keys.length} key${keys.length === 1 ? '' : 's'}, usable for ${[...usable].join(', ')}` };
}

/** The algorithms a public JWK can verify: its `alg` when it names one, else what its key type and curve allow. Encryption keys: none. */
function signingAlgsOf(jwk: JWK): string[] {
  if (jwk.use !== undefined && jwk.use !== 'sig') return [];
  if (typeof jwk.alg === 'string') return [jwk.alg];
  if (jwk.kty === 'RSA') return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
  if (jwk.kty === 'EC') return ({ 'P-256': ['ES256'], 'P-384': ['ES384'], 'P-521': ['ES512'] } as Record<string, string[]>)[String(jwk.crv)] ?? [];
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return ['EdDSA', 'Ed25519'];
  return [];
}

/**
 * The client secret: a token request with a code the IdP never issued, through the proxy's own
 * callback code (same client authentication). RFC 6749 §5.2: `invalid_grant` means the client
 * authenticated and only the code was refused; `invalid_client` means the secret (or the auth method) is wrong.
 */
async function clientCredentialsCheck(config: IdpCheckConfig, idp: IdentityProvider): Promise<CheckResult> {
  const name = 'client credentials';
  const checks = randomSignInChecks();
  const state = randomBytes(16).toString('base64url');
  const query = new URLSearchParams({ code: `portcullis-doctor-${randomBytes(16).toString('base64url')}`, state });
  // RFC 9207: an IdP that says it sends `iss` on authorization responses is held to it.
  const issuer = idp.metadata?.issuer;
  if (idp.metadata?.authorization_response_iss_parameter_supported && issuer) query.set('iss', issuer);
  const how = `${config.oidc.tokenEndpointAuthMethod}, client ${config.oidc.clientId}`;
  try {
    await idp.completeSignIn(query.toString(), { state, nonce: checks.nonce, verifier: checks.verifier });
  } catch (err) {
    const code = err instanceof PortcullisError ? err.code : undefined;
    const said = oneLine(describeError(err instanceof PortcullisError && err.cause ? err.cause : err));
    if (code === 'ERR_CALLBACK_CODE_REJECTED') return { name, status: 'ok', detail: `the token endpoint authenticated the client (${how}) and refused only the made-up code (invalid_grant)` };
    if (code === 'ERR_CALLBACK_CLIENT_AUTH') {
      return { name, status: 'fail', detail: `the token endpoint refused the client (${how}): ${said}`, fix: config.oidc.tokenEndpointAuthMethod === 'private_key_jwt'
        ? 'the IdP must know the first key of oidc.clientKeysFile: set the client\'s jwks_uri to publicUrl + /oauth2/client-jwks.json (reachable from the IdP) or register its public key, register the client for private_key_jwt, and check oidc.clientAssertionAudience'
        : 'oidc.clientSecret (or clientSecretFile) must be the client\'s current secret at the IdP, and oidc.tokenEndpointAuthMethod a method the client is registered for' };
    }
    if (code === 'ERR_CALLBACK_TOKEN_REQUEST_REFUSED') {
      return { name, status: 'fail', detail: `the token endpoint refused the request (${how}): ${said}`, fix: 'the client\'s registration at the IdP must allow the authorization_code grant for this client' };
    }
    if (code === 'ERR_IDP_BAD_RESPONSE') {
      return { name, status: 'fail', detail: `the token endpoint gave no OAuth answer (${how}): ${said}`, fix: 'the discovery document\'s token_endpoint must be the IdP\'s own (not a login portal or a proxy page in front of it)' };
    }
    return { name, status: 'fail', detail: `the token request failed (${how}): ${said}`, fix: 'check that this host reaches the IdP\'s token endpoint' };
  }
  // Only a broken IdP redeems a code it never issued.
  return { name, status: 'fail', detail: 'the IdP accepted a made-up authorization code', fix: 'the IdP is not safe to sign in with: report it to whoever runs it' };
}

/**
 * The redirect URI: the authorization request a sign-in sends (idp.authorizationUrl), not followed.
 * A redirect on to the IdP's sign-in page (or back to our callback) means the redirect URI was
 * accepted; a 4xx, or a page saying redirect_uri is wrong, means refused; anything else: could not tell.
 */
async function redirectUriCheck(config: IdpCheckConfig, idp: IdentityProvider): Promise<CheckResult> {
  const name = 'redirect uri';
  const redirectUri = idp.settings.redirectUri;
  const checks = randomSignInChecks();
  const url = await idp.authorizationUrl({ state: randomBytes(16).toString('base64url'), nonce: checks.nonce, verifier: checks.verifier });
  let res: Awaited<ReturnType<typeof request>>;
  let page: string;
  try {
    res = await request(url, { method: 'GET', headers: { accept: 'text/html' }, signal: AbortSignal.timeout(config.oidc.timeoutMs) });
    page = await readText(res.body, MAX_PAGE_BYTES);
  } catch (err) {
    return { name, status: 'fail', detail: `cannot reach the authorization endpoint: ${networkError(err)}`, fix: 'check that this host reaches the IdP\'s authorization_endpoint' };
  }
  const fix = `register ${redirectUri} (publicUrl + /oauth2/callback) as a redirect URI of client ${config.oidc.clientId} at the IdP, or correct publicUrl`;
  const status = res.statusCode;
  const location = typeof res.headers.location === 'string' ? res.headers.location : undefined;
  // A Location that is not a URL is an answer we cannot read: "could not tell" below.
  const to = location !== undefined && URL.canParse(location, url) ? new URL(location, url) : undefined;
  if (status >= 300 && status < 400 && to) {
    if (`${to.origin}${to.pathname}` === redirectUri) {
      const error = to.searchParams.get('error');
      if (!error) return { name, status: 'ok', detail: `${redirectUri} accepted (the IdP redirected straight back to it)` };
      const description = to.searchParams.get('error_description');
      return { name, status: 'fail', detail: `${redirectUri} accepted, but the IdP refused the authorization request: ${printable(error, 60)}${description ? `: ${printable(description, 200)}` : ''}`, fix: 'check oidc.scopes and the client\'s registration at the IdP (response type code, scopes)' };
    }
    return { name, status: 'ok', detail: `${redirectUri} accepted (HTTP ${status} on to the IdP's sign-in page)` };
  }
  const text = pageText(page);
  const namesRedirect = /redirect[ _-]?ur[il]/i.test(text);
  if (status >= 400 && status < 500) {
    return { name, status: 'fail', detail: `the IdP refused the authorization request (HTTP ${status})${excerpt(text) ? `: ${excerpt(text)}` : ''}`, fix };
  }
  if (status === 200) {
    if (namesRedirect && /invalid|mismatch|not (?:registered|allowed|valid|match)|does not match|unknown|error/i.test(text)) {
      return { name, status: 'fail', detail: `the IdP answered an error page: ${excerpt(text)}`, fix };
    }
    // Keycloak and others show the sign-in form directly on the authorization endpoint.
    if (/<form|type=["']?password/i.test(page)) return { name, status: 'ok', detail: `${redirectUri} accepted (the IdP answered with its sign-in page)` };
  }
  return { name, status: 'warn', detail: `could not tell: the authorization request got HTTP ${status}${excerpt(text) ? `: ${excerpt(text)}` : ''}`, fix: `sign in once by hand; if the IdP complains about the redirect URI: ${fix}` };
}

// ---- Redis ----

/** Redis answers and takes a write: one probe key under the session key prefix, set with a TTL and deleted. */
async function redisCheck(config: Config): Promise<CheckResult> {
  const name = 'redis';
  const { url, keyPrefix } = config.session.redis;
  // The store the proxy uses (same URL parsing, timeouts and key prefix); the probe never touches a session key.
  const store = new RedisStore(new SessionCodec(config.session.secrets), config.session.cookieName, { url, keyPrefix, ttlMs: 60_000 });
  const shown = url.replace(/\/\/[^@/]*@/, '//***@');
  let lastError: Error | undefined;
  store.client.on('error', (err: Error) => { lastError = err; });
  try {
    const timeoutMs = timeoutOf(config);
    const ready = await new Promise<boolean>((resolve) => {
      if (store.client.status === 'ready') return resolve(true);
      const timer = setTimeout(() => resolve(false), timeoutMs);
      store.client.once('ready', () => { clearTimeout(timer); resolve(true); });
    });
    if (!ready) {
      return { name, status: 'fail', detail: `${shown}: not connected within ${Math.round(timeoutMs / 1000)} s${lastError ? `: ${oneLine(lastError.message)}` : ''}`, fix: 'check session.redis.url (host, port, password, TLS), and that this host can reach Redis' };
    }
    const key = `doctor:${randomBytes(8).toString('hex')}`;
    try {
      await store.setIfAbsent(key, '1', 60_000);
      await store.del(key);
    } catch (err) {
      return { name, status: 'fail', detail: `${shown}: connected, but a write failed: ${oneLine(describeError(err))}`, fix: 'Portcullis needs to write: point session.redis.url at the primary (or use ?sentinel=), with a user allowed to SET and DEL under session.redis.keyPrefix' };
    }
    return { name, status: 'ok', detail: `${shown}: connected, wrote and deleted a probe key under ${keyPrefix}` };
  } finally {
    await store.close();
  }
}

// ---- Upstreams ----

/** One check per route: its upstream gives any HTTP answer (a HEAD request; each upstream is asked once). */
async function upstreamChecks(config: Config): Promise<CheckResult[]> {
  const probes = new Map<string, Promise<{ ok: true; status: number; ms: number } | { ok: false; why: string }>>();
  const probe = (upstream: string) => {
    let p = probes.get(upstream);
    if (!p) {
      const t0 = performance.now();
      p = request(upstream, { method: 'HEAD', signal: AbortSignal.timeout(timeoutOf(config)) })
        .then(async (res) => { await res.body.dump(); return { ok: true as const, status: res.statusCode, ms: Math.round(performance.now() - t0) }; })
        .catch((err: unknown) => ({ ok: false as const, why: networkError(err) }));
      probes.set(upstream, p);
    }
    return p;
  };
  return Promise.all(config.routes.map((route, i) => guarded(`upstream ${route.name}`, timeoutOf(config) * 2, async () => {
    const r = await probe(route.upstream);
    const name = `upstream ${route.name}`;
    if (r.ok) return { name, status: 'ok', detail: `${route.upstream} answered HTTP ${r.status} (${r.ms} ms)` };
    return { name, status: 'fail', detail: `route "${route.name}": cannot reach ${route.upstream}: ${r.why}`, fix: `check routes[${i}].upstream, and that this host can reach it (DNS, network policy, the upstream running)` };
  })));
}

// ---- Microsoft Graph (oidc.groupOverage) ----

/**
 * Graph reachable from here (it is asked without a token: any HTTP answer, normally 401, proves
 * the way there), and no scope in oidc.scopes that would make Entra issue the access token for
 * another API — Graph refuses such a token, and users in more than 200 groups get none.
 */
async function graphCheck(config: IdpCheckConfig, graphUrl: string): Promise<CheckResult> {
  const name = 'microsoft graph';
  const url = `${graphUrl}/v1.0/me/getMemberObjects`;
  let status: number;
  try {
    const res = await request(url, { method: 'POST', body: '{"securityEnabledOnly":false}', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(config.oidc.timeoutMs) });
    await res.body.dump();
    status = res.statusCode;
  } catch (err) {
    return { name, status: 'fail', detail: `cannot reach ${graphUrl}: ${networkError(err)}`, fix: 'allow this host to reach oidc.groupOverage.graphUrl (egress, proxy, DNS); until it can, users in more than 200 groups are signed in without groups' };
  }
  const foreign = config.oidc.scopes.filter((s) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s) && !s.startsWith(`${graphUrl}/`));
  if (foreign.length > 0) {
    return { name, status: 'warn', detail: `reachable (HTTP ${status} without a token), but oidc.scopes asks for ${foreign.map((s) => oneLine(s)).join(', ')}: Entra then issues the access token for that API, and Graph refuses it`, fix: 'request User.Read (Graph) and no scope of another API in oidc.scopes; see docs/identity.md, group overage' };
  }
  return { name, status: 'ok', detail: `${graphUrl} reachable (HTTP ${status} without a token)` };
}

// ---- Certificates ----

/**
 * The TLS certificate of the issuer (when https) and of every https upstream: expired or not yet
 * valid is a failure, expiring within CERT_WARN_DAYS a warning. Only the dates are judged here;
 * whether the certificate is trusted shows in the discovery and upstream checks, which verify it.
 */
async function certificateChecks(config: Config, now: () => number): Promise<CheckResult[]> {
  const targets = new Map<string, { host: string; port: number; users: string[] }>();
  const add = (url: string, user: string) => {
    const u = new URL(url);
    if (u.protocol !== 'https:') return;
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const port = Number(u.port || 443);
    const key = `${u.hostname}:${port}`;
    const t = targets.get(key) ?? { host, port, users: [] };
    t.users.push(user);
    targets.set(key, t);
  };
  for (const p of config.providers) add(p.issuer, config.providers.length > 1 ? `the issuer of ${p.id}` : 'the issuer');
  for (const route of config.routes) add(route.upstream, `route ${route.name}`);
  return Promise.all([...targets].map(([key, t]) => guarded(`certificate ${key}`, timeoutOf(config) * 2, async () => {
    const name = `certificate ${key}`;
    const of = `(${t.users.join(', ')})`;
    let cert: PeerCertificate;
    try {
      cert = await peerCertificate(t.host, t.port, timeoutOf(config));
    } catch (err) {
      return { name, status: 'fail', detail: `${of}: no TLS handshake: ${networkError(err)}`, fix: 'check that this host reaches it over TLS' };
    }
    return judgeDates(name, of, cert.valid_from, cert.valid_to, now(), 'renew the certificate (and check that its automatic renewal works)');
  })));
}

/**
 * `private_key_jwt` keys with a certificate (oidc.clientKeysFile): the IdP (Entra ID) refuses
 * assertions once the certificate it has on file expired, and Portcullis does not judge the dates at
 * start. No network: the dates of the file's certificates, as for TLS certificates above.
 */
function clientCertificateChecks(config: Config, now: () => number): CheckResult[] {
  const several = config.providers.length > 1;
  return config.providers.flatMap((p, i) => p.clientKeys.flatMap((k, j) => {
    if (!k.cert) return [];
    const name = `client certificate${several ? ` ${p.id}` : ''}${p.clientKeys.length > 1 ? ` key ${j + 1}` : ''}`;
    const x509 = new X509Certificate(Buffer.from(k.cert.x5c[0]!, 'base64'));
    const at = several ? `oidc[${i}].clientKeysFile` : 'oidc.clientKeysFile';
    return [judgeDates(name, `(${at}${j === 0 ? ', the signing key' : ''})`, x509.validFrom, x509.validTo, now(),
      `make a new key and certificate, upload the certificate to the IdP, put both first in ${at}, and reload`)];
  }));
}

/** A certificate's dates: ✗ not yet valid or expired, ⚠ within CERT_WARN_DAYS of expiry, else ✓. */
function judgeDates(name: string, of: string, validFrom: string, validTo: string, nowMs: number, renew: string): CheckResult {
  const days = (Date.parse(validTo) - nowMs) / 86_400_000;
  const until = new Date(Date.parse(validTo)).toISOString().slice(0, 10);
  if (Date.parse(validFrom) > nowMs) return { name, status: 'fail', detail: `${of}: not valid before ${validFrom}`, fix: 'check this host\'s clock, or the certificate' };
  if (days <= 0) return { name, status: 'fail', detail: `${of}: expired on ${until}`, fix: renew };
  if (days <= CERT_WARN_DAYS) return { name, status: 'warn', detail: `${of}: expires on ${until}, in ${Math.floor(days)} day${Math.floor(days) === 1 ? '' : 's'}`, fix: renew };
  return { name, status: 'ok', detail: `${of}: valid until ${until} (${Math.floor(days)} days)` };
}

/** The server's leaf certificate, trusted or not (the dates are what is judged). */
function peerCertificate(host: string, port: number, timeoutMs: number): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, servername: isIP(host) ? undefined : host, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerCertificate();
      socket.destroy();
      if (!cert || !cert.valid_to) reject(new Error('the server sent no certificate'));
      else resolve(cert);
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no handshake within ${Math.round(timeoutMs / 1000)} s`)));
    socket.on('error', reject);
  });
}

// ---- Words ----

/** A network failure in a few words: the system error code and message when there is one (fetch and undici hide it in `cause`). */
function networkError(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  const cause = e?.cause && typeof e.cause === 'object' ? e.cause : undefined;
  const code = cause?.code ?? e?.code;
  const message = cause?.message ?? e?.message ?? String(err);
  return oneLine(code && !message.includes(code) ? `${code} ${message}` : message);
}

/** Printable ASCII only, bounded: text from a remote server goes to an operator's terminal. */
function printable(s: string, max: number): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function oneLine(s: string): string {
  return printable(s.replace(/\s+/g, ' ').trim(), 300);
}

/** The visible text of an HTML page (or a JSON/text body as is), whitespace collapsed. */
function pageText(page: string): string {
  return page.replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ').replace(/&[a-z]+;|&#\d+;/gi, ' ').replace(/\s+/g, ' ').trim();
}

/** The part of a page that says what is wrong: around its mention of the redirect URI, else its start. */
function excerpt(text: string): string {
  const at = text.search(/redirect[ _-]?ur[il]/i);
  return printable(at > 80 ? `…${text.slice(at - 80)}` : text, 200);
}

/** At most `max` bytes of a response body as text; the rest is discarded. */
async function readText(body: AsyncIterable<Buffer> & { destroy(): void }, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= max) { body.destroy(); break; }
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}
