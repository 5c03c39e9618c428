// Config, boot stage 3 of 3: the checked plain-data ConfigInput compiled into the runtime Config
// the stages use — claim rules into closures, route matches into specs, header templates into
// renderers, durations into milliseconds, secrets read from their files — then frozen. Requests
// only ever run what was compiled here.
//
// Rules, matches and templates are checked by the same code that compiles them (policy/rules.ts,
// routing/match.ts, identity/templates.ts), so their problems surface here, with key paths.
import { Value, type Static } from './typebox.js';
import { readFileSync } from 'node:fs';
import { compileRule, type CompiledRule } from '../policy/rules.js';
import { validateMatchSpec, type RouteMatchSpec } from '../routing/match.js';
import { compileHeaderTemplate, isValidHeaderName, type HeaderTemplate } from '../identity/templates.js';
import { parseDuration } from './durations.js';
import { stepUpRequirement, type StepUpRequirement } from '../policy/step-up.js';
import { childPath, type Issues } from './issues.js';
import { providerInputs, readOrigin, readUrl } from './semantic.js';
import { AssertionSchema, type ConfigInput, type ProviderInput, type RouteInput } from './schema.js';
import { parseClientKeys, type ClientKey } from './client-keys.js';


// The runtime types are the schema's plain types with the compiled keys replaced: a key that
// needs no compiling reaches the stages exactly as the schema describes it (its meaning is
// documented there, once), so adding one means writing it in schema.ts and using it.

/** Route keys compile turns into their runtime form. */
type CompiledRouteKeys = 'match' | 'allow' | 'headers' | 'assertion' | 'grafanaRoles' | 'timeout' | 'bearer' | 'stepUp' | 'providers';

export interface RouteConfig extends Omit<RouteInput, CompiledRouteKeys> {
  /** Host canonicalised (lowercase, no trailing dot); path as written. */
  match: RouteMatchSpec;
  /** Compiled claim rule; undefined = any signed-in user. */
  allow: CompiledRule | undefined;
  /** Extra identity headers from claim templates, in config order. */
  headers: ReadonlyArray<{ name: string; template: HeaderTemplate }>;
  /** X-Portcullis-Assertion: undefined = off. `audience` defaults to the upstream's origin. */
  assertion: { audience: string; ttlSec: number } | undefined;
  /** With preset grafana: role → rule, in the order Admin, Editor, Viewer (the first passing is sent). */
  grafanaRoles: ReadonlyArray<{ role: string; rule: CompiledRule }>;
  timeoutMs: number;
  /** How an API client's bearer token is checked (`true` is `jwt`); false: bearer tokens are not read. */
  bearer: false | 'jwt' | 'introspect' | 'jwt-then-introspect';
  /** Step-up: the acr Set and max age compiled once (policy/step-up.ts); undefined = none. */
  stepUp: StepUpRequirement | undefined;
  /**
   * The ids of the providers whose sessions and tokens this route accepts (every provider when the
   * route names none), in `oidc` order. A Set: the door asks it on every request (`has`, no allocation).
   */
  providers: ReadonlySet<string>;
}

/** One OpenID Provider, as the sign-in stage and the door use it. */
export interface ProviderConfig extends Omit<ProviderInput, 'displayName' | 'clientSecret' | 'clientSecretFile' | 'clockTolerance' | 'timeout' | 'idTokenSigningAlgs' | 'introspection'> {
  /** The chooser's text: `displayName`, else the id. */
  displayName: string;
  introspection: { cacheTtlMs: number; negativeCacheTtlMs: number; cacheMaxEntries: number };
  /** From clientSecret or the first line of clientSecretFile; '' with private_key_jwt. */
  clientSecret: string;
  /** With private_key_jwt: the keys of clientKeysFile, read and checked at start (the first signs); otherwise empty. */
  clientKeys: readonly ClientKey[];
  clockToleranceSec: number;
  timeoutMs: number;
  idTokenSigningAlgs: string[];
}

/** Top-level keys compile turns into their runtime form. */
type CompiledKeys = 'shutdownGracePeriod' | 'metrics' | 'admin' | 'assertionSigning' | 'oidc' | 'session' | 'routes';

export interface Config extends Omit<ConfigInput, CompiledKeys> {
  shutdownGracePeriodMs: number;
  /** null: `metrics: false`, no metrics listener. */
  metrics: { host: string; port: number } | null;
  /** `token`: the first line of `tokenFile`, read at start; no file → no admin endpoints (404). */
  admin: { tokenFile: string | undefined; token: string | undefined };
  assertionSigning: { keysFile: string | undefined; algorithm: ConfigInput['assertionSigning']['algorithm'] };
  /** The OpenID Providers, always a list (from either form of `oidc`), in config order; the first is the default for records that name none. */
  providers: ProviderConfig[];
  session: Omit<ConfigInput['session'], 'secrets' | 'secretsFile' | 'redis' | 'idleTimeout' | 'absoluteTimeout'> & {
    /** From secrets or secretsFile: the first seals, all open (rotation). */
    secrets: string[];
    /** `configured`: a URL was given — with the cookie store, Redis then shares back-channel revocations between replicas. */
    redis: { url: string; keyPrefix: string; configured: boolean };
    idleTimeoutMs: number;
    absoluteTimeoutMs: number;
  };
  routes: RouteConfig[];
}

export interface CompileOptions {
  /** Reads `*File` secrets. Default: fs.readFileSync. */
  readFile?: (path: string) => string;
  /** Key paths already reported by the earlier checks (`within`: or below): not compiled, not reported again. */
  failed?: (path: string, within?: boolean) => boolean;
}

/** ConfigInput → frozen runtime Config, or the problems found while compiling. */
export function compileConfig(input: ConfigInput, opts: CompileOptions = {}): { config?: Config; issues: Issues } {
  const issues: Issues = [];
  const failed = opts.failed ?? (() => false);
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const issue = (path: string, message: string) => { if (!failed(path)) issues.push({ path, message }); };
  const urlOf = (s: string, o: { originOnly?: boolean } = {}) => { const r = readUrl(s, o); return 'url' in r ? r.url : s; };

  /** A secret file's text, or undefined with an issue. */
  const readSecretFile = (file: string, path: string): string | undefined => {
    if (failed(path)) return undefined;
    try { return readFile(file); } catch (err) {
      issue(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  /** A file holds one secret on its first non-empty line, as Kubernetes mounts it. */
  const firstLine = (file: string, path: string): string | undefined => {
    const text = readSecretFile(file, path);
    const first = text?.split(/\r?\n/).find((l) => l.trim() !== '')?.trim();
    if (text !== undefined && !first) issue(path, `${file} is empty`);
    return first;
  };

  const providers = providerInputs(input).map(({ p, path }): ProviderConfig => {
    const clientSecret = p.clientSecretFile !== undefined ? firstLine(p.clientSecretFile, childPath(path, 'clientSecretFile')) : p.clientSecret;
    let clientKeys: ClientKey[] = [];
    if (p.clientKeysFile !== undefined && p.tokenEndpointAuthMethod === 'private_key_jwt') {
      const keysPath = childPath(path, 'clientKeysFile');
      const text = readSecretFile(p.clientKeysFile, keysPath);
      const parsed = text === undefined ? undefined : parseClientKeys(text, p.clientKeysFile);
      if (parsed && 'errors' in parsed) for (const e of parsed.errors) issue(keysPath, e);
      else if (parsed) clientKeys = parsed.keys;
    }
    const { clientSecret: _secret, clientSecretFile: _secretFile, clockTolerance, timeout, introspection, displayName, ...plain } = p;
    return {
      ...plain,
      displayName: displayName ?? p.id,
      issuer: urlOf(p.issuer),
      clientSecret: clientSecret ?? '',
      clientKeys,
      scopes: p.scopes.includes('openid') ? p.scopes : ['openid', ...p.scopes],
      clockToleranceSec: Math.round(durationMs(clockTolerance) / 1000),
      timeoutMs: durationMs(timeout),
      // Off unless configured; graphUrl as an origin (no trailing slash).
      groupOverage: p.groupOverage && { ...p.groupOverage, graphUrl: urlOf(p.groupOverage.graphUrl, { originOnly: true }) },
      introspection: {
        cacheTtlMs: durationMs(introspection.cacheTtl),
        negativeCacheTtlMs: durationMs(introspection.negativeCacheTtl),
        cacheMaxEntries: introspection.cacheMaxEntries,
      },
    };
  });
  const providerIds = providers.map((p) => p.id);

  const s = input.session;
  let secretsPath = 'session.secrets';
  let secrets = s.secrets ?? [];
  if (s.secretsFile !== undefined && s.secrets === undefined) {
    secretsPath = 'session.secretsFile';
    secrets = (readSecretFile(s.secretsFile, secretsPath) ?? '').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    if (secrets.length === 0) issue(secretsPath, 'at least one secret of 32 bytes or more is required (e.g. `openssl rand -base64 48`)');
  }
  secrets.forEach((secret, i) => {
    const bytes = Buffer.byteLength(secret);
    if (bytes < 32) issue(childPath(secretsPath, i), `is ${bytes} bytes; session secrets must be at least 32 bytes`);
  });

  let adminToken: string | undefined;
  if (input.admin.tokenFile !== undefined) {
    adminToken = firstLine(input.admin.tokenFile, 'admin.tokenFile');
    if (adminToken !== undefined && adminToken.length < 16) issue('admin.tokenFile', 'the admin token must be at least 16 characters (e.g. openssl rand -base64 32)');
  }

  const routes = input.routes.map((r, i) => compileRoute(r, childPath('routes', i), issues, failed, providers));

  // Keys without a runtime form pass through as they are (see the types above).
  const { shutdownGracePeriod, metrics, admin: _admin, assertionSigning, oidc: _oidc, session: _session, routes: _routes, ...plain } = input;
  const { secrets: _secrets, secretsFile: _secretsFile, redis, idleTimeout, absoluteTimeout, ...sessionPlain } = s;
  const config: Config = {
    ...plain,
    publicUrl: urlOf(input.publicUrl, { originOnly: true }),
    websocketOrigins: input.websocketOrigins.map((w) => readOrigin(w) ?? w),
    shutdownGracePeriodMs: durationMs(shutdownGracePeriod),
    metrics: metrics === false ? null : metrics,
    admin: { tokenFile: input.admin.tokenFile, token: adminToken },
    assertionSigning: { keysFile: assertionSigning.keysFile, algorithm: assertionSigning.algorithm },
    providers,
    session: {
      ...sessionPlain,
      secrets,
      // The URL is only used when given; the default names the usual local Redis for messages.
      redis: { url: redis.url ?? 'redis://127.0.0.1:6379', keyPrefix: redis.keyPrefix, configured: redis.url !== undefined },
      idleTimeoutMs: durationMs(idleTimeout),
      absoluteTimeoutMs: durationMs(absoluteTimeout),
    },
    routes,
  };
  if (issues.length > 0) return { issues };
  return { config: deepFreeze(config), issues };
}

function compileRoute(r: RouteInput, path: string, issues: Issues, failed: (path: string, within?: boolean) => boolean, providerConfigs: readonly ProviderConfig[]): RouteConfig {
  const skip = failed(path);
  const issuesHere: Issues = skip ? [] : issues;
  const at = (key: string) => childPath(path, key);
  const rule = (raw: unknown, p: string): CompiledRule | undefined => (failed(p) ? undefined : compileRule(raw, p, issuesHere));
  const match = failed(at('match'), true) ? undefined : validateMatchSpec(r.match, at('match'), issuesHere);
  const headers: Array<{ name: string; template: HeaderTemplate }> = [];
  for (const [name, template] of Object.entries(r.headers ?? {})) {
    const hp = childPath(at('headers'), name);
    if (failed(hp)) continue;
    if (!isValidHeaderName(name)) { issuesHere.push({ path: hp, message: 'is not a valid HTTP header name' }); continue; }
    const t = compileHeaderTemplate(template, hp, issuesHere);
    if (t) headers.push({ name, template: t });
  }
  const grafanaRoles: Array<{ role: string; rule: CompiledRule }> = [];
  for (const role of ['Admin', 'Editor', 'Viewer'] as const) {
    const raw = r.grafanaRoles?.[role];
    const compiled = raw === undefined ? undefined : rule(raw, childPath(at('grafanaRoles'), role));
    if (compiled) grafanaRoles.push({ role, rule: compiled });
  }
  const upstream = readUrl(r.upstream);
  const a = r.assertion === true ? Value.Default(AssertionSchema, {}) as Static<typeof AssertionSchema> : r.assertion === false ? undefined : r.assertion;
  const { match: _match, allow, headers: _headers, assertion: _assertion, grafanaRoles: _roles, timeout, bearer, stepUp, providers, ...plain } = r;
  const providerIds = providerConfigs.map((p) => p.id);
  const accepted = providerConfigs.filter((p) => providers === undefined || providers.includes(p.id));
  // Step-up's max age allows the clock skew of the route's providers (the largest).
  const clockToleranceMs = Math.max(0, ...accepted.map((p) => p.clockToleranceSec * 1000));
  return {
    ...plain,
    match: match ?? { path: '/' },
    upstream: 'url' in upstream ? upstream.url : r.upstream,
    allow: allow === undefined ? undefined : rule(allow, at('allow')),
    headers,
    assertion: a && {
      audience: a.audience ?? ('url' in upstream ? new URL(upstream.url).origin : ''),
      ttlSec: Math.round(durationMs(a.ttl) / 1000),
    },
    grafanaRoles,
    timeoutMs: durationMs(timeout),
    bearer: bearer === true ? 'jwt' : bearer,
    stepUp: stepUp === undefined ? undefined
      : stepUpRequirement(stepUp.acr, stepUp.maxAge === undefined ? undefined : Math.floor(durationMs(stepUp.maxAge) / 1000), clockToleranceMs),
    // In `oidc` order, whatever order the route lists them in (semantic.ts reports unknown ids).
    providers: new Set(providers === undefined ? providerIds : providerIds.filter((id) => providers.includes(id))),
  };
}

/** The schema let only well-formed durations through (and supplied the defaults). */
function durationMs(d: string): number {
  return parseDuration(d) ?? 0;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) if (typeof v !== 'function') deepFreeze(v);
  }
  return o;
}
