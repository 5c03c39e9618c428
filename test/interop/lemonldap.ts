// Interop suite: LemonLDAP::NG (Debian's `lemonldap-ng`, a Perl web SSO whose portal is an OpenID
// Provider) as a real IdP. Each start is its own Starman (PSGI server) on a free loopback port, with its
// ini file, its configuration (lmConf-N.json, derived from the package's demo configuration) and all
// its session storage in a fresh temp dir; stopped through its own process group. LemonLDAP::NG has no admin API in the
// portal (the Manager is a separate app), so clients are registered by writing a new configuration
// number, which the portal picks up by itself (`checkTime`). Users are the Demo backend's fixed ones.
// How this was worked out: examples/idps/lemonldap-ng.md.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { freePort } from '../../dev/devidp/net.js';
import { findTool } from '../helpers/chromium.js';
import { until } from '../helpers/wait.js';
import type { ClientSettings, InteropIdp, InteropUser } from './idp.js';

/**
 * Starman, a preforking PSGI server. Not plackup's default HTTP::Server::PSGI: that one serves one
 * connection at a time, and Chromium keeps idle (pre)connections to the IdP open, so Portcullis's
 * token request waited behind them until it timed out (ERR_IDP_TIMEOUT on every sign-in).
 */
export const STARMAN_BIN = process.env.STARMAN ?? '/usr/bin/starman';
/** The package's own configuration (Demo authentication and user backend), the base of every start. */
const PACKAGE_CONF = '/var/lib/lemonldap-ng/conf/lmConf-1.json';
const PORTAL_DIR = '/usr/share/lemonldap-ng/portal';
/** The Perl modules the portal cannot start without (Recommends of the package; see .ci/run). */
const PERL_MODULES = ['Lemonldap::NG::Portal::Main', 'GD::SecurityImage', 'Image::Magick', 'String::Random', 'IO::String'];

/**
 * The Demo backend's users (Portal/UserDB/Demo.pm: password = login). Their groups are the Demo
 * backend's (`users`, `timelords`, `earthlings`, in Perl hash order — not stable) plus `admin`, a
 * LemonLDAP::NG group rule this adapter adds for dwho; listed here sorted.
 */
export const DWHO: InteropUser = { username: 'dwho', password: 'dwho', email: 'dwho@badwolf.org', groups: ['admin', 'timelords', 'users'] };
export const RTYLER: InteropUser = { username: 'rtyler', password: 'rtyler', email: 'rtyler@badwolf.org', groups: ['earthlings', 'users'] };

/**
 * undefined when LemonLDAP::NG's portal, Starman and the Perl modules it needs are installed;
 * otherwise the reason. With CI=true a missing LemonLDAP::NG is an error (thrown), never a skip.
 */
export function missingLemonLdapReason(): string | undefined {
  const missing: string[] = [];
  if (!findTool(STARMAN_BIN)) missing.push(STARMAN_BIN);
  if (!existsSync(PACKAGE_CONF)) missing.push(PACKAGE_CONF);
  if (!existsSync(join(PORTAL_DIR, 'templates'))) missing.push(`${PORTAL_DIR}/templates`);
  if (findTool('perl')) {
    // One perl for all modules: it prints those it cannot load.
    const r = spawnSync('perl', ['-e', 'for (@ARGV) { eval "require $_; 1" or print "$_\\n" }', ...PERL_MODULES], { encoding: 'utf8' });
    if (r.status !== 0) missing.push('a working perl');
    for (const m of r.stdout.split('\n').filter(Boolean)) missing.push(`Perl module ${m}`);
  } else missing.push('perl');
  if (missing.length === 0) return undefined;
  const message = `LemonLDAP::NG is not installed (missing ${missing.join(', ')}; apt-get install lemonldap-ng starman and the extra Perl packages in .ci/run)`;
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  return message;
}

export interface LemonLdapOptions {
  /** Access and ID token lifetime of every client, seconds. Default 3600. */
  accessTokenLifetimeSec?: number;
  /** LemonLDAP::NG's log level (error, warn, notice, info, debug). Default notice. */
  logLevel?: string;
}

export interface LemonLdap extends InteropIdp {
  readonly pid: number;
}

/** The ini LemonLDAP::NG reads first (LLNG_DEFAULTCONFFILE): where the configuration and its cache live. */
function iniFile(dir: string, logLevel: string): string {
  // checkTime = 1: the portal looks for a newer lmConf-N.json every second (how registerClient takes effect).
  return `[all]
logLevel = ${logLevel}
checkTime = 1

[configuration]
type = File
dirName = ${dir}/conf
localStorage = Cache::FileCache
localStorageOptions = { 'namespace' => 'lemonldap-ng-config', 'default_expires_in' => 600, 'directory_umask' => '007', 'cache_root' => '${dir}/cache', 'cache_depth' => 3 }

[portal]
staticPrefix = /static
templateDir = ${PORTAL_DIR}/templates
languages = en
`;
}

/**
 * The PSGI app: the portal, and its /static files (the login page's CSS and scripts), with an access
 * log on stderr (Starman has none by default; the refresh test counts token requests in it).
 */
const APP_PSGI = `use Plack::Builder; use Plack::App::File; use Lemonldap::NG::Portal::Main;
my $portal = Lemonldap::NG::Portal::Main->run({});
builder {
  enable 'AccessLog', format => 'combined';
  mount '/static' => Plack::App::File->new(root => '${PORTAL_DIR}/htdocs/static')->to_app;
  mount '/' => $portal;
};
`;

/** The package's demo configuration, moved into `dir` and made an OpenID Provider at `origin`. */
function baseConfig(dir: string, origin: string, accessTokenLifetimeSec: number): Record<string, unknown> {
  const conf = JSON.parse(readFileSync(PACKAGE_CONF, 'utf8')) as Record<string, unknown>;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const storage = (name: string): Record<string, string> => ({ Directory: join(dir, name), LockDirectory: join(dir, name, 'lock') });
  return {
    ...conf,
    cfgNum: 1,
    portal: `${origin}/`,
    domain: new URL(origin).hostname,
    securedCookie: 0,
    globalStorageOptions: { ...(conf.globalStorageOptions as object), ...storage('sessions') },
    persistentStorageOptions: storage('psessions'),
    notificationStorageOptions: { dirName: join(dir, 'notifications') },
    // Easy to miss: without it discovery works and the first /oauth2/authorize is a 500 (mkdir /var/lib/…).
    localSessionStorageOptions: { ...(conf.localSessionStorageOptions as object), cache_root: join(dir, 'cache') },
    // The demo configuration enables self-registration, whose plugin needs Email::Sender (not installed).
    registerDB: 'Null',
    // Groups are rules over the session; the Demo backend adds its own (users, timelords, earthlings).
    groups: { admin: "$uid eq 'dwho'" },
    issuerDBOpenIDConnectActivation: 1,
    oidcServiceMetaDataIssuer: origin,
    oidcServicePrivateKeySig: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    oidcServicePublicKeySig: publicKey.export({ type: 'spki', format: 'pem' }),
    oidcServiceKeyIdSig: `k-${randomUUID().slice(0, 8)}`,
    oidcServiceAccessTokenExpiration: accessTokenLifetimeSec,
    oidcServiceIDTokenExpiration: accessTokenLifetimeSec,
    oidcRPMetaDataOptions: {},
    oidcRPMetaDataExportedVars: {},
    oidcRPMetaDataOptionsExtraClaims: {},
  };
}

/** One relying party (confidential, code + PKCE, refresh tokens, no consent page). */
function rpOptions(c: ClientSettings, accessTokenLifetimeSec: number): Record<string, unknown> {
  return {
    oidcRPMetaDataOptionsClientID: c.clientId,
    oidcRPMetaDataOptionsClientSecret: c.clientSecret,
    oidcRPMetaDataOptionsPublic: 0,
    oidcRPMetaDataOptionsRedirectUris: c.redirectUris.join(' '),
    oidcRPMetaDataOptionsPostLogoutRedirectUris: (c.postLogoutRedirectUris ?? []).join(' '),
    oidcRPMetaDataOptionsRequirePKCE: 1,
    // Refresh tokens bound to the LemonLDAP::NG session (Portcullis does not ask for offline_access).
    oidcRPMetaDataOptionsRefreshToken: 1,
    oidcRPMetaDataOptionsBypassConsent: 1,
    oidcRPMetaDataOptionsIDTokenSignAlg: 'RS256',
    oidcRPMetaDataOptionsIDTokenExpiration: accessTokenLifetimeSec,
    oidcRPMetaDataOptionsAccessTokenExpiration: accessTokenLifetimeSec,
    // Without it the ID token has only sub, iss, aud, acr, auth_time, nonce, at_hash: Portcullis's rules
    // and identity headers read the ID token.
    oidcRPMetaDataOptionsIDTokenForceClaims: 1,
  };
}

/** Starts LemonLDAP::NG's portal as an OpenID Provider on a free loopback port. */
export async function startLemonLdap(opts: LemonLdapOptions = {}): Promise<LemonLdap> {
  const accessTokenLifetimeSec = opts.accessTokenLifetimeSec ?? 3600;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-lemonldap-'));
  for (const d of ['conf', 'cache', 'sessions/lock', 'psessions/lock', 'notifications']) mkdirSync(join(dir, d), { recursive: true });
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const conf = baseConfig(dir, origin, accessTokenLifetimeSec);
  writeFileSync(join(dir, 'conf', 'lmConf-1.json'), JSON.stringify(conf));
  writeFileSync(join(dir, 'lemonldap-ng.ini'), iniFile(dir, opts.logLevel ?? 'notice'));
  writeFileSync(join(dir, 'app.psgi'), APP_PSGI);

  const lines: string[] = [];
  // --preload-app: the portal is compiled once (about a second of CPU), then the workers fork from it.
  // --disable-keepalive: a worker serves one connection at a time, so an idle kept-alive connection
  // (Chromium's, or Node's fetch pool) would hold a worker; and Starman closes idle ones after 1 s,
  // racing a client that reuses it at that moment ("fetch failed").
  const child: ChildProcess = spawn(STARMAN_BIN, [
    '--listen', `127.0.0.1:${port}`, '--workers', '4', '--preload-app', '--disable-keepalive', join(dir, 'app.psgi'),
  ], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LLNG_DEFAULTCONFFILE: join(dir, 'lemonldap-ng.ini') },
    // Its own process group (Starman's master and its workers): stopped together, by the master's PID as group id.
    detached: true,
  });
  child.stdout!.on('data', (d: Buffer) => lines.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => lines.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signalGroup = (signal: NodeJS.Signals | 0): boolean => {
    try { process.kill(-child.pid!, signal); return true; } catch { return false; /* the group is gone */ }
  };
  // Should the test runner die before stop(), do not leave the portal behind (its own process group only).
  const killOnExit = (): void => { signalGroup('SIGKILL'); };
  process.once('exit', killOnExit);
  const log = (): string => lines.join('');

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.pid !== undefined && signalGroup('SIGTERM')) {
      // The master exits before its workers: wait for the whole group (then the temp dir is free).
      const timer = setTimeout(() => signalGroup('SIGKILL'), 3_000);
      await exited;
      await until('Starman\'s workers to exit', 10_000, async () => !signalGroup(0));
      clearTimeout(timer);
    }
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };

  let cfgNum = 1;
  // c.tokenEndpointAuthMethods needs no setting (2.16 takes either method from every client, Basic with
  // its quirk: examples/idps/lemonldap-ng.md); c.backchannelLogoutUri is unused (backchannelLogout: false).
  const registerClient = async (c: ClientSettings): Promise<void> => {
    const key = c.clientId;
    cfgNum++;
    const next = {
      ...conf,
      cfgNum,
      oidcRPMetaDataOptions: { ...(conf.oidcRPMetaDataOptions as object), [key]: rpOptions(c, accessTokenLifetimeSec) },
      oidcRPMetaDataExportedVars: {
        ...(conf.oidcRPMetaDataExportedVars as object),
        // `groups;array`: the session's groups (one string, `; `-separated) as a JSON array.
        [key]: { email: 'mail', name: 'cn', preferred_username: 'uid', groups: 'groups;array' },
      },
      // A `groups` scope that releases the `groups` claim.
      oidcRPMetaDataOptionsExtraClaims: { ...(conf.oidcRPMetaDataOptionsExtraClaims as object), [key]: { groups: 'groups' } },
    };
    Object.assign(conf, next);
    writeFileSync(join(dir, 'conf', `lmConf-${cfgNum}.json`), JSON.stringify(conf));
    const writtenAt = Date.now();
    // The portal reloads within checkTime: it knows the client once its token endpoint stops answering
    // invalid_client for its credentials (a token request with no grant is refused for another reason).
    await until(`LemonLDAP::NG to load configuration ${cfgNum} (client ${c.clientId})`, 15_000, async () => {
      if (child.exitCode !== null) throw new Error(`starman exited with ${child.exitCode}\n${log()}`);
      const res = await fetch(`${origin}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: c.clientId, client_secret: c.clientSecret }),
      });
      const body = await res.text();
      // Each Starman worker checks for a new configuration on its first request after checkTime (1 s):
      // one worker knowing the client is enough once that second has passed for all of them.
      return res.status < 500 && !body.includes('invalid_client') && Date.now() - writtenAt > 1_100;
    }, 200);
  };

  try {
    await waitUntilUp(origin, child, log);
    return {
      name: `LemonLDAP::NG ${lemonLdapVersion()}`,
      issuer: origin,
      origin,
      accessTokenLifetimeSec,
      pid: child.pid!,
      users: { admin: DWHO, other: RTYLER },
      backchannelLogout: false,
      registerClient,
      signIn: (page, who) => signIn(page, who, origin),
      confirmEndSession: (page) => confirmEndSession(page, origin),
      log,
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- LemonLDAP::NG log ---\n${log()}`);
  }
}

function lemonLdapVersion(): string {
  const r = spawnSync('perl', ['-MLemonldap::NG::Portal', '-e', 'print $Lemonldap::NG::Portal::VERSION'], { encoding: 'utf8' });
  return /^\d+\.\d+\.\d+/.exec(r.stdout)?.[0] ?? '?';
}

async function waitUntilUp(origin: string, child: ChildProcess, log: () => string): Promise<void> {
  await until(`LemonLDAP::NG's discovery document at ${origin}`, 30_000, async () => {
    if (child.exitCode !== null) throw new Error(`starman exited with ${child.exitCode}\n${log()}`);
    try {
      const res = await fetch(`${origin}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(2_000) });
      const body = await res.text();
      return res.status === 200 && body.includes('"issuer"');
    } catch { return false; /* not listening yet */ }
  }, 100);
}

/** The portal's own pages (bootstrap skin): the login form, and the confirmation page of RP-initiated logout. */
export const LOGIN_SELECTORS = {
  username: 'input#userfield',
  password: 'input#passwordfield',
  submit: '#lform button[type="submit"]',
  /** The end-session confirmation (confirm.tpl): "Accept" submits the form with its `confirm` key. */
  endSessionAccept: 'form.confirm button.positive',
};

async function signIn(page: Page, who: InteropUser, origin: string): Promise<void> {
  // With a LemonLDAP::NG session already open the portal sends the browser straight back (no consent page: BypassConsent).
  if (new URL(page.url()).origin !== origin) return;
  await page.locator(LOGIN_SELECTORS.username).fill(who.username);
  await page.locator(LOGIN_SELECTORS.password).fill(who.password);
  await Promise.all([
    page.waitForURL((u) => u.origin !== origin, { waitUntil: 'domcontentloaded', timeout: 30_000 }),
    page.locator(LOGIN_SELECTORS.submit).click(),
  ]);
}

async function confirmEndSession(page: Page, origin: string): Promise<void> {
  await Promise.all([
    page.waitForURL((u) => u.origin !== origin, { waitUntil: 'domcontentloaded', timeout: 30_000 }),
    page.locator(LOGIN_SELECTORS.endSessionAccept).click(),
  ]);
}
