// Process model, beside the pipeline: `workers: 1` runs the proxy in this process; `workers: N` or
// `auto` makes this process a node:cluster primary that forks N workers serving the one public
// port. Workers share nothing but the config (session secrets, Redis); the primary restarts a
// crashed worker, passes SIGTERM/SIGINT (drain) and SIGHUP (reload) on, relays back-channel
// logouts between workers, and serves /metrics (aggregated over the workers), /healthz and /readyz,
// and the admin endpoints (admin.tokenFile), each operation run by one worker.
import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Config } from './config/index.js';
import type { Revocation } from './session/revocation.js';
import { registerAdminRoutes, runAdminOp, type AdminOp, type AdminResult } from './session/admin.js';
import { jsonStdout, logDestination, loggerOptions } from './logging.js';
import { addressOf, holdSignals, startServer, type RunningServer } from './server.js';
import { startTracing, tracingSettingsFromEnv } from './tracing.js';
import { answerErrors } from './app.js';

/** Messages between the primary and its workers (IPC). */
const MSG = {
  /** worker → primary: listening, and able to answer metrics requests. */
  up: 'portcullis:up',
  /** worker → primary: readiness changed ({ ready }). */
  ready: 'portcullis:ready',
  /** both ways: sessions ended by sign-out, back-channel logout or a refused refresh ({ r: { psid?, sid?, sub? } }). */
  revoked: 'portcullis:revoked',
  /** primary → worker: send your metrics ({ id }); worker → primary: here they are ({ id, metrics }). */
  metricsRequest: 'portcullis:metrics?',
  metricsResponse: 'portcullis:metrics',
  /** primary → worker: run this admin operation ({ id, op }); worker → primary: its answer ({ id, result }). */
  adminRequest: 'portcullis:admin?',
  adminReply: 'portcullis:admin',
} as const;

type Message =
  | { type: typeof MSG.up }
  | { type: typeof MSG.ready; ready: boolean }
  | { type: typeof MSG.revoked; r: Revocation }
  | { type: typeof MSG.metricsRequest; id: number }
  | { type: typeof MSG.metricsResponse; id: number; metrics: MetricObjectWithValues<MetricValue<string>>[] }
  | { type: typeof MSG.adminRequest; id: number; op: AdminOp }
  | { type: typeof MSG.adminReply; id: number; result: AdminResult };

const isMessage = (m: unknown): m is Message => typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('portcullis:');

/** How long a /metrics scrape waits for the workers' answers; late ones are left out of that scrape. */
const METRICS_WAIT_MS = 2_000;
/** How long an admin request forwarded to a worker waits for its answer before the primary answers 503. */
const ADMIN_WAIT_MS = 10_000;
/** A worker that dies sooner than this after starting counts as a crash loop: restarts back off. */
const CRASH_LOOP_MS = 10_000;

export function workerCount(workers: Config['workers']): number {
  return workers === 'auto' ? Math.max(1, availableParallelism()) : workers;
}

/**
 * `portcullis run`: serve in this process, or as a cluster primary or worker. Resolves once serving;
 * the process then lives until a signal ends it.
 */
export async function run(configFile: string, config: Config): Promise<void> {
  // Tracing (OTEL_* environment, off by default) in the processes that serve requests.
  const serves = cluster.isWorker || workerCount(config.workers) <= 1;
  if (serves && startTracing(tracingSettingsFromEnv())) console.error('portcullis: OpenTelemetry tracing on (OTEL_EXPORTER_OTLP_*)');
  if (cluster.isWorker) return runWorker(configFile, config);
  const n = workerCount(config.workers);
  if (n <= 1) {
    const signals = holdSignals();
    const server = await startServer(config, { configFile });
    signals.attach(server);
    return;
  }
  return runPrimary(config, n);
}

async function runWorker(configFile: string, config: Config): Promise<void> {
  const send = (m: Message) => { if (process.connected) process.send?.(m); };
  const signals = holdSignals();
  const server: RunningServer = await startServer(config, {
    configFile,
    metricsListener: false,
    // A sign-out or back-channel logout reaches one worker; the others must end those sessions too.
    onSessionsRevoked: (r) => send({ type: MSG.revoked, r }),
  });
  const { runtime } = server;
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.type === MSG.revoked) void runtime.revokeSessions(m.r, 'peer');
    else if (m.type === MSG.metricsRequest) {
      runtime.reportIdpReady();
      runtime.metrics.registry.getMetricsAsJSON().then(
        (metrics) => send({ type: MSG.metricsResponse, id: m.id, metrics }),
        (err: unknown) => runtime.log.warn({ err }, 'metrics for the primary failed'),
      );
    } else if (m.type === MSG.adminRequest) {
      runAdminOp(runtime, m.op).then(
        (result) => send({ type: MSG.adminReply, id: m.id, result }),
        (err: unknown) => {
          runtime.log.error({ err }, 'admin request from the primary failed');
          send({ type: MSG.adminReply, id: m.id, result: { status: 500, body: { error: 'internal', message: 'the admin operation failed' } } });
        },
      );
    }
  });
  signals.attach(server);
  let reported: boolean | undefined;
  const report = () => {
    const ready = runtime.ready.ok && !runtime.draining; // IdP, Redis, revocation pull, cluster state
    if (ready !== reported) { reported = ready; send({ type: MSG.ready, ready }); }
  };
  send({ type: MSG.up });
  report();
  setInterval(report, 500).unref();
}

async function runPrimary(config: Config, n: number): Promise<void> {
  const pretty = logDestination();
  const admin = Fastify({
    logger: { level: config.logLevel, ...loggerOptions, stream: pretty ?? jsonStdout() },
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
  });
  answerErrors(admin);
  const log: FastifyBaseLogger = admin.log;

  // The primary's own metrics, merged into the workers' aggregate.
  const own = new Registry();
  const workersGauge = new Gauge({ name: 'portcullis_workers', help: 'Worker processes serving the public port.', registers: [own] });
  const restarts = new Counter({ name: 'portcullis_worker_restarts_total', help: 'Workers that exited unexpectedly and were started again.', registers: [own] });

  const up = new Set<Worker>();
  const ready = new Map<Worker, boolean>();
  const startedAt = new Map<Worker, number>();
  const pendingMetrics = new Map<number, { answers: Array<MetricObjectWithValues<MetricValue<string>>[]>; waiting: Set<Worker>; done: () => void }>();
  let metricsRequestId = 0;
  const pendingAdmin = new Map<number, { worker: Worker; done: (r: AdminResult) => void }>();
  let adminRequestId = 0;
  let adminNext = 0;
  let stopping = false;
  let exitCode = 0;
  let fastCrashes = 0;
  /**
   * Workers that were still starting when a SIGHUP came: they get it once they are up. (A worker
   * reads the file when it starts, so it may have read it before the edit the SIGHUP announces.)
   */
  const reloadPending = new Set<Worker>();

  const send = (w: Worker, m: Message) => { if (w.isConnected()) w.send(m); };
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());

  const fork = () => {
    const w = cluster.fork();
    startedAt.set(w, Date.now());
    w.on('message', (m: unknown) => {
      if (!isMessage(m)) return;
      switch (m.type) {
        case MSG.up:
          up.add(w);
          workersGauge.set(up.size);
          if (reloadPending.delete(w)) {
            log.info({ workerPid: w.process.pid }, 'SIGHUP held while the worker was starting: sent now');
            w.process.kill('SIGHUP');
          }
          break;
        case MSG.ready: ready.set(w, m.ready); break;
        case MSG.revoked: for (const other of live()) if (other !== w) send(other, m); break;
        case MSG.metricsResponse: {
          const p = pendingMetrics.get(m.id);
          if (p && p.waiting.delete(w)) { p.answers.push(m.metrics); if (p.waiting.size === 0) p.done(); }
          break;
        }
        case MSG.adminReply: {
          const p = pendingAdmin.get(m.id);
          if (p && p.worker === w) p.done(m.result);
          break;
        }
      }
    });
  };

  cluster.on('exit', (w, code, signal) => {
    up.delete(w);
    ready.delete(w);
    reloadPending.delete(w);
    workersGauge.set(up.size);
    for (const p of pendingMetrics.values()) if (p.waiting.delete(w) && p.waiting.size === 0) p.done();
    for (const p of pendingAdmin.values()) if (p.worker === w) p.done(noWorker('the worker running it exited'));
    const lived = Date.now() - (startedAt.get(w) ?? 0);
    startedAt.delete(w);
    if (stopping) {
      if (code !== 0) exitCode = 1;
      log.info({ workerPid: w.process.pid, code, signal }, 'worker stopped');
      if (live().length === 0) void finish();
      return;
    }
    restarts.inc();
    fastCrashes = lived < CRASH_LOOP_MS ? fastCrashes + 1 : 0;
    const delay = fastCrashes > 0 ? Math.min(30_000, 250 * 2 ** fastCrashes) : 0;
    log.error({ workerPid: w.process.pid, code, signal, restartInMs: delay }, 'worker exited unexpectedly; starting a new one');
    setTimeout(() => { if (!stopping) fork(); }, delay);
  });

  const metricsText = async (): Promise<string> => {
    const id = metricsRequestId++;
    const waiting = new Set([...up].filter((w) => w.isConnected()));
    const answers: Array<MetricObjectWithValues<MetricValue<string>>[]> = [await own.getMetricsAsJSON()];
    if (waiting.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ missing: [...waiting].map((w) => w.process.pid) }, 'metrics: some workers did not answer in time; scraped without them');
          resolve();
        }, METRICS_WAIT_MS);
        pendingMetrics.set(id, { answers, waiting, done: () => { clearTimeout(timer); resolve(); } });
        for (const w of waiting) send(w, { type: MSG.metricsRequest, id });
      });
      pendingMetrics.delete(id);
    }
    return AggregatorRegistry.aggregate(answers).metrics();
  };

  // Admin endpoints: the same routes and token check as a single process; each operation is run by
  // one live worker (round robin, ready ones first) against its Runtime. A revoke reaches the other
  // workers as every revocation does (MSG.revoked).
  const noWorker = (why: string): AdminResult => ({ error: 'ERR_ADMIN_NO_WORKER', detail: why });
  const forwardAdmin = (op: AdminOp): Promise<AdminResult> => {
    const candidates = [...up].filter((w) => w.isConnected() && !w.isDead());
    const readyOnes = candidates.filter((w) => ready.get(w) === true);
    const pool = readyOnes.length > 0 ? readyOnes : candidates;
    if (stopping || pool.length === 0) return Promise.resolve(noWorker(stopping ? 'stopping' : 'no worker is up'));
    const worker = pool[adminNext++ % pool.length]!;
    const id = adminRequestId++;
    return new Promise<AdminResult>((resolve) => {
      const timer = setTimeout(() => {
        log.warn({ workerPid: worker.process.pid, op: op.kind }, 'admin: the worker did not answer in time');
        done(noWorker('timed out'));
      }, ADMIN_WAIT_MS);
      const done = (r: AdminResult) => { clearTimeout(timer); pendingAdmin.delete(id); resolve(r); };
      pendingAdmin.set(id, { worker, done });
      send(worker, { type: MSG.adminRequest, id, op });
    });
  };
  registerAdminRoutes(admin, config.admin?.token, log, forwardAdmin);

  admin.get('/metrics', async (_request, reply) => reply.type(own.contentType).send(await metricsText()));
  admin.get('/healthz', async () => ({ status: 'ok' }));
  admin.get('/readyz', async (_request, reply) => {
    const states = [...up].map((w) => ready.get(w) === true);
    const ok = !stopping && states.length > 0 && states.every(Boolean);
    return reply.code(ok ? 200 : 503).header('cache-control', 'no-store')
      .send({ status: stopping ? 'draining' : ok ? 'ready' : 'not ready', workers: states.length, ready: states.filter(Boolean).length });
  });

  const finish = async () => {
    await admin.close().catch(() => {});
    log.info({ exitCode }, 'all workers stopped');
    process.exit(exitCode);
  };

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const workers = live();
    log.info({ signal, workers: workers.length, graceMs: config.shutdownGracePeriodMs }, 'stopping: workers drain in-flight requests, then exit');
    if (workers.length === 0) { void finish(); return; }
    for (const w of workers) w.process.kill('SIGTERM');
    // Workers cut their own stragglers at the grace period; this is only for a worker that hangs.
    setTimeout(() => {
      const left = live();
      if (left.length === 0) return;
      log.error({ workers: left.map((w) => w.process.pid) }, 'workers still running well after the grace period; killing them');
      exitCode = 1;
      for (const w of left) w.process.kill('SIGKILL');
    }, config.shutdownGracePeriodMs + 5_000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    if (stopping) return;
    const workers = live();
    log.info({ workers: workers.length }, 'SIGHUP: workers reload the config file');
    // A worker still starting has not installed its handlers yet (Node's default for SIGHUP is to
    // exit): hold its signal until it reports up.
    for (const w of workers) {
      if (up.has(w)) w.process.kill('SIGHUP');
      else reloadPending.add(w);
    }
  });
  // Signal handlers before the first await: a signal during the primary's own start is handled too.
  if (config.metrics) await admin.listen({ host: config.metrics.host, port: config.metrics.port });

  for (let i = 0; i < n; i++) fork();
  log.info({ workers: n, metrics: config.metrics ? addressOf(admin) : undefined }, 'portcullis primary started');
}
