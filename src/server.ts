// Process lifecycle: listen on the public and metrics ports, warn about unsafe settings, and drain
// gracefully on SIGTERM/SIGINT (stop accepting, let in-flight requests finish, then exit 0).
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/index.js';
import { buildApp, buildMetricsApp, type AppOptions } from './app.js';
import type { Runtime } from './runtime.js';

export interface RunningServer {
  app: FastifyInstance;
  metricsApp: FastifyInstance | undefined;
  runtime: Runtime;
  url: string;
  metricsUrl: string | undefined;
  close(): Promise<void>;
}

export async function startServer(config: Config, opts: AppOptions = {}): Promise<RunningServer> {
  const { app, runtime } = await buildApp(config, opts);
  if (config.publicUrl.startsWith('http:')) {
    app.log.warn({ publicUrl: config.publicUrl }, 'publicUrl is plain http: session cookies are sent without Secure and without the __Host- prefix. Use https outside local development.');
  }
  if (config.oidc.issuer.startsWith('http:')) {
    app.log.warn({ issuer: config.oidc.issuer }, 'the OIDC issuer is plain http: tokens travel unencrypted. Use https outside local development.');
  }
  await app.listen({ host: config.listen.host, port: config.listen.port });
  let metricsApp: FastifyInstance | undefined;
  let metricsUrl: string | undefined;
  if (config.metrics) {
    metricsApp = await buildMetricsApp(runtime.metrics);
    await metricsApp.listen({ host: config.metrics.host, port: config.metrics.port });
    metricsUrl = addressOf(metricsApp);
  }
  const url = addressOf(app);
  app.log.info({ url, metrics: metricsUrl, routes: config.routes.length }, 'portcullis listening');
  return {
    app, metricsApp, runtime, url, metricsUrl,
    async close() {
      await Promise.all([app.close(), metricsApp?.close()]);
    },
  };
}

function addressOf(app: FastifyInstance): string {
  const a = app.server.address();
  if (a && typeof a === 'object') return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  return String(a);
}

/** SIGTERM/SIGINT: stop accepting, finish in-flight requests within the grace period, exit 0. */
export function installSignalHandlers(server: RunningServer, graceMs: number): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.app.log.info({ signal, graceMs }, 'draining: no new connections; waiting for in-flight requests');
    const force = setTimeout(() => {
      server.app.log.warn('grace period over; closing remaining connections');
      server.app.server.closeAllConnections();
      process.exit(0);
    }, graceMs);
    force.unref();
    server.app.server.closeIdleConnections();
    server.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
