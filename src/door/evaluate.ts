// The door's decision: route (which upstream?) → session (who is this?) → policy (may they?), as one
// `Outcome` value. Every doorway — plain requests, WebSocket upgrades, forward-auth — asks this one
// function. A cache miss, a refresh, a re-seal or a bearer token are steps inside it, not reasons to
// take another path: the commonest request (a cached session with nothing due, or no session on a
// public route) is decided synchronously, everything else asynchronously, by the same code below.
import type { RouteConfig } from '../config/index.js';
import { authorize, type Decision } from '../policy/decide.js';
import { stepUpShortfall } from '../policy/step-up.js';
import type { ActiveSession } from '../session/sessions.js';
import { PortcullisError, asPortcullisError } from '../errors.js';
import type { HeaderBag, Principal } from '../identity/headers.js';
import type { Inbound } from '../routing/origin.js';
import type { Outcome } from './outcome.js';

export type { Outcome };
import type { Runtime } from '../runtime.js';
import { isJwt } from '../signin/introspection.js';

const NO_ROUTE: Outcome = Object.freeze({ kind: 'no-route' });
const NO_COOKIES: string[] = [];
const INVALID_TOKEN: Decision = Object.freeze({ allowed: false, reasons: Object.freeze(['user-unauthenticated'] as const) });

/** A browser session (as opposed to a bearer token's principal). */
export function isSession(who: Principal | undefined): who is ActiveSession {
  return who !== undefined && 'createdAt' in who;
}

/** `Authorization: Bearer <token>` → the token, else undefined. */
function bearerToken(headers: HeaderBag): string | undefined {
  const h = headers.authorization;
  if (typeof h !== 'string' || h.length < 8 || h.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  return h.slice(7).trim() || undefined;
}

/**
 * The one place a policy decision becomes an Outcome. A route with `stepUp` then asks whether the
 * admitted user's sign-in is strong and recent enough (its acr Set and max age were compiled at
 * boot; `rt.now()` is the runtime's clock, which tests move); routes without it pay one check.
 */
function decide(rt: Runtime, route: RouteConfig, who: Principal | undefined, setCookies: string[]): Outcome {
  const decision = authorize(route, who?.claims);
  if (decision.allowed) {
    if (route.stepUp !== undefined && who !== undefined) {
      const shortfall = stepUpShortfall(route.stepUp, who.claims, rt.now());
      if (shortfall !== undefined) return { kind: 'step-up', route, who, decision, setCookies, shortfall };
    }
    return { kind: 'allow', route, who, decision, setCookies };
  }
  if (!who) return { kind: 'unauthenticated', route, decision, setCookies };
  return { kind: 'forbidden', route, who, decision, setCookies };
}

/** Route + session + policy. Throws (or rejects) only with coded errors (e.g. the session store is down). */
export function evaluate(rt: Runtime, r: Inbound): Outcome | Promise<Outcome> {
  const table = rt.table;
  const idx = table.matcher(r.host, r.path, r.method);
  if (idx < 0) return NO_ROUTE;
  const route = table.routes[idx]!;
  // API clients on bearer routes: the token decides; no session cookie is read or created.
  if (route.bearer) {
    const token = bearerToken(r.headers as HeaderBag);
    if (token !== undefined) return withBearer(rt, route, token);
  }
  // A verified session in the cache with nothing due (no refresh, no re-seal): no I/O to wait for.
  const cached = rt.sessions.peek(r.cookies);
  if (cached) {
    if (!rt.sessions.needsWrite(cached) && !rt.refresher.isDue(cached)) return decide(rt, route, cached, NO_COOKIES);
  } else if (rt.sessions.cookieValue(r.cookies) === undefined) {
    return decide(rt, route, undefined, NO_COOKIES);
  }
  return withSession(rt, route, r);
}

async function withBearer(rt: Runtime, route: RouteConfig, token: string): Promise<Outcome> {
  let claims: Record<string, unknown>;
  try {
    // `introspect`, or an opaque token on `jwt-then-introspect`: asked at the IdP (cached); else a JWT verified here.
    claims = route.bearer === 'introspect' || (route.bearer === 'jwt-then-introspect' && !isJwt(token))
      ? await rt.introspector.check(token)
      : await rt.idp.verifyBearer(token, rt.config.oidc.bearerAudiences);
  } catch (err) {
    const e = asPortcullisError(err);
    // The IdP could not say (unreachable, too slow, no introspection endpoint): this request gets
    // that 5xx — never an allow, and not a 401 that would tell the client its token is bad.
    if (e.statusCode >= 500) throw e;
    return { kind: 'unauthenticated', route, decision: INVALID_TOKEN, setCookies: [], invalidToken: e };
  }
  return decide(rt, route, { claims, accessToken: token }, []);
}

/**
 * The session steps that may wait: open the cookie (cache miss), refresh due tokens, persist the
 * last-seen time or re-seal with the current key. When the session store fails, a public route
 * still serves (without identity); others answer 503.
 */
async function withSession(rt: Runtime, route: RouteConfig, r: Inbound): Promise<Outcome> {
  const setCookies: string[] = [];
  let session: ActiveSession | undefined;
  try {
    const lookup = await rt.sessions.lookup(r.cookies);
    if (lookup.kind === 'valid') {
      session = lookup.session;
      const refreshing = rt.refresher.ifDue(session, r.cookies);
      if (refreshing) {
        const o = await refreshing;
        if (o.kind === 'refreshed') { session = o.session; setCookies.push(...o.setCookies); }
        else if (o.kind === 'ended') { session = undefined; setCookies.push(...o.setCookies); }
      }
      if (session && rt.sessions.needsWrite(session)) setCookies.push(...(await rt.sessions.rewrite(session, r.cookies)));
    } else if (lookup.kind === 'expired') {
      // A cookie that is tampered, foreign, expired or revoked counts as no session, and is removed.
      setCookies.push(...rt.sessions.expireHeaders(r.cookies));
      rt.log.debug({ reqId: r.id, reason: lookup.reason }, 'session cookie not accepted');
    }
  } catch (err) {
    if (route.auth !== 'public' || !(err instanceof PortcullisError) || err.code !== 'ERR_SESSION_STORE_UNAVAILABLE') throw err;
    // The store failed at lookup (no session known) or while refreshing/persisting a valid one
    // (served as it is; the write is retried on a later request).
    rt.log.debug({ reqId: r.id, route: route.name }, 'session store unavailable: public route served');
  }
  return decide(rt, route, session, setCookies);
}
