// Sign-in stage, HTTP side: Portcullis's own endpoints under /oauth2/ (never proxied, on every host):
// start, callback, sign_out, signed_out, userinfo, back-channel logout, jwks, client-jwks (forward-auth, also
// under /oauth2/, is a doorway of the pipeline: src/door/forward-auth.ts).
import type { FastifyInstance } from 'fastify';
import type { Runtime } from '../runtime.js';
import { coded, errors, PortcullisError } from '../errors.js';
import { safeRedirect } from './redirects.js';
import { chooserPage, signOutPage, signedOutPage } from '../pages.js';
import { decodeJwt } from 'jose';
import { SessionManager, type ActiveSession, type SessionRecord } from '../session/sessions.js';
import { signInTooOld, type StepUpRequirement } from '../policy/step-up.js';
import { normalizeTarget } from '../routing/normalize.js';
import type { RouteConfig } from '../config/index.js';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { SessionCodec } from '../session/codec.js';
import { cookieSettings, expireCookie, serializeCookie } from '../session/cookies.js';
import { loadClientKeys } from './client-keys.js';

type Query = Record<string, string | string[] | undefined>;
const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** A pending RP-initiated logout, sealed into a short-lived cookie: the state sent to the IdP and where to go after. */
interface LogoutTransaction { t: 'logout'; state: string; rd: string | undefined; createdAt: number }
/** How long the IdP's end-session page may take (its confirmation included) for the redirect to `rd` to happen. */
const LOGOUT_TTL_MS = 10 * 60_000;

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * What a sign-in started at `/oauth2/start` asks for: the step-up (acr_values, max_age) of the
 * route named by `step_up`, or else of the route the return URL `rd` belongs to — so a forward-auth
 * proxy's plain `/oauth2/start?rd=<original URL>` (nginx's `@signin`, Traefik's errors middleware)
 * steps up for a step-up route instead of looping through plain sign-ins — plus `prompt=login` when
 * the browser's session is too old for it (the door's own check). Only a route's name or a URL
 * travels, never the values: what is asked for is the configuration's. An unknown name (a route
 * removed by a reload since the link was made) asks for nothing extra.
 */
async function stepUpFor(rt: Runtime, name: string | undefined, rd: string, cookies: Record<string, string | undefined>): Promise<{ stepUp: StepUpRequirement; promptLogin: boolean } | undefined> {
  const stepUp = name !== undefined ? rt.table.routes.find((r) => r.name === name)?.stepUp : routeOfReturn(rt, rd)?.stepUp;
  if (!stepUp) return undefined;
  let promptLogin = false;
  if (stepUp.freshForMs !== undefined) {
    const lookup = await rt.sessions.lookup(cookies).catch(() => undefined);
    promptLogin = lookup?.kind === 'valid' && signInTooOld(stepUp, lookup.session.claims, rt.now());
  }
  return { stepUp, promptLogin };
}

/** The route a (checked) return URL leads to, as a navigation to it would be matched. */
function routeOfReturn(rt: Runtime, rd: string): RouteConfig | undefined {
  let u: URL;
  try { u = new URL(rd); } catch { return undefined; }
  const n = normalizeTarget(u.pathname);
  if (!n.ok) return undefined;
  const i = rt.table.matcher(u.host, n.path, 'GET');
  return i < 0 ? undefined : rt.table.routes[i];
}

/**
 * The browser's valid session when it is the same user's as the new sign-in (same `iss` and `sub`):
 * the new tokens and claims then replace the old ones IN that session — same Portcullis session id,
 * so revocation, the admin listing and live WebSockets keep finding it, and the user stays signed
 * in to every other route. Its `createdAt` is kept: `session.absoluteTimeout` bounds a session id's
 * life however often it is upgraded (and a revocation of that id is kept as long). Another user, or
 * no readable session, gets a brand-new session with a new id — identities are never merged, and a
 * planted cookie cannot fix the id of someone else's session.
 */
async function sameUserSession(rt: Runtime, cookies: Record<string, string | undefined>, claims: Record<string, unknown>, provider: string): Promise<ActiveSession | undefined> {
  if (rt.sessions.cookieValue(cookies) === undefined) return undefined;
  const lookup = await rt.sessions.lookup(cookies).catch(() => undefined);
  if (lookup?.kind !== 'valid' || lookup.session.provider !== provider) return undefined;
  const c = lookup.session.claims;
  return typeof c.sub === 'string' && c.sub === claims.sub && c.iss === claims.iss ? lookup.session : undefined;
}

export async function registerSignInEndpoints(app: FastifyInstance, rt: Runtime): Promise<void> {
  // Its own key (purpose) and cookie name (`<session cookie>_logout`, stripped before upstreams).
  const logoutCodec = new SessionCodec(rt.config.session.secrets, 'portcullis logout v1');
  const settings = cookieSettings(rt.config.publicUrl, rt.config.session.cookieName, rt.config.session.cookieDomain);
  const logoutCookie = { settings, name: `${settings.session}_logout` };
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  // Sign in: `?provider=ID` at that provider (unknown id: 400); one provider configured, or one
  // offered: at it; otherwise the chooser, offering those of `?providers=a,b` (the route's, from
  // door/respond.ts) or all. `providers` only filters the page: whichever provider the browser
  // signs in with, each route still accepts only its own.
  app.get<{ Querystring: Query }>('/oauth2/start', async (request, reply) => {
    const rd = safeRedirect(one(request.query.rd), rt.redirects);
    const stepUpName = one(request.query.step_up);
    const asked = one(request.query.provider);
    let provider = asked === undefined ? undefined : rt.providers.get(asked);
    if (asked !== undefined && !provider) throw errors.providerUnknown(asked);
    if (!provider) {
      const wanted = one(request.query.providers)?.split(',');
      const offered = rt.providers.all.filter((p) => wanted?.includes(p.id) ?? true);
      const choices = offered.length > 0 ? offered : rt.providers.all;
      if (choices.length === 1) provider = choices[0];
      else {
        const page = chooserPage({ providers: choices.map((p) => ({ name: p.config.displayName, hint: p.config.domainHint, href: `/oauth2/start?provider=${p.id}${stepUpName !== undefined ? `&step_up=${encodeURIComponent(stepUpName)}` : ''}&rd=${encodeURIComponent(rd)}` })) });
        return reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(page);
      }
    }
    const { location, setCookies } = await rt.beginSignIn(request.cookies, rd, provider!, await stepUpFor(rt, stepUpName, rd, request.cookies));
    return reply.code(302).header('set-cookie', setCookies).header('cache-control', 'no-store').header('location', location).send();
  });

  app.get<{ Querystring: Query }>('/oauth2/callback', async (request, reply) => {
    const q = request.query;
    const cookies = request.cookies;
    const found = rt.txns.finish(cookies, one(q.state));
    reply.header('cache-control', 'no-store');
    if (!found.ok) {
      rt.metrics.transactionsRejected.inc({ reason: found.reason });
      rt.metrics.logins.inc({ result: found.reason === 'missing-state' ? 'ERR_CALLBACK_STATE_MISSING' : 'ERR_CALLBACK_STATE_MISMATCH', provider: '' });
      if (found.clear) reply.header('set-cookie', [found.clear]);
      const idpError = one(q.error);
      // An IdP error without a matching transaction is still worth showing in its own words.
      throw found.reason === 'missing-state'
        ? (idpError ? errors.callbackIdpError(idpError, one(q.error_description)) : errors.callbackNoState())
        : errors.callbackUnknownState(new Error(`transaction ${found.reason}`));
    }
    const { txn } = found;
    const rawQuery = request.raw.url!.includes('?') ? request.raw.url!.slice(request.raw.url!.indexOf('?')) : '';
    // The code is redeemed at the provider the sign-in was started at (sealed in the transaction),
    // and only there: a code or ID token from another provider fails its checks (issuer, audience,
    // signature, nonce). One callback URL for every provider; RFC 9207's `iss` parameter, when the
    // IdP sends one, must be this provider's issuer (openid-client checks it).
    const provider = rt.providers.get(txn.provider ?? rt.providers.first.id);
    if (!provider) {
      rt.metrics.logins.inc({ result: 'ERR_CALLBACK_STATE_MISMATCH', provider: '' });
      reply.header('set-cookie', [found.clear]);
      throw errors.callbackUnknownState(new Error(`the sign-in was started at provider "${txn.provider}", which is no longer configured`));
    }
    try {
      const result = await provider.idp.completeSignIn(rawQuery, txn);
      const now = rt.now();
      // The same user of the same provider signing in again (a step-up, or /oauth2/start by hand)
      // upgrades the session they have: see sameUserSession. Anyone else — another user, or the
      // same name at another provider — gets a new session that replaces the browser's: identities
      // are never merged.
      const current = await sameUserSession(rt, cookies, result.claims, provider.id);
      const record: SessionRecord = {
        v: 1,
        sid: current?.sid ?? SessionManager.newSid(),
        provider: provider.id,
        claims: result.claims,
        idToken: result.idToken,
        accessToken: result.accessToken,
        refreshToken: result.refreshToken,
        tokenExpiresAt: result.tokenExpiresAt,
        tokenIssuedAt: result.tokenExpiresAt === undefined ? undefined : now,
        createdAt: current?.createdAt ?? now,
        seenAt: now,
        groupsUnavailable: result.groupsUnavailable,
      };
      const sessionCookies = current ? await rt.sessions.upgrade(current, record, cookies) : await rt.sessions.create(record, cookies);
      rt.metrics.logins.inc({ result: 'success', provider: provider.id });
      request.log.info({ provider: provider.id, sub: result.claims.sub, email: result.claims.email, acr: result.claims.acr, upgraded: current !== undefined || undefined }, current ? 'signed in again: session upgraded in place' : 'signed in');
      return reply.code(302).header('set-cookie', [found.clear, ...sessionCookies])
        .header('location', safeRedirect(txn.returnTo, rt.redirects)).send();
    } catch (err) {
      const e = err instanceof PortcullisError ? err : errors.idpBadResponse(err);
      rt.metrics.logins.inc({ result: e.code, provider: provider.id });
      reply.header('set-cookie', [found.clear]);
      request.retryTo = txn.returnTo;
      throw e;
    }
  });

  app.get<{ Querystring: Query }>('/oauth2/sign_out', async (request, reply) => {
    const lookup = await rt.sessions.lookup(request.cookies);
    const user = lookup.kind === 'valid' ? String(lookup.session.claims.email ?? lookup.session.claims.preferred_username ?? lookup.session.sub) : undefined;
    const rd = one(request.query.rd) ?? '';
    return reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(signOutPage({ user, action: '/oauth2/sign_out', rd }));
  });

  app.post('/oauth2/sign_out', async (request, reply) => {
    // CSRF: a cross-site page must not be able to sign anyone out (or clear their cookies).
    const origin = request.headers.origin;
    const site = request.headers['sec-fetch-site'];
    if ((origin !== undefined && origin !== 'null' && origin !== rt.redirects.origin && origin !== rt.origin.originOf(rt.origin.inbound(request.raw, { path: '', query: '' }))) || origin === 'null' || site === 'cross-site') {
      throw errors.signOutCrossSite();
    }
    const cookies = request.cookies;
    const body = (request.body ?? {}) as Record<string, string>;
    const lookup = await rt.sessions.lookup(cookies);
    let idToken: string | undefined;
    // RP-initiated logout at the session's provider; without a session, at the only provider (several: none).
    const idp = lookup.kind === 'valid' ? rt.providers.get(lookup.session.provider)?.idp
      : rt.providers.all.length === 1 ? rt.providers.first.idp : undefined;
    if (lookup.kind === 'valid') {
      const record = await rt.sessions.record(lookup.session, cookies);
      idToken = record?.idToken;
      if (record?.refreshToken) await idp?.revoke(record.refreshToken);
      rt.connections.endSession(lookup.session.sid);
      // Expiring the cookie is not enough: a copy taken before (another tab's request in flight, a
      // stolen or shared cookie) must be refused too. With the cookie store nothing can be deleted,
      // so the session's own id goes on the revocation list (shared through Redis, relayed to workers).
      await rt.revokeSessions({ psid: lookup.session.sid }, 'sign_out').catch((err: unknown) => {
        request.log.warn({ sub: lookup.session.sub, err: err instanceof Error ? err.message : String(err) }, 'sign-out: the revocation could not be shared with other replicas (ended here and on this process\'s workers)');
      });
      request.log.info({ sub: lookup.session.sub }, 'signed out');
    }
    const setCookies = await rt.sessions.destroy(cookies);
    const rd = body.rd ? safeRedirect(body.rd, rt.redirects) : undefined;
    const signedOut = `${rt.config.publicUrl}/oauth2/signed_out`;
    // RP-initiated logout: the IdP comes back to /oauth2/signed_out with a `state` bound to this
    // browser by a short-lived sealed cookie, which also carries where to go next (`rd`). Without
    // that cookie and its state, /oauth2/signed_out redirects nowhere.
    const state = idp?.hasEndSession ? randomBytes(24).toString('base64url') : undefined;
    const endSession = state ? idp?.endSessionUrl(idToken, signedOut, state) : undefined;
    const location = endSession ?? rd ?? signedOut;
    if (endSession && state) {
      const pending: LogoutTransaction = { t: 'logout', state, rd, createdAt: rt.now() };
      setCookies.push(serializeCookie(logoutCookie.settings, logoutCookie.name, logoutCodec.seal(logoutCookie.name, pending), LOGOUT_TTL_MS / 1000));
    }
    return reply.code(303).header('set-cookie', setCookies).header('cache-control', 'no-store').header('location', location).send();
  });

  // OIDC Back-Channel Logout 1.0: the IdP tells us a user's (or one IdP session's) sign-out.
  // Refusals (400: §2.8) and failures answer the one error shape plus `error_description`, a copy of
  // `message`: §2.8 says the RP "MAY" answer with OAuth 2.0 error fields, without fixing a
  // vocabulary for `error`; IdPs that log a refusal log `error_description`, and our own clients
  // and dashboards read `error` as the registry's code like everywhere else (errorBody: 'oauth',
  // answered by app.ts's error handler, also for body-parser failures on this route).
  app.post('/oauth2/backchannel_logout', { config: { errorBody: 'oauth' } }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const token = ((request.body ?? {}) as Record<string, string>).logout_token;
    if (typeof token !== 'string' || token.length === 0 || token.length > 16 * 1024) throw coded('ERR_LOGOUT_TOKEN_MISSING');
    // The provider is the one whose configured issuer is the token's `iss` (read unverified, only to
    // choose; exact match, configured issuers only); its keys and client id then verify the token.
    // Verification errors are coded (400; 503 while the IdP's keys cannot be loaded).
    let iss: unknown;
    try { iss = decodeJwt(token).iss; } catch (err) { throw coded('ERR_LOGOUT_TOKEN_INVALID', { cause: err }); }
    const provider = rt.providers.byIssuer(iss);
    if (!provider) throw coded('ERR_LOGOUT_TOKEN_INVALID', { cause: new Error(`iss ${JSON.stringify(String(iss)).slice(0, 100)} is not a configured provider's issuer`) });
    const t = await provider.idp.verifyLogoutToken(token);
    // Its sid or sub end that provider's sessions only; its jti is that IdP's (the first provider's
    // keep the replay key they always had).
    const jti = provider === rt.providers.first ? t.jti : `${provider.id}@${t.jti}`;
    // The token counts as used only once its revocation is stored (shared through Redis when
    // configured): when the store fails, the answer is 503 and the IdP's retry is served — a
    // store error is never reported as the IdP's (nor as a replay on the retry).
    let used: boolean;
    try {
      used = await rt.markLogoutTokenUsed(jti, t.exp, () => rt.revokeSessions({ sid: t.sid, sub: t.sid ? undefined : t.sub, provider: provider.id }, 'backchannel_logout'));
    } catch (err) {
      // (Logged with its cause by the error handler; the sessions have still ended on this process.)
      throw errors.logoutNotStored(err instanceof PortcullisError && err.cause !== undefined ? err.cause : err);
    }
    if (!used) throw coded('ERR_LOGOUT_TOKEN_REPLAYED');
    request.log.info({ provider: provider.id, sid: t.sid, sub: t.sub }, 'back-channel logout');
    return reply.code(200).send();
  });

  // Public keys that verify X-Portcullis-Assertion.
  app.get('/oauth2/jwks.json', async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(rt.assertions?.jwks() ?? { keys: [] }));

  // private_key_jwt: the public parts of oidc.clientKeysFile's keys, for the client's jwks_uri at the
  // IdP (an empty set with another client authentication). The same cache lifetime as jwks.json:
  // an IdP that honours it refetches within 5 minutes (oidc-provider: after max(60 s, max-age), or
  // at once on an assertion whose key it lacks once that has passed).
  // With several providers: every provider's public keys in one set (each IdP registers this one
  // URL; a public key is no secret, and each assertion names its own IdP as audience).
  const clientKeys = rt.config.providers.flatMap((p) => p.clientKeys);
  app.get('/oauth2/client-jwks.json', async (_request, reply) => reply.header('cache-control', 'public, max-age=300')
    .send(clientKeys.length > 0 ? (await loadClientKeys(clientKeys)).jwks : { keys: [] }));

  // Back from RP-initiated logout. Only this browser's own pending logout (sealed cookie) whose
  // state the IdP echoed redirects on, to its `rd` (checked again); a missing or foreign state, an
  // expired cookie or none at all shows the signed-out page.
  app.get<{ Querystring: Query }>('/oauth2/signed_out', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const raw = (request.cookies)[logoutCookie.name];
    if (raw !== undefined) reply.header('set-cookie', [expireCookie(logoutCookie.settings, logoutCookie.name)]);
    const state = one(request.query.state);
    const pending = raw === undefined ? undefined : logoutCodec.open<LogoutTransaction>(logoutCookie.name, raw)?.value;
    if (state && pending?.t === 'logout' && typeof pending.state === 'string' && sameString(pending.state, state)
      && rt.now() - pending.createdAt <= LOGOUT_TTL_MS && typeof pending.rd === 'string') {
      return reply.code(303).header('location', safeRedirect(pending.rd, rt.redirects)).send();
    }
    if (state) request.log.info({ pendingLogout: pending?.t === 'logout' }, 'signed_out: the state is not this browser\'s pending logout (or it expired): not redirecting');
    return reply.type('text/html; charset=utf-8').send(signedOutPage());
  });

  app.get('/oauth2/userinfo', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const lookup = await rt.sessions.lookup(request.cookies);
    if (lookup.kind !== 'valid') {
      reply.header('www-authenticate', `OIDC realm="portcullis", sign_in_url="${rt.config.publicUrl}/oauth2/start"`);
      throw coded('unauthenticated');
    }
    const c = lookup.session.claims;
    return reply.send({ sub: c.sub, email: c.email, email_verified: c.email_verified, name: c.name, preferred_username: c.preferred_username, groups: c.groups });
  });
}
