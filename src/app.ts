// Wiring, in request order: normalise the target (rewriteUrl) → Portcullis's own endpoints
// (/oauth2/*, /healthz, /readyz) → the door (route → session → policy → identity → forward).
// Errors from any stage meet one handler that answers with a page (browsers) or JSON (APIs).
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import type { Config } from './config/index.js';
import { Runtime, type RuntimeOptions } from './runtime.js';
import { createMetrics, responseObserver, type Metrics } from './metrics.js';
import { createServer } from 'node:http';
import { createFastPath, type FastPath } from './proxy/fast-path.js';
import { asPortcullisError, errors, PortcullisError } from './errors.js';
import { renderError } from './pages.js';
import { requestIdOf } from './request-id.js';
import { handleUpgrade, proxyHandler, rewriteUrl, type RouteCarrier } from './door.js';
import { registerSignInEndpoints } from './signin/endpoints.js';
import { registerForwarding } from './proxy/forward.js';
import { compilePeerTrust } from './routing/trust.js';
import { AssertionSigner } from './identity/assertion.js';
import { clientKey, createRateLimiter } from './ratelimit.js';

export interface AppOptions extends RuntimeOptions {
  metrics?: Metrics;
  /** false: every request takes the Fastify path (the reference behaviour; for comparison tests and bench). */
  fastPath?: boolean;
  /** pino destination stream (tests capture logs to scan them for secrets). */
  logStream?: NodeJS.WritableStream;
}

/** Log redaction: cookies, tokens and credentials never reach a log line. */
export const REDACT = [
  'req.headers.cookie', 'req.headers.authorization', 'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]', 'headers.cookie', 'headers.authorization',
  '*.id_token', '*.access_token', '*.refresh_token', '*.idToken', '*.accessToken', '*.refreshToken', '*.clientSecret', '*.secrets',
];

export async function buildApp(config: Config, opts: AppOptions = {}): Promise<{ app: FastifyInstance; runtime: Runtime }> {
  const metrics = opts.metrics ?? createMetrics();
  const peerTrusted = compilePeerTrust(config.trustProxy);
  const observe = responseObserver(metrics);
  // The hot path (src/proxy/fast-path.ts) sees each request first; whatever it declines goes to Fastify.
  let fastPath: FastPath | undefined;
  const app = Fastify({
    serverFactory: (handler) => {
      const server = createServer((req, res) => {
        if (!fastPath?.handle(req, res)) handler(req, res);
      });
      // What Fastify sets on servers it creates itself (headersTimeout stays Node's 60 s).
      server.keepAliveTimeout = 72_000;
      server.requestTimeout = 0;
      return server;
    },
    logger: {
      level: config.logLevel,
      redact: { paths: REDACT, censor: '[redacted]' },
      ...(opts.logStream ? { stream: opts.logStream } : {}),
    },
    trustProxy: config.trustProxy,
    // A request id from the client is believed only from a trusted proxy (and only if it looks sane).
    requestIdHeader: false,
    genReqId: (req) => requestIdOf(req, peerTrusted),
    // Per-request access logs cost on the hot path; decisions are audited instead (door.ts).
    logController: new LogController({ disableRequestLogging: true }),
    rewriteUrl,
    return503OnClosing: true,
    bodyLimit: 10 * 1024 * 1024,
    routerOptions: { ignoreDuplicateSlashes: false, ignoreTrailingSlash: false, maxParamLength: 4096 },
  });
  const runtime = new Runtime(config, metrics, app.log, opts);
  if (config.assertionSigning.keysFile || config.routes.some((r) => r.assertion)) {
    runtime.assertions = await AssertionSigner.create(config.publicUrl, config.assertionSigning, app.log, runtime.now);
  }

  await app.register(fastifyCookie);

  app.setErrorHandler((err, request, reply) => {
    const e = asPortcullisError(err);
    if (e.statusCode >= 500) request.log.error({ code: e.code, err: e.cause ?? err }, e.message);
    else request.log.info({ code: e.code, detail: e.cause instanceof Error ? e.cause.message : undefined }, e.message);
    reply.code(e.statusCode).header('cache-control', 'no-store');
    if (e.retryAfter) reply.header('retry-after', String(e.retryAfter));
    const retryTo = (request as FastifyRequest & { retryTo?: string }).retryTo;
    const signInUrl = e.retrySignIn ? `${config.publicUrl}/oauth2/start${retryTo ? `?rd=${encodeURIComponent(retryTo)}` : ''}` : undefined;
    const { type, body } = renderError(e, request.headers.accept, request.id, signInUrl);
    return reply.type(type).send(body);
  });

  app.addHook('onResponse', (request, reply, done) => {
    const route = (request as RouteCarrier).portcullisRoute ?? (request.url.startsWith('/oauth2/') ? 'portcullis' : 'none');
    observe(route, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  // Sign-in endpoints cost an IdP round trip (callback) or a transaction cookie (start): a token
  // bucket per client IP (request.ip: the peer, or X-Forwarded-For from a trusted proxy) for each.
  const signInLimiter = createRateLimiter(config.rateLimit.signIn);
  if (signInLimiter) {
    app.addHook('onRequest', async (request) => {
      const url = request.routeOptions.url;
      if (url !== '/oauth2/start' && url !== '/oauth2/callback') return;
      const d = signInLimiter.take(`${url} ${clientKey(request.ip)}`);
      if (d.ok) return;
      metrics.rateLimited.inc({ endpoint: url.slice('/oauth2/'.length) });
      throw new PortcullisError('ERR_RATE_LIMITED', 429, errors.rateLimited().message, { retryAfter: d.retryAfterSec });
    });
  }

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => readiness(runtime, reply));

  await app.register(async (own) => registerSignInEndpoints(own, runtime));
  // Any other /oauth2/ path is ours too, and never proxied.
  app.all('/oauth2/*', async () => { throw errors.notOwnEndpoint(); });

  await app.register(async (proxy) => {
    await registerForwarding(proxy);
    proxy.all('/*', (request, reply) => proxyHandler(request, reply, runtime));
    proxy.all('/', (request, reply) => proxyHandler(request, reply, runtime));
  });

  app.server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    void handleUpgrade(runtime, req, socket, head);
  });
  if (opts.fastPath !== false) {
    const fp = createFastPath(runtime, observe);
    fastPath = fp;
    app.addHook('preClose', async () => { fp.enabled = false; });
    app.addHook('onClose', async () => fp.close());
  }
  app.addHook('onClose', async () => runtime.close());
  runtime.idp.start();
  return { app, runtime };
}

/** /readyz: 200 once the IdP's discovery and keys are loaded, 503 before that and while draining. */
export function readiness(runtime: Runtime, reply: FastifyReply): FastifyReply {
  const idp = runtime.idp.ready;
  runtime.metrics.idpReady.set(idp ? 1 : 0);
  // A probe while the IdP is down is a cue to retry discovery now rather than at the end of the backoff.
  if (!idp) runtime.idp.start();
  const r = runtime.ready;
  const ok = r.ok && !runtime.draining;
  return reply.code(ok ? 200 : 503).header('cache-control', 'no-store').send({
    status: runtime.draining ? 'draining' : ok ? 'ready' : 'not ready',
    idp: r.idp,
    ...(runtime.redis ? { redis: r.store } : {}),
  });
}

/** The metrics listener: /metrics only, never on the public port. */
export async function buildMetricsApp(metrics: Metrics): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  return app;
}
