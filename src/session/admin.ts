// Operators' view of sessions, on the metrics/admin listener (never the public port):
//
//   GET  /admin/sessions?sub=alice          the subject's sessions (Redis store; 501 with cookies)
//   POST /admin/sessions/revoke {sub}|{sid}  ends them: revocation list, Redis entries, cache, live
//                                            WebSockets/streams, sibling workers; audit-logged
//
// Behind `Authorization: Bearer <token>`, the token read from `admin.tokenFile` at start. Without
// that key the routes are not registered (404). Tokens are compared as SHA-256 digests with
// timingSafeEqual: neither the token's content nor its length leaks through timing. Failures are
// registry codes (ERR_ADMIN_*), thrown to the listener's error handler (app.ts answerErrors): the
// one JSON error shape, as on the public port.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PortcullisError, type ErrorCode } from '../errors.js';
import type { RedisStore } from './redis-store.js';
import type { Revocation } from './revocation.js';

/** What the list shows of one session: ids and times, never a token. */
export interface AdminSessionView {
  /** hex(sha256(cookie id)), the Redis key without its prefix: names the session, opens nothing. */
  id: string;
  sub: string;
  /** The IdP's session id (revoke with {sid}), when the IdP sent one. */
  idpSid?: string;
  createdAt: string;
  /** As of the session's last write: accurate to about a minute. */
  lastSeenAt: string;
  idleExpiresAt: string;
  absoluteExpiresAt: string;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** One admin operation, as the HTTP request gave it (checked by runAdminOp): also what a cluster primary sends a worker. */
export type AdminOp =
  | { kind: 'list'; query: Record<string, unknown>; ip?: string }
  | { kind: 'revoke'; body: unknown; ip?: string };

/**
 * An admin operation's answer: status and JSON body, or a failure by its registry code (plain data:
 * it crosses IPC from a worker to the primary, which answers it).
 */
export type AdminResult =
  | { status: number; body: unknown }
  | { error: Extract<ErrorCode, `ERR_ADMIN_${string}`>; detail?: string };

/**
 * What the admin operations use of the app's state — the app's Runtime provides it. Named here as
 * an interface so the session stage does not import the hub above it (test/structure/layers.test.ts).
 */
export interface AdminRuntime {
  readonly config: {
    readonly admin?: { readonly token: string | undefined };
    readonly session: { readonly idleTimeoutMs: number; readonly absoluteTimeoutMs: number };
    /** The configured providers (ids only are read): a subject or IdP sid is one provider's. */
    readonly providers?: ReadonlyArray<{ readonly id: string }>;
  };
  readonly log: FastifyBaseLogger;
  readonly sessions: { readonly storeKind: 'cookie' | 'redis' };
  readonly redis: Pick<RedisStore, 'listBySub'> | undefined;
  /** Ends sessions everywhere: store entries, revocation list, cache, live connections, sibling workers. */
  revokeSessions(r: Revocation, via: string): Promise<void>;
}

/** Registers the admin routes on `app` when `admin.tokenFile` is configured; otherwise does nothing (404). */
export function registerSessionAdmin(app: FastifyInstance, runtime: AdminRuntime): void {
  registerAdminRoutes(app, runtime.config.admin?.token, runtime.log, (op) => runAdminOp(runtime, op));
}

/**
 * The admin routes with their token check, executing each operation through `execute`: in this
 * process (runAdminOp) or, on a cluster primary, by forwarding it to a worker. No token → nothing (404).
 */
export function registerAdminRoutes(app: FastifyInstance, token: string | undefined, logger: FastifyBaseLogger, execute: (op: AdminOp) => Promise<AdminResult>): void {
  if (!token) return;
  const expected = digest(token);
  const log = logger.child({ component: 'admin' });

  /** Throws ERR_ADMIN_UNAUTHORIZED (with its challenge) unless the request carries the admin token. */
  const checkToken = (request: FastifyRequest, reply: FastifyReply): void => {
    const m = /^Bearer +(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    if (m && timingSafeEqual(digest(m[1]!), expected)) return;
    log.warn({ ip: request.ip, path: request.url.split('?')[0], reason: m ? 'wrong token' : 'no bearer token' }, 'admin request refused');
    reply.header('www-authenticate', 'Bearer realm="portcullis-admin"');
    throw new PortcullisError('ERR_ADMIN_UNAUTHORIZED');
  };

  const answer = async (reply: FastifyReply, op: AdminOp) => {
    const r = await execute(op);
    reply.header('cache-control', 'no-store');
    if ('error' in r) throw new PortcullisError(r.error, { detail: r.detail });
    return reply.code(r.status).send(r.body);
  };

  app.get('/admin/sessions', async (request, reply) => {
    checkToken(request, reply);
    return answer(reply, { kind: 'list', query: { ...(request.query as Record<string, unknown>) }, ip: request.ip });
  });

  app.post('/admin/sessions/revoke', async (request, reply) => {
    checkToken(request, reply);
    return answer(reply, { kind: 'revoke', body: request.body ?? {}, ip: request.ip });
  });
}

/** Executes one admin operation against this process's Runtime (the caller has checked the token). */
export async function runAdminOp(runtime: AdminRuntime, op: AdminOp): Promise<AdminResult> {
  return op.kind === 'list' ? listSessions(runtime, op.query) : revokeSessions(runtime, op.body, op.ip);
}

/**
 * The provider a subject or IdP sid belongs to: `provider` (`?provider=` / `"provider"`), else the
 * first configured one — two IdPs may both have an "alice" (docs/providers.md). An unknown id is a 400.
 */
function providerOf(runtime: AdminRuntime, asked: unknown): { provider: string | undefined } | Extract<AdminResult, { error: string }> {
  const ids = runtime.config.providers?.map((p) => p.id) ?? [];
  if (asked === undefined) return { provider: ids[0] };
  if (typeof asked === 'string' && ids.includes(asked)) return { provider: asked };
  return { error: 'ERR_ADMIN_BAD_REQUEST', detail: `provider: one of ${ids.join(', ')}` };
}

async function listSessions(runtime: AdminRuntime, query: Record<string, unknown>): Promise<AdminResult> {
  const sub = query.sub;
  if (typeof sub !== 'string' || sub === '') return { error: 'ERR_ADMIN_BAD_REQUEST', detail: 'the subject: ?sub=<sub>' };
  const which = providerOf(runtime, query.provider);
  if ('error' in which) return which;
  if (runtime.sessions.storeKind !== 'redis' || !runtime.redis) return { error: 'ERR_ADMIN_LIST_UNSUPPORTED' };
  let found;
  try {
    found = await runtime.redis.listBySub(sub, which.provider);
  } catch {
    return { error: 'ERR_ADMIN_STORE_UNAVAILABLE', detail: 'the sessions could not be listed' };
  }
  const { idleTimeoutMs, absoluteTimeoutMs } = runtime.config.session;
  const iso = (ms: number) => new Date(ms).toISOString();
  const sessions: AdminSessionView[] = found.map((s) => ({
    id: s.id,
    sub: s.sub,
    ...(s.idpSid !== undefined ? { idpSid: s.idpSid } : {}),
    createdAt: iso(s.createdAt),
    lastSeenAt: iso(s.seenAt),
    idleExpiresAt: iso(Math.min(s.seenAt + idleTimeoutMs, s.createdAt + absoluteTimeoutMs)),
    absoluteExpiresAt: iso(s.createdAt + absoluteTimeoutMs),
  }));
  return { status: 200, body: { sub, store: 'redis', sessions } };
}

async function revokeSessions(runtime: AdminRuntime, raw: unknown, ip: string | undefined): Promise<AdminResult> {
  const log = runtime.log.child({ component: 'admin' });
  const body = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const sub = typeof body.sub === 'string' && body.sub !== '' ? body.sub : undefined;
  const sid = typeof body.sid === 'string' && body.sid !== '' ? body.sid : undefined;
  if ((sub === undefined) === (sid === undefined) || typeof raw !== 'object' || Array.isArray(raw)) {
    return { error: 'ERR_ADMIN_BAD_REQUEST', detail: 'exactly one of {"sub": "…"} or {"sid": "…"} (JSON)' };
  }
  const which = providerOf(runtime, body.provider);
  if ('error' in which) return which;
  const store = runtime.sessions.storeKind;
  const target = { ...(sid !== undefined ? { sid } : { sub: sub! }), ...(which.provider !== undefined ? { provider: which.provider } : {}) };
  // Counted before Runtime.revokeSessions deletes them (it does the deleting, for every kind of revocation).
  let removed: number | undefined;
  if (store === 'redis' && runtime.redis) {
    try {
      removed = sid !== undefined ? undefined : (await runtime.redis.listBySub(sub!, which.provider)).length;
    } catch { /* the revocation below reports the outage */ }
  }
  try {
    await runtime.revokeSessions(target, 'admin');
  } catch (err) {
    log.error({ audit: true, action: 'revoke', by: 'admin', ...target, store, ip, outcome: 'failed', err: err instanceof Error ? err.message : String(err) },
      'admin revoke: not stored everywhere (ended in this process; retry)');
    return { error: 'ERR_ADMIN_STORE_UNAVAILABLE', detail: 'the revocation could not be stored; it took effect in this process only — retry' };
  }
  log.info({ audit: true, action: 'revoke', by: 'admin', ...target, store, ip, outcome: 'revoked', ...(removed !== undefined ? { sessions: removed } : {}) },
    `admin revoke: sessions of ${sid !== undefined ? 'IdP session' : 'subject'} ended`);
  return {
    status: 200,
    body: {
      revoked: true,
      ...target,
      store,
      ...(removed !== undefined ? { sessions: removed } : {}),
      ...(store === 'cookie' ? { note: `cookie store: sessions created before now are refused through the revocation list, kept for the absolute timeout (${Math.round(runtime.config.session.absoluteTimeoutMs / 60_000)} min)` } : {}),
    },
  };
}
