// The door's decision: route (which upstream?) → session (who is this?) → policy (may they?), as one
// `Outcome` value. Every doorway — plain requests, WebSocket upgrades, forward-auth — asks this one
// function. A cache miss, a refresh, a re-seal or a bearer token are steps inside it, not reasons to
// take another path: the commonest request (a cached session with nothing due, or no session on a
// public route) is decided synchronously, everything else asynchronously, by the same code below.
import type { RouteConfig } from '../config/index.js';
import { authorize, type Decision } from '../policy/decide.js';
import { stepUpShortfall } from '../policy/step-up.js';
import type { ActiveSession } from '../session/sessions.js';
import { PortcullisError, asPortcullisError, coded } from '../errors.js';
import { decodeJwt } from 'jose';
import type { Provider } from '../signin/providers.js';
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
 * The one place a policy decision becomes an Outcome. A principal of a provider the route does not
 * accept is no one here: the request is decided as signed out (sign in with one of the route's
 * providers; 401 for APIs) — never merged with, nor denied as, another identity. The session's
 * cookie stays: it is still valid on the routes that accept its provider. A route with `stepUp`
 * then asks whether the admitted user's sign-in is strong and recent enough (its acr Set and max
 * age were compiled at boot; `rt.now()` is the runtime's clock, which tests move); routes without
 * it pay one check.
 */
function decide(rt: Runtime, route: RouteConfig, principal: (Principal & { provider: string }) | undefined, setCookies: string[]): Outcome {
  const who = principal !== undefined && route.providers.has(principal.provider) ? principal : undefined;
  const decision = authorize(route, who?.claims, who?.provider);
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
  const cached = rt.sessions.peek(r.cookies, r.memo);
  if (cached) {
    // (A session this route does not accept is not refreshed or rewritten on its behalf.)
    if ((!rt.sessions.needsWrite(cached) && !rt.refresher.isDue(cached)) || !route.providers.has(cached.provider)) return decide(rt, route, cached, NO_COOKIES);
  } else if (rt.sessions.cookieValue(r.cookies) === undefined) {
    return decide(rt, route, undefined, NO_COOKIES);
  }
  return withSession(rt, route, r);
}

async function withBearer(rt: Runtime, route: RouteConfig, token: string): Promise<Outcome> {
  let claims: Record<string, unknown>;
  let provider: Provider;
  try {
    // `introspect`, or an opaque token on `jwt-then-introspect`: asked at the IdP (cached); else a JWT verified here.
    const introspect = route.bearer === 'introspect' || (route.bearer === 'jwt-then-introspect' && !isJwt(token));
    provider = bearerProvider(rt, route, token, introspect);
    claims = introspect
      ? await provider.introspector.check(token)
      : await provider.idp.verifyBearer(token, provider.config.bearerAudiences);
  } catch (err) {
    const e = asPortcullisError(err);
    // The IdP could not say (unreachable, too slow, no introspection endpoint): this request gets
    // that 5xx — never an allow, and not a 401 that would tell the client its token is bad.
    if (e.statusCode >= 500) throw e;
    return { kind: 'unauthenticated', route, decision: INVALID_TOKEN, setCookies: [], invalidToken: e };
  }
  return decide(rt, route, { claims, accessToken: token, provider: provider.id }, []);
}

/**
 * Which of the route's providers checks a bearer token. An opaque token names no issuer: it goes
 * to the route's one provider (config check: an introspecting route names exactly one), never to
 * several IdPs in turn (that would hand one IdP's tokens to another). A JWT on a route of several
 * providers is matched by its `iss` — read unverified, ONLY to choose — against the configured
 * issuers of the route's providers, exactly; no match is invalid_token, and the chosen provider then
 * verifies everything (signature with its keys, `iss` again, audience, type). A provider without
 * bearerAudiences accepts no bearer token (there is no "any audience").
 */
function bearerProvider(rt: Runtime, route: RouteConfig, token: string, introspect: boolean): Provider {
  let p: Provider | undefined;
  if (introspect || route.providers.size === 1) {
    p = rt.providers.get(route.providers.values().next().value ?? '');
  } else {
    let iss: unknown;
    try { iss = decodeJwt(token).iss; } catch (err) { throw coded('invalid_token', { cause: err }); }
    p = rt.providers.byIssuer(iss);
    if (p && !route.providers.has(p.id)) p = undefined;
    if (!p) throw coded('invalid_token', { cause: new Error(`the token's iss ${JSON.stringify(String(iss)).slice(0, 100)} is not the issuer of a provider this route accepts`) });
  }
  if (!p || p.config.bearerAudiences.length === 0) throw coded('invalid_token', { cause: new Error(`provider ${p?.id ?? '(none)'} takes no bearer tokens on this route (no bearerAudiences)`) });
  return p;
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
    const lookup = await rt.sessions.lookup(r.cookies, r.memo);
    if (lookup.kind === 'valid') {
      session = lookup.session;
      if (!route.providers.has(session.provider)) return decide(rt, route, undefined, setCookies);
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
