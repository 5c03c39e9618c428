// Interop suite: Glewlwyd (Debian's `glewlwyd` package, an OpenID Provider written in C) as a real IdP.
// Each start is its own process on a free loopback port with a fresh SQLite database in a temp dir,
// created from the package's own init.sqlite3.sql and configured only through Glewlwyd's admin REST API.
// The test owns the process and stops it by PID; no system service is involved.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { freePort } from '../../dev/devidp/net.js';
import { findTool } from '../helpers/chromium.js';
import { ALICE, BOB, type ClientSettings, type InteropIdp, type InteropUser } from './idp.js';

export const GLEWLWYD_BIN = process.env.GLEWLWYD ?? '/usr/bin/glewlwyd';
/** Where Debian puts the pieces (the doc copy may be excluded by minimal images' dpkg path-exclude). */
const INIT_SQL_CANDIDATES = [
  '/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3',
  '/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz',
];
const WEBAPP_DIR = '/usr/share/glewlwyd/webapp';
/** The webapp's config.json (Debian's webapp/config.json is a symlink to a directory: it cannot be served as is). */
const WEBAPP_CONFIG = '/usr/share/glewlwyd/templates/config.json';
const MODULE_DIR = '/usr/lib/glewlwyd';

/** The admin account the package's init SQL creates. */
const ADMIN = { username: 'admin', password: 'password' };
/** Name of the OIDC plugin instance: the issuer is <base>/api/<name>. */
const PLUGIN = 'oidc';

/**
 * undefined when Glewlwyd, sqlite3 and the package's init SQL are installed; otherwise the reason. With
 * CI=true a missing Glewlwyd is an error (thrown), never a skip.
 */
export function missingGlewlwydReason(): string | undefined {
  const missing: string[] = [];
  if (!findTool(GLEWLWYD_BIN)) missing.push(GLEWLWYD_BIN);
  if (!findTool('sqlite3')) missing.push('sqlite3');
  if (!INIT_SQL_CANDIDATES.some((p) => existsSync(p))) missing.push('init.sqlite3.sql');
  if (!existsSync(join(WEBAPP_DIR, 'login.html'))) missing.push(`${WEBAPP_DIR}/login.html`);
  if (missing.length === 0) return undefined;
  const message = `Glewlwyd is not installed (missing ${missing.join(', ')}; apt-get install glewlwyd sqlite3, see .ci/run)`;
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  return message;
}

function initSql(): string {
  for (const p of INIT_SQL_CANDIDATES) {
    if (!existsSync(p)) continue;
    const buf = readFileSync(p);
    return (p.endsWith('.gz') ? gunzipSync(buf) : buf).toString('utf8');
  }
  throw new Error('init.sqlite3.sql not found');
}

export interface GlewlwydOptions {
  /** Access (and ID) token lifetime, seconds. Default 3600. */
  accessTokenLifetimeSec?: number;
  /** Glewlwyd's log level (ERROR, WARNING, INFO, DEBUG). Default INFO. */
  logLevel?: string;
  /** Host name in Glewlwyd's URLs (it always listens on 127.0.0.1). Default 127.0.0.1. */
  host?: string;
}

/** A private signing JWK for the OIDC plugin (RS256: Portcullis never accepts HMAC ID tokens, Glewlwyd's `sha` default). */
function signingKey(kid: string): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

/** The libconfig file Glewlwyd reads (`glewlwyd -c`). */
function configFile(opts: { port: number; externalUrl: string; dir: string; logLevel: string }): string {
  const mime = [
    ['.html', 'text/html'], ['.css', 'text/css'], ['.js', 'application/javascript'], ['.json', 'application/json'],
    ['.png', 'image/png'], ['.ico', 'image/x-icon'], ['.svg', 'image/svg+xml'], ['.woff', 'font/woff'],
    ['.woff2', 'font/woff2'], ['.ttf', 'font/ttf'], ['.eot', 'application/vnd.ms-fontobject'],
  ].map(([ext, type]) => `  { extension = "${ext}"; mime_type = "${type}"; compress = 0; }`).join(',\n');
  // No use_secure_connection key at all: with it (even `false`) Glewlwyd 2.7 wants certificate files.
  return `port = ${opts.port}
bind_address = "127.0.0.1"
external_url = "${opts.externalUrl}"
login_url = "login.html"
api_prefix = "api"
static_files_path = "${opts.dir}/webapp/"
allow_origin = "*"
log_mode = "console"
log_level = "${opts.logLevel}"
cookie_secure = 0
cookie_same_site = "lax"
session_expiration = 3600
session_key = "GLEWLWYD2_SESSION_ID"
admin_session_authentication = "cookie"
profile_session_authentication = "cookie"
allow_multiple_user_per_session = true
login_api_enabled = true
add_x_frame_option_header_deny = true
max_post_size = 16778240
admin_scope = "g_admin"
profile_scope = "g_profile"
user_module_path = "${MODULE_DIR}/user"
client_module_path = "${MODULE_DIR}/client"
user_auth_scheme_module_path = "${MODULE_DIR}/scheme"
plugin_module_path = "${MODULE_DIR}/plugin"
hash_algorithm = "SHA512"
database = { type = "sqlite3"; path = "${opts.dir}/glewlwyd.db"; };
static_files_mime_types = (
${mime}
);
`;
}

/** The admin REST API with the admin's session cookie. */
class AdminApi {
  private cookie = '';
  constructor(private readonly api: string) {}

  async login(): Promise<void> {
    const res = await fetch(`${this.api}/auth/`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ADMIN),
    });
    if (res.status !== 200) throw new Error(`Glewlwyd admin login: HTTP ${res.status} ${await res.text()}`);
    const set = res.headers.getSetCookie().map((c) => c.split(';')[0]).filter((c) => c.startsWith('GLEWLWYD2_SESSION_ID='));
    if (set.length === 0) throw new Error('Glewlwyd admin login: no session cookie');
    this.cookie = set[0]!;
  }

  async call(method: string, path: string, body?: unknown, ok: number[] = [200]): Promise<unknown> {
    const res = await fetch(`${this.api}${path}`, {
      method,
      headers: { cookie: this.cookie, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!ok.includes(res.status)) throw new Error(`Glewlwyd admin API ${method} ${path}: HTTP ${res.status} ${text}`);
    return text ? JSON.parse(text) as unknown : undefined;
  }
}

export interface Glewlwyd extends InteropIdp {
  readonly pid: number;
  clientCredentialsToken: NonNullable<InteropIdp['clientCredentialsToken']>;
  rotateKeys: NonNullable<InteropIdp['rotateKeys']>;
  /** The kid Glewlwyd signs with now. */
  currentKid(): Promise<string>;
  readonly api: string;
  readonly admin: AdminApi;
}

/** Starts Glewlwyd and configures it through its API: the OIDC plugin, scopes, alice and bob. */
export async function startGlewlwyd(opts: GlewlwydOptions = {}): Promise<Glewlwyd> {
  const accessTokenLifetimeSec = opts.accessTokenLifetimeSec ?? 3600;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-glewlwyd-'));
  const port = await freePort();
  const origin = `http://${opts.host ?? '127.0.0.1'}:${port}`;
  const api = `${origin}/api`;
  const issuer = `${api}/${PLUGIN}`;

  const sqlite = spawnSync('sqlite3', [join(dir, 'glewlwyd.db')], { input: initSql(), encoding: 'utf8' });
  if (sqlite.status !== 0) throw new Error(`sqlite3 init: ${sqlite.stderr}`);
  cpSync(WEBAPP_DIR, join(dir, 'webapp'), { recursive: true, dereference: true, filter: (src) => src !== join(WEBAPP_DIR, 'config.json') });
  writeFileSync(join(dir, 'webapp', 'config.json'), readFileSync(WEBAPP_CONFIG));
  writeFileSync(join(dir, 'glewlwyd.conf'), configFile({ port, externalUrl: origin, dir, logLevel: opts.logLevel ?? 'INFO' }));

  const lines: string[] = [];
  const child: ChildProcess = spawn(GLEWLWYD_BIN, ['-c', join(dir, 'glewlwyd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => lines.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => lines.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Should the test runner die before stop(), do not leave Glewlwyd behind (its own PID only).
  const killOnExit = (): void => { if (child.exitCode === null && child.pid !== undefined) try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } };
  process.once('exit', killOnExit);
  const log = (): string => lines.join('');

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(() => { if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL'); }, 3_000);
      await exited;
      clearTimeout(timer);
    }
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitUntilUp(api, child, log);
    const admin = new AdminApi(api);
    await admin.login();
    await configure(admin, { issuer, accessTokenLifetimeSec });
    return {
      name: `Glewlwyd ${glewlwydVersion()}`,
      issuer, origin, api, admin, accessTokenLifetimeSec,
      pid: child.pid!,
      users: { admin: ALICE, other: BOB },
      backchannelLogout: true,
      registerClient: (client) => registerClient(admin, client),
      signIn: (page, who) => signIn(page, who, origin),
      confirmEndSession: (page) => confirmEndSession(page, origin),
      clientCredentialsToken: (client, scope) => clientCredentialsToken(issuer, client, scope),
      rotateKeys: () => rotateKeys(admin),
      currentKid: async () => (await currentPluginParams(admin))['default-kid'] as string,
      log,
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- glewlwyd log ---\n${log()}`);
  }
}

function glewlwydVersion(): string {
  const r = spawnSync(GLEWLWYD_BIN, ['--version'], { encoding: 'utf8' });
  return /(\d+\.\d+\.\d+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? '?';
}

async function waitUntilUp(api: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`glewlwyd exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${api}/auth/scheme/`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`glewlwyd did not answer within 15 s\n${log()}`);
}

const USER_SCOPES = ['openid', 'profile', 'email', 'groups'];

async function configure(admin: AdminApi, o: { issuer: string; accessTokenLifetimeSec: number }): Promise<void> {
  // 1. The database user backend learns a multi-valued `groups` property (its data-format), so users can carry groups.
  const mod = await admin.call('GET', '/mod/user/database') as { parameters: { 'data-format': Record<string, unknown> } } & Record<string, unknown>;
  mod.parameters['data-format'].groups = { multiple: true, read: true, write: true, 'profile-read': true, 'profile-write': false };
  await admin.call('PUT', '/mod/user/database', mod);
  await admin.call('PUT', '/mod/user/database/reset');
  // The client backend likewise: the OIDC plugin reads `post_logout_redirect_uris` (a list) at
  // end_session, but Debian's init SQL only declares `post_logout_redirect_uri` (one string, which the
  // plugin never reads): without this, RP-initiated logout ignores every post_logout_redirect_uri.
  const cmod = await admin.call('GET', '/mod/client/database') as { parameters: { 'data-format': Record<string, unknown> } } & Record<string, unknown>;
  cmod.parameters['data-format'].post_logout_redirect_uris = { multiple: true, read: true, write: true };
  await admin.call('PUT', '/mod/client/database', cmod);
  await admin.call('PUT', '/mod/client/database/reset');

  // 2. Scopes: every one needs the password (openid ships with password_required false: no authentication at all).
  await admin.call('PUT', '/scope/openid', { display_name: 'Open ID', description: 'OpenID Connect', password_required: true, password_max_age: 0, scheme: {} });
  for (const name of ['profile', 'email', 'groups']) {
    await admin.call('POST', '/scope/', { name, display_name: name, description: `${name} claims`, password_required: true, password_max_age: 0, scheme: {} });
  }
  // A scope clients may get for themselves (client_credentials), for bearer routes.
  await admin.call('POST', '/scope/', { name: 'api', display_name: 'api', description: 'machine clients', password_required: false, password_max_age: 0, scheme: {} });

  // 3. The OpenID Connect plugin.
  const kid = `k-${randomUUID().slice(0, 8)}`;
  await admin.call('POST', '/mod/plugin/', {
    module: 'oidc', name: PLUGIN, display_name: 'OpenID Connect', enabled: true,
    parameters: {
      iss: o.issuer,
      'jwks-private': JSON.stringify({ keys: [signingKey(kid)] }), 'default-kid': kid, 'jwks-show': true,
      'access-token-duration': o.accessTokenLifetimeSec,
      'refresh-token-duration': 1_209_600,
      'code-duration': 600,
      'refresh-token-rolling': true,
      // client_credentials is refused (403, empty body) unless non-OIDC (plain OAuth 2) requests are allowed.
      'allow-non-oidc': true,
      'auth-type-code-enabled': true,
      'auth-type-token-enabled': false,
      'auth-type-id-token-enabled': true,
      'auth-type-none-enabled': false,
      'auth-type-password-enabled': false,
      'auth-type-client-enabled': true,
      'auth-type-refresh-enabled': true,
      'auth-type-device-enabled': false,
      'pkce-allowed': true,
      'pkce-method-plain-allowed': false,
      'subject-type': 'public',
      'name-claim': 'on-demand', 'name-claim-scope': ['profile'],
      'email-claim': 'on-demand', 'email-claim-scope': ['email'],
      claims: [
        { name: 'preferred_username', 'user-property': 'username', type: 'string', mandatory: false, 'on-demand': true, scope: ['profile'] },
        { name: 'groups', 'user-property': 'groups', type: 'string', mandatory: false, 'on-demand': true, scope: ['groups'] },
      ],
      'session-management-allowed': true,
      'session-cookie-name': 'GLEWLWYD2_OIDC_SID',
      'session-cookie-expiration': 2_592_000,
      'back-channel-logout-allowed': true,
      // Glewlwyd's end-session page asks GET <issuer>/session/{sid}/{client_id}, which is a 400 unless
      // front-channel logout is allowed: without it the page shows "Error in Glewlwyd API" and its Logout button does nothing.
      'front-channel-logout-allowed': true,
      'introspection-revocation-allowed': false,
      'register-client-allowed': false,
      'request-parameter-allow': false,
    },
  });

  // 4. Users.
  for (const u of [ALICE, BOB]) await createUser(admin, u);
}

async function createUser(admin: AdminApi, u: InteropUser): Promise<void> {
  await admin.call('POST', '/user/', {
    username: u.username, password: u.password, name: u.username, email: u.email, enabled: true,
    scope: USER_SCOPES,
    ...(u.groups.length ? { groups: u.groups } : {}),
  });
}

async function registerClient(admin: AdminApi, c: ClientSettings): Promise<void> {
  await admin.call('DELETE', `/client/${encodeURIComponent(c.clientId)}`, undefined, [200, 404]);
  await admin.call('POST', '/client/', {
    client_id: c.clientId, name: c.clientId, enabled: true, confidential: true,
    // Glewlwyd checks client_secret_basic/_post against `password` (stored hashed); its `client_secret`
    // property is only for client_secret_jwt and is not consulted for these two methods.
    password: c.clientSecret,
    token_endpoint_auth_method: c.tokenEndpointAuthMethods,
    redirect_uri: c.redirectUris,
    authorization_type: ['code', 'refresh_token', 'client_credentials'],
    // Scopes the client may get for itself (client_credentials).
    scope: ['api'],
    ...(c.postLogoutRedirectUris?.length ? { post_logout_redirect_uris: c.postLogoutRedirectUris } : {}),
    // With session_required, the logout token names the Glewlwyd session (`sid`), not only the user.
    ...(c.backchannelLogoutUri ? { backchannel_logout_uri: c.backchannelLogoutUri, backchannel_logout_session_required: 'yes' } : {}),
  });
}

async function currentPluginParams(admin: AdminApi): Promise<Record<string, unknown>> {
  const plugin = await admin.call('GET', `/mod/plugin/${PLUGIN}`) as { parameters: Record<string, unknown> };
  return plugin.parameters;
}

/**
 * Key rotation as Glewlwyd's documentation describes it: a new key first in `jwks-private` and the
 * default kid, the previous key kept (tokens it signed stay verifiable), through the admin API only.
 */
async function rotateKeys(admin: AdminApi): Promise<{ oldKid: string; newKid: string }> {
  const plugin = await admin.call('GET', `/mod/plugin/${PLUGIN}`) as { parameters: Record<string, unknown> } & Record<string, unknown>;
  const oldKid = plugin.parameters['default-kid'] as string;
  const newKid = `k-${randomUUID().slice(0, 8)}`;
  const jwks = JSON.parse(plugin.parameters['jwks-private'] as string) as { keys: unknown[] };
  plugin.parameters['jwks-private'] = JSON.stringify({ keys: [signingKey(newKid), ...jwks.keys] });
  plugin.parameters['default-kid'] = newKid;
  await admin.call('PUT', `/mod/plugin/${PLUGIN}`, plugin);
  await admin.call('PUT', `/mod/plugin/${PLUGIN}/reset`);
  return { oldKid, newKid };
}

/**
 * Glewlwyd's login page (login.html, a React app): username and password, then — the first time a user
 * meets a client — its consent screen: one checkbox per scope beyond openid, "Grant access", "Continue".
 */
export const LOGIN_SELECTORS = {
  username: 'input#username',
  password: 'input#password',
  submit: 'button#loginbut',
  grantCheckbox: 'input[id^="grant-"]',
  grantButton: 'button:has-text("Grant access")',
  continueButton: 'button:has-text("Continue")',
  /** The end-session page (login.html?prompt=end_session): "Logout" or "Stay connected". */
  endSessionLogout: 'button.btn-danger:has-text("Logout")',
  endSessionDone: 'text=Session closed',
};

async function confirmEndSession(page: Page, origin: string): Promise<void> {
  await page.locator(LOGIN_SELECTORS.endSessionLogout).click();
  await Promise.race([
    page.waitForURL((u) => u.origin !== origin, { waitUntil: 'domcontentloaded' }),
    page.locator(LOGIN_SELECTORS.endSessionDone).waitFor(),
  ]);
}

type LoginStep = 'left' | 'password' | 'grant' | 'continue';

/** Which of Glewlwyd's login-page states the browser is in now, polled until one shows (login.html renders client-side). */
async function loginStep(page: Page, origin: string, timeoutMs = 30_000): Promise<LoginStep> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (new URL(page.url()).origin !== origin) return 'left';
    if (await page.locator(LOGIN_SELECTORS.username).isVisible().catch(() => false)) return 'password';
    if (await page.locator(LOGIN_SELECTORS.grantButton).isVisible().catch(() => false)) return 'grant';
    if (await page.locator(LOGIN_SELECTORS.continueButton).isVisible().catch(() => false)) return 'continue';
    if (Date.now() > deadline) throw new Error(`Glewlwyd's login page showed neither a form nor a button within ${timeoutMs} ms (at ${page.url()})`);
    await page.waitForTimeout(100);
  }
}

async function signIn(page: Page, who: InteropUser, origin: string): Promise<void> {
  // Glewlwyd's page can take a click before its script is ready to act on it (seen once in a loaded
  // full run: no navigation for 30 s). Still on Glewlwyd after 10 s: click again, up to three times.
  const leave = async (click: () => Promise<void>) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await Promise.all([page.waitForURL((u) => u.origin !== origin, { waitUntil: 'domcontentloaded', timeout: 10_000 }), click()]);
        return;
      } catch (err) {
        if (attempt >= 3 || new URL(page.url()).origin !== origin) throw err;
      }
    }
  };
  let step = await loginStep(page, origin);
  if (step === 'password') {
    await page.locator(LOGIN_SELECTORS.username).fill(who.username);
    await page.locator(LOGIN_SELECTORS.password).fill(who.password);
    await page.locator(LOGIN_SELECTORS.submit).click();
    // Glewlwyd then sends the browser back at once (consent given before), or shows its consent screen.
    await page.locator(LOGIN_SELECTORS.username).waitFor({ state: 'hidden', timeout: 30_000 }).catch(() => {});
    step = await loginStep(page, origin);
  }
  // With a Glewlwyd session already open (another client signed in before) there is no password form:
  // the consent screen for a new client, or "Continue" for a known one. "Continue" renders before the
  // page has asked Glewlwyd whether consent is needed: let its API calls finish, then look again.
  if (step === 'continue') {
    await page.waitForLoadState('networkidle', { timeout: 30_000 }).catch(() => {});
    step = await loginStep(page, origin);
  }
  if (step === 'left') return;
  if (step === 'grant') {
    for (const box of await page.locator(LOGIN_SELECTORS.grantCheckbox).all()) {
      if (!(await box.isChecked())) await box.check();
    }
    await page.locator(LOGIN_SELECTORS.grantButton).click();
  }
  const cont = page.locator(LOGIN_SELECTORS.continueButton);
  await cont.waitFor({ state: 'visible', timeout: 30_000 });
  await leave(() => cont.click());
}

async function clientCredentialsToken(issuer: string, client: Pick<ClientSettings, 'clientId' | 'clientSecret'>, scope: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, client_id: client.clientId, client_secret: client.clientSecret }),
  });
  const body = await res.json() as { access_token?: string };
  if (res.status !== 200 || !body.access_token) throw new Error(`client_credentials: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}
