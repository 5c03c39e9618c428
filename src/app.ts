// Wiring, in request order: normalise the target (rewriteUrl) → Portcullis's own endpoints
// (/oauth2/*, /healthz, /readyz) → the door (route → session → policy → identity → forward).
// Errors from any stage meet one handler that answers with a page (browsers) or JSON (APIs).
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import { randomUUID } from 'node:crypto';
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from './config/index.js';
import { Runtime, type RuntimeOptions } from './runtime.js';
import { createMetrics, responseObserver, type Metrics } from './metrics.js';
import { asPortcullisError, coded, errors } from './errors.js';
import { requestIdOf } from './request-id.js';
import { createHttpDoorway, rewriteUrl } from './door/http.js';
import { handleUpgrade } from './door/upgrade.js';
import { errorAnswer } from './door/respond.js';
import { registerSignInEndpoints } from './signin/endpoints.js';
import { compilePeerTrust } from './routing/trust.js';
import { AssertionSigner } from './identity/assertion.js';
import { clientKey, createRateLimiter } from './ratelimit.js';
import { REDACT, jsonStdout, logDestination, loggerOptions } from './logging.js';

export interface AppOptions extends RuntimeOptions {
  metrics?: Metrics;
  /** pino destination stream (tests capture logs to scan them for secrets). */
  logStream?: NodeJS.WritableStream;
}

/** Log redaction: cookies, tokens and credentials never reach a log line (paths and reasons: src/logging.ts). */
export { REDACT };

export async function buildApp(config: Config, opts: AppOptions = {}): Promise<{ app: FastifyInstance; runtime: Runtime }> {
  const metrics = opts.metrics ?? createMetrics();
  const peerTrusted = compilePeerTrust(config.trustProxy);
  const observe = responseObserver(metrics);
  // node:http hands every request to the HTTP doorway (src/door/http.ts): proxied requests and
  // forward-auth go through the one pipeline; Portcullis's own endpoints come back here, to Fastify.
  let doorway: ReturnType<typeof createHttpDoorway> | undefined;
  let fastifyHandler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const pretty = opts.logStream ? undefined : logDestination();
  const app = Fastify({
    serverFactory: (handler) => {
      const server = createServer((req, res) => doorway!(req, res));
      // `Expect: 100-continue`: the doorway sends 100 Continue only once the request is authorized.
      server.on('checkContinue', (req, res) => doorway!(req, res));
      fastifyHandler = handler;
      // What Fastify sets on servers it creates itself (headersTimeout stays Node's 60 s).
      server.keepAliveTimeout = 72_000;
      server.requestTimeout = 0;
      return server;
    },
    logger: {
      level: config.logLevel,
      ...loggerOptions,
      // Tests capture lines; a terminal gets them readable (logDestination), anything else JSON.
      stream: opts.logStream ?? pretty ?? jsonStdout(),
    },
    // What a peer says about the original request is read in one place, routing/origin.ts (the
    // rate limiter below asks it too): Fastify's own request.ip/host/protocol are not used.
    trustProxy: false,
    // A request id from the client is believed only from a trusted proxy (and only if it looks sane).
    requestIdHeader: false,
    genReqId: (req) => requestIdOf(req, peerTrusted),
    // Per-request access logs cost on every request; decisions are audited instead (door/audit.ts).
    logController: new LogController({ disableRequestLogging: true }),
    rewriteUrl,
    // While closing, Fastify's own 503 would answer in a body shape of its own: the hook below answers
    // ERR_DRAINING in the one error shape instead.
    return503OnClosing: false,
    bodyLimit: 1024 * 1024,
    // Requests Node cannot parse (malformed, headers too large): the one error shape, and a log line
    // that never carries the request's bytes (Fastify's default logs them, cookies included).
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const e = coded(err.code === 'HPE_HEADER_OVERFLOW' ? 'ERR_REQUEST_HEADERS_TOO_LARGE' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'ERR_REQUEST_TIMEOUT' : 'ERR_REQUEST_MALFORMED');
      const id = randomUUID();
      app.log.debug({ reqId: id, code: err.code, status: e.statusCode }, 'malformed request refused');
      const a = errorAnswer(e, { id, headers: {} });
      const refuse = () => {
        if (socket.writable) {
          socket.write(`HTTP/1.1 ${a.status} ${STATUS_CODES[a.status]}\r\nConnection: close\r\nContent-Type: ${a.headers['content-type']}\r\nX-Request-Id: ${id}\r\nContent-Length: ${Buffer.byteLength(a.body)}\r\n\r\n${a.body}`);
        }
        socket.destroy();
      };
      // A bad request pipelined behind a good one: the good one's response (Node's socket._httpMessage)
      // is finished first, then the 400 (Node's own default handler would cut it off). When the
      // error is the in-flight request's own (its body cut short: the client left), the socket goes
      // now — which also aborts that request's upstream exchange.
      const inflight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
      if (inflight && !inflight.writableFinished && !inflight.destroyed && inflight.req?.complete) {
        inflight.once('finish', refuse);
        inflight.once('close', () => socket.destroy());
        return;
      }
      refuse();
    },
    routerOptions: { ignoreDuplicateSlashes: false, ignoreTrailingSlash: false, maxParamLength: 4096 },
  });
  const runtime = new Runtime(config, metrics, app.log, opts);
  if (config.assertionSigning.keysFile || config.routes.some((r) => r.assertion)) {
    runtime.assertions = await AssertionSigner.create(config.publicUrl, config.assertionSigning, app.log, runtime.now);
  }
  doorway = createHttpDoorway(runtime, (req, res) => fastifyHandler!(req, res), observe);

  await app.register(fastifyCookie);

  answerErrors(app, config.publicUrl);

  app.addHook('onResponse', (request, reply, done) => {
    observe('portcullis', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  // Draining: own endpoints answer 503 ERR_DRAINING and close the connection, as the door does for
  // proxied requests; /readyz answers its own 503 ("draining") for the load balancer.
  app.addHook('onRequest', async (request, reply) => {
    if (!runtime.draining || request.routeOptions.url === '/readyz') return;
    reply.header('connection', 'close');
    throw errors.draining();
  });

  // Sign-in endpoints cost an IdP round trip (callback) or a transaction cookie (start): a token
  // bucket per client IP (the peer, or X-Forwarded-For from a trusted proxy: routing/origin.ts) for each.
  const signInLimiter = createRateLimiter(config.rateLimit.signIn);
  if (signInLimiter) {
    app.addHook('onRequest', async (request) => {
      const url = request.routeOptions.url;
      if (url !== '/oauth2/start' && url !== '/oauth2/callback') return;
      const d = signInLimiter.take(`${url} ${clientKey(runtime.origin.clientIpOf(request.raw))}`);
      if (d.ok) return;
      metrics.rateLimited.inc({ endpoint: url.slice('/oauth2/'.length) });
      throw errors.rateLimited(d.retryAfterSec);
    });
  }

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => readiness(runtime, reply));

  await app.register(async (own) => registerSignInEndpoints(own, runtime));
  // Any other /oauth2/ path is ours too, and never proxied.
  app.all('/oauth2/*', async () => { throw errors.notOwnEndpoint(); });

  app.server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    void handleUpgrade(runtime, req, socket, head);
  });
  app.addHook('preClose', async () => { runtime.draining = true; });
  app.addHook('onClose', async () => runtime.close());
  runtime.providers.start();
  return { app, runtime };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Where a failed sign-in came from: the error page's "sign in again" link returns there (set by the callback). */
    retryTo: string | undefined;
  }
  interface FastifyContextConfig {
    /**
     * `oauth`: error answers add `error_description` (= `message`) and are JSON whatever Accept says —
     * for endpoints an IdP calls (back-channel logout; see signin/endpoints.ts).
     */
    errorBody?: 'oauth';
  }
}

/**
 * Error and not-found answers for every Fastify instance Portcullis runs (the public listener's own
 * endpoints, the metrics/admin listener, a cluster primary's): handlers throw coded errors (or
 * Fastify throws its own: body too large, malformed JSON, wrong Content-Type), and they meet here —
 * logged (5xx at error with the cause; 4xx at info), answered with the door's error answer: a page
 * for browsers, else the one JSON shape, with X-Request-Id on every response. `publicUrl`: where
 * "sign in again" links point (the public listener only).
 */
export function answerErrors(app: FastifyInstance, publicUrl?: string): void {
  app.decorateRequest('retryTo', undefined);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  app.setErrorHandler((err, request, reply) => {
    const e = asPortcullisError(err);
    if (e.statusCode >= 500) request.log.error({ code: e.code, err: e.cause ?? err }, e.message);
    else request.log.info({ code: e.code, detail: e.cause instanceof Error ? e.cause.message : undefined }, e.message);
    const retryTo = request.retryTo;
    const signInUrl = e.retrySignIn && publicUrl ? `${publicUrl}/oauth2/start${retryTo ? `?rd=${encodeURIComponent(retryTo)}` : ''}` : undefined;
    const oauth = request.routeOptions.config?.errorBody === 'oauth';
    const a = errorAnswer(e, { id: request.id, headers: request.headers }, oauth ? { json: true, fields: { error_description: e.message } } : { signInUrl });
    return reply.code(a.status).headers(a.headers).send(a.body);
  });
  app.setNotFoundHandler(async () => { throw errors.notOwnEndpoint(); });
}

/**
 * /readyz: 200 once every provider's discovery and keys are loaded and — Redis configured — Redis
 * answers and the shared revocation list has been pulled once; 503 before that and while draining.
 */
export function readiness(runtime: Runtime, reply: FastifyReply): FastifyReply {
  runtime.reportIdpReady();
  // A probe while an IdP is down is a cue to retry its discovery now rather than at the end of the backoff.
  if (!runtime.providers.ready) runtime.providers.start();
  const r = runtime.ready;
  const ok = r.ok && !runtime.draining;
  return reply.code(ok ? 200 : 503).header('cache-control', 'no-store').send({
    status: runtime.draining ? 'draining' : ok ? 'ready' : 'not ready',
    idp: r.idp,
    ...(runtime.redis ? { redis: r.store, revocations: r.revocations } : {}),
  });
}

/** The metrics listener: /metrics only, never on the public port. */
export async function buildMetricsApp(metrics: Metrics): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, genReqId: () => randomUUID() });
  answerErrors(app);
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  return app;
}
