// The door: one request's path through Portcullis, in order —
//   route (which upstream?) → session (who is this?) → policy (may they?) →
//   identity headers (tell the upstream) → forward (proxy).
// It is shared by the proxy catch-all, WebSocket upgrades and forward-auth (/oauth2/auth), so the
// three can never disagree. The one place that turns a decision into 302 / 401 / 403 is `answer*`.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { parseCookie } from 'cookie';
import type { Runtime } from './runtime.js';
import type { RouteConfig } from './config/index.js';
import { authorize, type Decision } from './policy/decide.js';
import type { ActiveSession } from './session/sessions.js';
import { errors, PortcullisError, asPortcullisError } from './errors.js';
import { forbiddenPage } from './pages.js';
import { forward, forwardUpgrade } from './proxy/forward.js';
import { normalizeTarget, sameAuthority } from './routing/normalize.js';
import type { HeaderBag, Principal } from './identity/headers.js';

export type Cookies = Record<string, string | undefined>;

export interface DoorRequest {
  method: string;
  host: string | undefined;
  path: string;
  query: string;
  cookies: Cookies;
  headers: HeaderBag;
}

export type Outcome =
  | { kind: 'no-route' }
  | { kind: 'allow'; route: RouteConfig; who: Principal | undefined; decision: Decision; setCookies: string[] }
  | { kind: 'unauthenticated'; route: RouteConfig; decision: Decision; setCookies: string[]; invalidToken?: PortcullisError }
  | { kind: 'forbidden'; route: RouteConfig; who: Principal; decision: Decision; setCookies: string[] };

const INVALID_TOKEN: Decision = Object.freeze({ allowed: false, reasons: Object.freeze(['user-unauthenticated'] as const) });

/** A browser session (as opposed to a bearer token's principal). */
function isSession(who: Principal | undefined): who is ActiveSession {
  return who !== undefined && 'createdAt' in who;
}

/** `Authorization: Bearer <token>` → the token, else undefined. */
function bearerToken(headers: HeaderBag): string | undefined {
  const h = headers.authorization;
  if (typeof h !== 'string' || h.length < 8 || h.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  return h.slice(7).trim() || undefined;
}

const NO_ROUTE: Outcome = Object.freeze({ kind: 'no-route' });

/** Route + session + policy. Throws only coded errors (e.g. the session store is down). */
export async function evaluate(rt: Runtime, r: DoorRequest): Promise<Outcome> {
  const table = rt.table;
  const idx = table.matcher(r.host, r.path, r.method);
  if (idx < 0) return NO_ROUTE;
  const route = table.routes[idx]!;
  // API clients on bearer routes: the token decides; no session cookie is read or created.
  if (route.bearer) {
    const token = bearerToken(r.headers);
    if (token !== undefined) {
      let claims: Record<string, unknown>;
      try {
        claims = await rt.idp.verifyBearer(token, rt.config.oidc.bearerAudiences);
      } catch (err) {
        return { kind: 'unauthenticated', route, decision: INVALID_TOKEN, setCookies: [], invalidToken: err instanceof PortcullisError ? err : asPortcullisError(err) };
      }
      const who: Principal = { claims, accessToken: token };
      const d = authorize(route, claims);
      return d.allowed ? { kind: 'allow', route, who, decision: d, setCookies: [] } : { kind: 'forbidden', route, who, decision: d, setCookies: [] };
    }
  }
  const setCookies: string[] = [];
  let session: ActiveSession | undefined;
  let lookup: Awaited<ReturnType<typeof rt.sessions.lookup>>;
  try {
    lookup = await rt.sessions.lookup(r.cookies);
  } catch (err) {
    // The session store is down: a public route still serves (without identity); others get 503.
    if (route.auth !== 'public') throw err;
    lookup = { kind: 'none' };
  }
  if (lookup.kind === 'valid') {
    session = lookup.session;
    const refreshing = rt.refreshIfDue(session, r.cookies);
    if (refreshing) {
      const o = await refreshing;
      if (o.kind === 'refreshed') { session = o.session; setCookies.push(...o.setCookies); }
      else if (o.kind === 'ended') { session = undefined; setCookies.push(...o.setCookies); }
    }
    if (session && rt.sessions.needsWrite(session)) setCookies.push(...(await rt.sessions.rewrite(session, r.cookies)));
  } else if (lookup.kind === 'expired') {
    // A cookie that is tampered, foreign, expired or revoked counts as no session, and is removed.
    setCookies.push(...rt.sessions.expireHeaders(r.cookies));
    rt.log.debug({ reason: lookup.reason }, 'session cookie not accepted');
  }
  const decision = authorize(route, session?.claims);
  if (decision.allowed) return { kind: 'allow', route, who: session, decision, setCookies };
  if (!session) return { kind: 'unauthenticated', route, decision, setCookies };
  return { kind: 'forbidden', route, who: session, decision, setCookies };
}

/** GET/HEAD asking for HTML, sent by a navigating browser: the only requests we redirect to sign in. */
export function isBrowserNavigation(method: string, headers: HeaderBag): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const mode = headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  if (headers['x-requested-with'] !== undefined) return false;
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

export function wantsHtml(headers: HeaderBag): boolean {
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

/** Every decision, whichever door it came through (proxy, WebSocket, forward-auth): metric + audit line. */
export function audit(rt: Runtime, req: FastifyRequest | undefined, o: Outcome): void {
  if (o.kind === 'no-route') return;
  const label = o.kind === 'allow' ? 'allow' : o.kind === 'forbidden' ? 'deny' : 'unauthenticated';
  rt.countDecision(o.route.name, label);
  if (o.kind === 'allow' ? rt.audit.allows : rt.audit.denials) {
    const c = o.kind === 'unauthenticated' ? undefined : o.who?.claims;
    (req?.log ?? rt.log).info({
      audit: true, route: o.route.name, decision: label,
      reason: o.kind === 'unauthenticated' && o.invalidToken ? 'invalid-token' : o.decision.reasons.join(','),
      sub: c?.sub, email: c?.email, via: o.kind !== 'unauthenticated' && o.who && !o.who.sid ? 'bearer' : undefined, ip: req?.ip,
    }, `auth decision ${label}`);
  }
}

/** Where to send a signed-out browser: straight to the IdP on publicUrl's host, else via /oauth2/start there. */
export async function signInRedirect(rt: Runtime, request: FastifyRequest, returnTo: string): Promise<{ location: string; setCookies: string[] }> {
  if (sameAuthority(rt.publicHost, request.headers.host) || rt.config.session.cookieDomain) {
    return rt.beginSignIn(request.cookies as Cookies, returnTo);
  }
  return { location: `${rt.config.publicUrl}/oauth2/start?rd=${encodeURIComponent(returnTo)}`, setCookies: [] };
}

/** The proxy catch-all handler. */
export async function proxyHandler(this: unknown, request: FastifyRequest, reply: FastifyReply, rt: Runtime): Promise<FastifyReply> {
  const target = (request.raw as TargetCarrier)[TARGET] as Extract<Target, { ok: true }>;
  const door: DoorRequest = {
    method: request.method,
    host: rt.hostOf(request),
    path: target.path,
    query: target.query,
    cookies: request.cookies as Cookies,
    headers: request.headers as HeaderBag,
  };
  // Identity headers a client sent are removed first, on every route, before anything reads them.
  rt.table.headers.strip(door.headers);
  const outcome = await evaluate(rt, door);
  audit(rt, request, outcome);
  if (outcome.kind !== 'no-route') {
    // Metrics label every answer with its route — 401s and 403s included.
    (request as RouteCarrier).portcullisRoute = outcome.route.name;
    if (outcome.setCookies.length) reply.header('set-cookie', outcome.setCookies).header('cache-control', 'no-store');
  }
  switch (outcome.kind) {
    case 'no-route':
      return reply.send(errors.noRoute());
    case 'unauthenticated':
      if (outcome.invalidToken) return answerInvalidToken(reply, outcome.invalidToken);
      return answerUnauthenticated(rt, request, reply, `${rt.originOf(request)}${target.path}${target.query}`, outcome.route.bearer);
    case 'forbidden':
      return answerForbidden(rt, request, reply, outcome.route, outcome.who);
    case 'allow': {
      const { route, who } = outcome;
      const assertion = route.assertion && who && rt.assertions
        ? await rt.assertions.assertion(route.name, route.assertion.audience, route.assertion.ttlSec, who)
        : undefined;
      const path = route.stripPrefix ? stripPrefix(target.path, route.match.path) : target.path;
      // reply-from refuses any source whose decoded text contains `/..` or `../` (its own traversal
      // guard), which a normalised path only has in names like `/..hidden` or `/wait.../x`. Say so
      // clearly instead of letting it surface as an opaque error.
      if (path.includes('..') && /(^|\/)\.\.|\.\.(\/|$)/.test(path)) {
        return reply.send(errors.badPath('a path segment that begins or ends with ".." is not supported'));
      }
      return forward(request, reply, {
        routeName: route.name,
        upstream: route.upstream,
        path,
        query: target.query,
        timeoutMs: route.timeoutMs,
        rewriteHeaders: (h) => rt.rewriteUpstreamHeaders(route, who, h, request, assertion),
        // Server-sent events live as long as a WebSocket: cut them off when the session ends too.
        onEventStream: isSession(who) ? () => rt.trackConnection(who, request.raw.socket, reply.raw) : undefined,
        onUpstreamError: (err, kind) => {
          rt.metrics.upstreamErrors.inc({ route: route.name, kind });
          request.log.warn({ route: route.name, err: err.cause instanceof Error ? err.cause.message : String(err.cause) }, `upstream ${kind}`);
        },
      });
    }
  }
}

/** RFC 6750 §3: an invalid bearer token gets its own challenge, never a sign-in redirect. */
function answerInvalidToken(reply: FastifyReply, err: PortcullisError): FastifyReply {
  return reply.code(401).header('cache-control', 'no-store')
    .header('www-authenticate', 'Bearer realm="portcullis", error="invalid_token", error_description="The access token is invalid or expired"')
    .send({ error: 'invalid_token', message: err.message });
}

export function answerUnauthenticated(rt: Runtime, request: FastifyRequest, reply: FastifyReply, returnTo: string, bearer = false): Promise<FastifyReply> | FastifyReply {
  if (isBrowserNavigation(request.method, request.headers as HeaderBag)) {
    return signInRedirect(rt, request, returnTo).then(({ location, setCookies }) => {
      if (setCookies.length) reply.header('set-cookie', [...((reply.getHeader('set-cookie') as string[] | undefined) ?? []), ...setCookies]);
      return reply.code(302).header('cache-control', 'no-store').header('location', location).send();
    });
  }
  return reply.code(401)
    .header('www-authenticate', bearer ? 'Bearer realm="portcullis"' : `OIDC realm="portcullis", sign_in_url="${rt.config.publicUrl}/oauth2/start"`)
    .header('cache-control', 'no-store')
    .send({ error: 'unauthenticated', message: 'Sign-in required. Browsers are sent to sign in; API clients must send a session cookie or (on bearer routes) a token.', signInUrl: `${rt.config.publicUrl}/oauth2/start` });
}

export function answerForbidden(rt: Runtime, request: FastifyRequest, reply: FastifyReply, route: RouteConfig, who: Principal): FastifyReply {
  reply.code(403).header('cache-control', 'no-store');
  if (wantsHtml(request.headers as HeaderBag) && who.sid) {
    const user = String(who.claims.email ?? who.claims.preferred_username ?? who.claims.sub);
    return reply.type('text/html; charset=utf-8').send(forbiddenPage({ user, route: route.name, signOutUrl: `${rt.config.publicUrl}/oauth2/sign_out` }));
  }
  return reply.send({ error: 'forbidden', message: 'You are signed in but not allowed to use this route.', route: route.name });
}

function stripPrefix(path: string, prefix: string): string {
  if (prefix === '/' || prefix === '') return path;
  const p = prefix.replace(/\/+$/, '');
  const rest = path.slice(p.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

// The normalised target rides on the raw request from rewriteUrl (before routing) to the handler.
export const TARGET = Symbol('portcullis.target');
export type Target = { ok: true; path: string; query: string } | { ok: false; reason: string };
export type TargetCarrier = IncomingMessage & { [TARGET]?: Target };
export type RouteCarrier = FastifyRequest & { portcullisRoute?: string };

/** Normalises the request target once; the result is stored for the handlers. Returns the URL fastify routes on. */
export function rewriteUrl(req: IncomingMessage): string {
  const raw = req.url ?? '/';
  const n = normalizeTarget(raw);
  if (!n.ok) {
    (req as TargetCarrier)[TARGET] = n;
    return '/oauth2/__bad_request';
  }
  if (n.authority !== undefined && !sameAuthority(n.authority, req.headers.host)) {
    (req as TargetCarrier)[TARGET] = { ok: false, reason: 'the request target names another host' };
    return '/oauth2/__bad_request';
  }
  (req as TargetCarrier)[TARGET] = { ok: true, path: n.path, query: n.query };
  return n.path + n.query;
}

/** WebSocket upgrades: the same door, then a raw pipe. Sockets are tracked per session for cut-off. */
export async function handleUpgrade(rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const reject = (status: number, body: string) => {
    if (socket.writable) socket.end(`HTTP/1.1 ${status} ${statusText(status)}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    else socket.destroy();
  };
  try {
    const n = normalizeTarget(req.url ?? '/');
    if (!n.ok) return reject(400, n.reason);
    if (n.path.startsWith('/oauth2/')) return reject(404, 'not found');
    const headers = { ...req.headers } as HeaderBag;
    rt.table.headers.strip(headers);
    const cookies = parseCookie(req.headers.cookie ?? '') as Cookies;
    const door: DoorRequest = { method: 'GET', host: rt.hostOfRaw(req), path: n.path, query: n.query, cookies, headers };
    const o = await evaluate(rt, door);
    audit(rt, undefined, o);
    if (o.kind === 'no-route') return reject(404, 'no route');
    if (!o.route.websocket) return reject(404, 'websockets are not enabled on this route');
    if (o.kind === 'unauthenticated') return reject(401, 'sign-in required');
    if (o.kind === 'forbidden') return reject(403, 'forbidden');
    const route = o.route;
    // Hop-by-hop handling for the upgrade: keep Upgrade/Connection, drop what Connection lists otherwise.
    const assertion = route.assertion && o.who && rt.assertions ? await rt.assertions.assertion(route.name, route.assertion.audience, route.assertion.ttlSec, o.who) : undefined;
    rt.rewriteUpstreamHeaders(route, o.who, headers, undefined, assertion);
    headers.connection = 'Upgrade';
    headers.upgrade = req.headers.upgrade;
    const path = route.stripPrefix ? stripPrefix(n.path, route.match.path) : n.path;
    if (isSession(o.who)) rt.trackConnection(o.who, socket);
    forwardUpgrade(req, socket, head, { upstream: route.upstream, pathAndQuery: path + n.query, headers, timeoutMs: route.timeoutMs }, (status, err) => {
      rt.metrics.upstreamErrors.inc({ route: route.name, kind: status === 504 ? 'timeout' : 'unavailable' });
      rt.log.warn({ route: route.name, err: err instanceof Error ? err.message : String(err) }, 'websocket upstream failed');
      reject(status, 'upstream unavailable');
    });
  } catch (err) {
    const e = err instanceof PortcullisError ? err : asPortcullisError(err);
    if (e.statusCode >= 500) rt.log.error({ err: e.cause ?? e }, 'websocket upgrade failed');
    reject(e.statusCode, e.message);
  }
}

function statusText(s: number): string {
  return ({ 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' } as Record<number, string>)[s] ?? 'Error';
}

