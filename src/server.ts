// Process lifecycle: listen on the public and metrics ports, warn about unsafe settings, swap in a
// new route table on SIGHUP (hot reload), and drain gracefully on SIGTERM/SIGINT (stop accepting,
// /readyz 503, let in-flight requests finish within the grace period, then exit 0).
import type { FastifyInstance } from 'fastify';
import { formatIssues, loadConfigFile, type Config, type ConfigIssue, type ConfigResult } from './config/index.js';
import { buildApp, buildMetricsApp, readiness, type AppOptions } from './app.js';
import type { Runtime } from './runtime.js';
import { registerSessionAdmin } from './session/admin.js';
import { isPlainObject } from './policy/claims.js';
import { stopTracing } from './tracing.js';

export interface ServerOptions extends AppOptions {
  /** The config file: what reload() re-reads when given nothing (SIGHUP). */
  configFile?: string;
  /** Default true. Cluster workers pass false: the primary serves /metrics for all of them. */
  metricsListener?: boolean;
}

export type ReloadResult =
  | {
    ok: true;
    /** Route names now in force, in order. */
    routes: string[];
    added: string[];
    removed: string[];
    /** Changed keys that only take effect after a restart (listen, metrics, oidc, session, workers…). */
    needsRestart: string[];
  }
  | { ok: false; issues: ConfigIssue[] };

export interface RunningServer {
  app: FastifyInstance;
  metricsApp: FastifyInstance | undefined;
  runtime: Runtime;
  url: string;
  metricsUrl: string | undefined;
  /** The configuration in force: the boot config with the last reloaded routes and grace period. */
  readonly config: Config;
  /**
   * Hot reload: re-reads the config file (or takes an already validated result), validates it and
   * swaps the route table — routes, rules, identity headers — in one step. An invalid config is
   * logged with every problem and changes nothing. Keys that need a restart are logged, not applied.
   */
  reload(source?: string | ConfigResult): ReloadResult;
  /**
   * Graceful shutdown: stop accepting connections, answer /readyz with 503, let in-flight requests
   * finish for up to `graceMs` (default shutdownGracePeriod), then cut the rest. Resolves with the
   * exit code (0, or 1 when closing failed); the caller exits.
   */
  drain(reason?: string, graceMs?: number): Promise<number>;
  close(): Promise<void>;
}

/** Settings hot reload applies; every other changed key waits for a restart. */
const RELOADABLE = new Set(['routes', 'shutdownGracePeriodMs']);

export async function startServer(config: Config, opts: ServerOptions = {}): Promise<RunningServer> {
  const { app, runtime } = await buildApp(config, opts);
  if (config.publicUrl.startsWith('http:')) {
    app.log.warn({ publicUrl: config.publicUrl }, 'publicUrl is plain http: session cookies are sent without Secure and without the __Host- prefix. Use https outside local development.');
  }
  for (const p of config.providers) {
    if (p.issuer.startsWith('http:')) app.log.warn({ provider: p.id, issuer: p.issuer }, 'the OIDC issuer is plain http: tokens travel unencrypted. Use https outside local development.');
  }
  await app.listen({ host: config.listen.host, port: config.listen.port });
  let metricsApp: FastifyInstance | undefined;
  let metricsUrl: string | undefined;
  if (config.metrics && opts.metricsListener !== false) {
    metricsApp = await buildAdminApp(runtime);
    await metricsApp.listen({ host: config.metrics.host, port: config.metrics.port });
    metricsUrl = addressOf(metricsApp);
  }
  const url = addressOf(app);
  app.log.info({ url, metrics: metricsUrl, routes: config.routes.length }, 'portcullis listening');

  let active = config;
  let draining: Promise<number> | undefined;

  const reload = (source?: string | ConfigResult): ReloadResult => {
    const file = typeof source === 'string' ? source : opts.configFile;
    const result: ConfigResult = typeof source === 'object'
      ? source
      : file ? loadConfigFile(file) : { ok: false, issues: [{ path: '', message: 'no config file to reload from' }] };
    const issues = result.ok ? bootOnlyRouteFeatures(config, runtime, result.config) : result.issues;
    if (!result.ok || issues.length > 0) {
      app.log.error({ configFile: file, issues: issues.map((i) => ({ path: i.path, message: i.message })) },
        `config reload refused, ${issues.length} problem${issues.length === 1 ? '' : 's'}; the running configuration keeps serving:\n${formatIssues(issues)}`);
      return { ok: false, issues };
    }
    const next = result.config;
    const before = new Set(active.routes.map((r) => r.name));
    const after = next.routes.map((r) => r.name);
    runtime.replaceRoutes(next.routes);
    const needsRestart = changedKeys(active, next);
    active = Object.freeze({ ...active, routes: next.routes, shutdownGracePeriodMs: next.shutdownGracePeriodMs });
    const added = after.filter((n) => !before.has(n));
    const removed = [...before].filter((n) => !after.includes(n));
    app.log.info({ configFile: file, routes: after, added, removed }, 'config reloaded: routes, rules and identity headers swapped');
    if (needsRestart.length > 0) {
      app.log.warn({ configFile: file, keys: needsRestart }, `config reload: ${needsRestart.join(', ')} changed but take${needsRestart.length === 1 ? 's' : ''} effect only after a restart`);
    }
    return { ok: true, routes: after, added, removed, needsRestart };
  };

  const drain = (reason = 'drain', graceMs = active.shutdownGracePeriodMs): Promise<number> => {
    if (draining) return draining;
    runtime.draining = true;
    app.log.info({ signal: reason, graceMs }, 'draining: no new connections; waiting for in-flight requests');
    draining = new Promise<number>((resolve) => {
      let done = false;
      // server.close() only ends connections idle at that moment; keep-alive connections whose
      // request finishes later are ended as they become idle.
      const reaper = setInterval(() => app.server.closeIdleConnections(), 100);
      const finish = (code: number) => {
        if (done) return;
        done = true;
        clearInterval(reaper);
        clearTimeout(force);
        void (metricsApp?.close() ?? Promise.resolve()).catch(() => {}).then(() => resolve(code));
      };
      const force = setTimeout(() => {
        app.log.warn({ graceMs }, 'grace period over: closing the connections still open');
        app.server.closeAllConnections();
        runtime.connections.close();
        // Let the close hooks (session store, upstream pools) run a moment; done either way.
        setTimeout(() => finish(0), 500);
      }, graceMs);
      app.close().then(() => finish(0), (err: unknown) => {
        app.log.error({ err }, 'error while closing');
        finish(1);
      });
    });
    return draining;
  };

  return {
    app, metricsApp, runtime, url, metricsUrl,
    get config() { return active; },
    reload,
    drain,
    async close() {
      await Promise.all([app.close(), metricsApp?.close()]);
    },
  };
}

/** The metrics listener: /metrics, plus /healthz and /readyz, which stay reachable during a drain; /admin/sessions with admin.tokenFile. */
async function buildAdminApp(runtime: Runtime): Promise<FastifyInstance> {
  const app = await buildMetricsApp(runtime.metrics);
  app.addHook('onRequest', async () => { runtime.reportIdpReady(); });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => readiness(runtime, reply));
  registerSessionAdmin(app, runtime);
  return app;
}

/**
 * Route features whose machinery is set up at boot only: adding the first such route by reload
 * would half-work (no assertion signer; sessions that dropped the access token), so it is refused.
 */
function bootOnlyRouteFeatures(boot: Config, runtime: Runtime, next: Config): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const bootKeepsAccessToken = boot.routes.some((r) => r.passAccessToken || r.passAuthorization);
  next.routes.forEach((r, i) => {
    if (r.assertion && !runtime.assertions) {
      issues.push({ path: `routes[${i}].assertion`, message: 'assertion signing keys are set up at start: restart Portcullis to add the first route with assertion' });
    }
    for (const id of r.providers) {
      if (!runtime.providers.get(id)) issues.push({ path: `routes[${i}].providers`, message: `providers are set up at start: restart Portcullis to use the new provider "${id}"` });
    }
    if ((r.passAccessToken || r.passAuthorization) && !bootKeepsAccessToken) {
      issues.push({ path: `routes[${i}].${r.passAccessToken ? 'passAccessToken' : 'passAuthorization'}`, message: 'sessions keep the access token only when a route needs it at start: restart Portcullis to add the first such route' });
    }
  });
  return issues;
}

/** Config keys (as written in the file) whose value differs and that reload does not apply. */
function changedKeys(running: Config, next: Config): string[] {
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, path: string[]) => {
    if (isPlainObject(a) && isPlainObject(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
        if (path.length === 0 && RELOADABLE.has(k)) continue;
        walk(a[k], b[k], [...path, k]);
      }
      return;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(path.map((p) => p.replace(/(?<=.)(Ms|Sec)$/, '')).join('.'));
  };
  // Providers by the key paths the file uses: `oidc.clientSecret` (one provider, the mapping form)
  // or `oidc[1].clientSecret` (a list; a provider added or removed is `oidc`).
  const { providers: a, ...restA } = running;
  const { providers: b, ...restB } = next;
  walk(restA, restB, []);
  if (a.length !== b.length || a.some((p, i) => p.id !== b[i]!.id)) out.push('oidc');
  else if (a.length === 1 && a[0]!.id === 'default') walk(a[0], b[0], ['oidc']);
  else a.forEach((p, i) => walk(p, b[i], [`oidc[${i}]`]));
  return out;
}

/** A listening instance's base URL (http://host:port, IPv6 in brackets). */
export function addressOf(app: FastifyInstance): string {
  const a = app.server.address();
  if (a && typeof a === 'object') return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  return String(a);
}

export interface SignalOptions {
  /** Grace period override (default: shutdownGracePeriod of the config in force). */
  graceMs?: number;
  /** Called with the drain's exit code instead of process.exit (tests, the cluster worker). */
  onExit?: (code: number) => void;
}

/** Signal handling for a server that is still starting, then for the running one. */
export interface SignalGate {
  /** The server is up: signals now act on it; a SIGHUP received while starting reloads it now. */
  attach(server: RunningServer, opts?: SignalOptions | number): void;
}

/**
 * Installs SIGTERM/SIGINT/SIGHUP handling before anything starts. Node's default for SIGHUP is to
 * exit, so a reload that reached a process still starting — a worker the primary just forked, a pod
 * reloaded during boot — used to kill it (and count towards the crash-loop back-off). Until
 * `attach`, a SIGHUP is remembered and applied once the server is up (the file may have changed
 * after it was read at start); SIGTERM/SIGINT before then end the process at once with 0 — nothing
 * is being served yet, so there is nothing to drain.
 *
 * Once attached: SIGTERM/SIGINT drain, then exit 0; SIGHUP hot-reloads from the config file.
 */
export function holdSignals(): SignalGate {
  let server: RunningServer | undefined;
  let o: SignalOptions = {};
  let reloadPending = false;
  const exit = (code: number) => (o.onExit ?? ((c: number) => process.exit(c)))(code);
  const stop = (signal: string) => {
    if (!server) { exit(0); return; }
    // The drain's last spans are sent before the process goes (nothing when tracing is off).
    void server.drain(signal, o.graceMs).then(async (code) => { await stopTracing(); exit(code); });
  };
  const reload = () => {
    if (!server) { reloadPending = true; return; }
    try {
      server.reload();
    } catch (err) {
      server.app.log.error({ err }, 'config reload failed; the running configuration keeps serving');
    }
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);
  return {
    attach(s, opts = {}) {
      server = s;
      o = typeof opts === 'number' ? { graceMs: opts } : opts;
      if (reloadPending) {
        reloadPending = false;
        s.app.log.info('SIGHUP received while starting: reloading the config file now');
        reload();
      }
    },
  };
}

/**
 * SIGTERM/SIGINT: drain, then exit 0. SIGHUP: hot reload from the config file. (A number is the
 * grace period, for callers of the earlier signature.) For a server already started; `holdSignals`
 * covers the start as well.
 */
export function installSignalHandlers(server: RunningServer, opts: SignalOptions | number = {}): void {
  holdSignals().attach(server, opts);
}
