// The door's answers: the one place a decision or a failure becomes a response — 302 to sign in,
// 401, 403, 404, 429, 5xx — for every doorway. An `Answer` is a value (status, headers, body);
// each doorway only writes it (to a ServerResponse, or raw to an upgrading socket). One JSON error
// shape everywhere: `{ "error": CODE, "message": …, "requestId": … }` (plus `signInUrl` / `route`
// where they help), codes from the one registry (src/errors.ts); an HTML page instead when the
// client's Accept prefers text/html. Portcullis's own endpoints (Fastify) answer errors here too.
import { LRUCache } from 'lru-cache';
import Negotiator from 'negotiator';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { coded, errors, type PortcullisError } from '../errors.js';
import { forbiddenPage, renderError } from '../pages.js';
import { sameAuthority } from '../routing/normalize.js';
import type { Inbound } from '../routing/origin.js';
import type { Runtime } from '../runtime.js';
import type { Outcome } from './outcome.js';
import { isSession } from './evaluate.js';
import { groupsUnavailableText } from '../signin/group-overage.js';
import type { RouteConfig } from '../config/index.js';
import { describeStepUp, signInTooOld, type StepUpRequirement } from '../policy/step-up.js';

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  /** '' for none. */
  readonly body: string;
}

const MEDIA = ['application/json', 'text/html'];
/**
 * Answers for Accept values seen lately: a browser sends the same one on every navigation, and
 * negotiating it was ~4 % of a no-session 302's CPU. Bounded, as a client can send any value: at
 * most 256 values of up to 1 KB (a longer one is negotiated every time).
 */
const htmlPreferred = new LRUCache<string, boolean>({ max: 256 });
const CACHED_ACCEPT_MAX = 1024;
/** Whether the client prefers an HTML page to JSON (RFC 9110 §12.5.1 weights; no Accept or `*​/*` → JSON). */
export function prefersHtml(accept: string | string[] | undefined): boolean {
  if (accept === undefined) return false;
  const a = Array.isArray(accept) ? accept.join(', ') : accept;
  let html = htmlPreferred.get(a);
  if (html === undefined) {
    html = new Negotiator({ headers: { accept: a } }).mediaType(MEDIA) === 'text/html';
    if (a.length <= CACHED_ACCEPT_MAX) htmlPreferred.set(a, html);
  }
  return html;
}

/**
 * GET/HEAD preferring HTML, sent by a navigating browser: the only requests sent to sign in by
 * redirect. Never an upgrade (a WebSocket cannot follow one; browsers send Sec-Fetch-Mode:
 * websocket, but a client that does not must not be redirected either).
 */
export function isBrowserNavigation(method: string, headers: IncomingHttpHeaders): boolean {
  return (method === 'GET' || method === 'HEAD') && isPageRequest(headers);
}

/** A browser loading a page (any method: a form post too), not a script's request or an upgrade: an HTML answer is read by a person. */
function isPageRequest(headers: IncomingHttpHeaders): boolean {
  if (headers.upgrade !== undefined) return false;
  const mode = headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  if (headers['x-requested-with'] !== undefined) return false;
  return prefersHtml(headers.accept);
}

/** What an error answer may add to the coded error. */
export interface ErrorAnswerExtras {
  /** A "sign in again" link (page) / `signInUrl` (JSON). */
  signInUrl?: string;
  setCookies?: string[];
  /** Extra response headers (WWW-Authenticate). */
  headers?: Record<string, string>;
  /** Extra JSON fields after `message` (`route`, the back-channel logout's `error_description`). */
  fields?: Record<string, string>;
  /** JSON whatever the Accept header prefers (API-only answers: a browser gets a redirect or a page elsewhere). */
  json?: boolean;
}

/**
 * A coded error as an answer: the error page for browsers, otherwise the one JSON shape
 * `{ "error": CODE, "message": …, "requestId": … }` (docs/errors.md). Every error answer names its
 * request id in `X-Request-Id` too, the id the log lines about it carry.
 */
export function errorAnswer(e: PortcullisError, r: { id: string; headers: IncomingHttpHeaders }, extra: ErrorAnswerExtras = {}): Answer {
  const headers: Record<string, string | string[]> = { 'cache-control': 'no-store', 'x-request-id': r.id, ...extra.headers };
  if (e.retryAfter) headers['retry-after'] = String(e.retryAfter);
  if (extra.setCookies?.length) headers['set-cookie'] = extra.setCookies;
  const { type, body } = renderError(e, !extra.json && prefersHtml(r.headers.accept), r.id, extra.signInUrl, extra.fields);
  headers['content-type'] = type;
  return { status: e.statusCode, headers, body };
}

// The door's decision answers, made once: they carry no cause, and building an Error (its stack)
// on every refused request would cost the hot path for nothing.
const UNAUTHENTICATED = coded('unauthenticated');
const FORBIDDEN = coded('forbidden');
const INVALID_TOKEN = coded('invalid_token');
/** One insufficient_user_authentication error per step-up requirement (its message names what is needed). */
const INSUFFICIENT = new WeakMap<StepUpRequirement, PortcullisError>();
function insufficient(req: StepUpRequirement): PortcullisError {
  let e = INSUFFICIENT.get(req);
  if (!e) INSUFFICIENT.set(req, (e = coded('insufficient_user_authentication', { detail: describeStepUp(req) })));
  return e;
}

/** Where the doorway's answers differ: a reverse proxy redirects browsers; forward-auth never does. */
export type AnswerMode = 'proxy' | 'forward-auth';

/**
 * Every outcome but `allow` as an answer. Async only for a browser sent to sign in (the IdP's
 * authorization URL needs discovery). `returnTo`: the URL to come back to after signing in.
 */
export function outcomeAnswer(rt: Runtime, r: Inbound, o: Exclude<Outcome, { kind: 'allow' }>, mode: AnswerMode, returnTo: string): Answer | Promise<Answer> {
  if (o.kind === 'no-route') return errorAnswer(errors.noRoute(), r);
  if (o.kind === 'step-up') return stepUpAnswer(rt, r, o, mode, returnTo);
  const setCookies = o.setCookies;
  // A route with stepUp asks for it at the first sign-in already (acr_values, max_age), so the
  // user signs in once, not twice; never prompt=login here: there is no session to be too old.
  const signInUrl = startUrl(rt, o.route);
  if (o.kind === 'forbidden') {
    // A session whose groups the IdP announced but could not be fetched (Entra ID group overage): say so.
    const note = isSession(o.who) ? groupsUnavailableText(o.who.groupsUnavailable) : undefined;
    if (mode === 'proxy' && o.who.sid && prefersHtml(r.headers.accept)) {
      const c = o.who.claims;
      const user = String(c.email ?? c.preferred_username ?? c.sub);
      const headers: Record<string, string | string[]> = { 'cache-control': 'no-store', 'x-request-id': r.id, 'content-type': 'text/html; charset=utf-8' };
      if (setCookies.length) headers['set-cookie'] = setCookies;
      return { status: 403, headers, body: forbiddenPage({ user, route: o.route.name, signOutUrl: `${rt.config.publicUrl}/oauth2/sign_out`, note }) };
    }
    return errorAnswer(FORBIDDEN, r, { setCookies, fields: note ? { route: o.route.name, groupsUnavailable: note } : { route: o.route.name }, json: true });
  }
  // RFC 6750 §3: an invalid bearer token gets its own challenge, never a sign-in redirect.
  if (o.invalidToken) {
    const www = 'Bearer realm="portcullis", error="invalid_token", error_description="The access token is invalid or expired"';
    return errorAnswer(o.invalidToken.code === 'invalid_token' ? o.invalidToken : INVALID_TOKEN, r, { setCookies, headers: { 'www-authenticate': www }, json: true });
  }
  if (mode === 'proxy' && isBrowserNavigation(r.method, r.headers)) return signInRedirect(rt, r, returnTo, o.route, false, setCookies);
  const www = o.route.bearer && mode === 'proxy' ? 'Bearer realm="portcullis"' : `OIDC realm="portcullis", sign_in_url="${signInUrl}"`;
  return errorAnswer(UNAUTHENTICATED, r, {
    setCookies,
    headers: { 'www-authenticate': www },
    signInUrl: mode === 'forward-auth' ? withReturn(signInUrl, returnTo) : signInUrl,
    json: true,
  });
}

/**
 * A user the route admits, whose sign-in is not strong (acr) or recent (max age) enough for its
 * `stepUp`. A navigating browser is sent to the IdP with `acr_values` and `max_age`, plus
 * `prompt=login` when the sign-in is too old — without it an IdP may answer from its own SSO
 * session, as old as before, and the callback would have to refuse it. Everything else (API
 * clients, XHR, WebSocket upgrades, forward-auth) gets 401 with RFC 9470's challenge:
 * `error="insufficient_user_authentication"`, `acr_values`, `max_age` — in the `Bearer` scheme
 * for a bearer token (never redirected: an API client), in the `OIDC` scheme with a `sign_in_url`
 * that steps up for a session.
 */
function stepUpAnswer(rt: Runtime, r: Inbound, o: Extract<Outcome, { kind: 'step-up' }>, mode: AnswerMode, returnTo: string): Answer | Promise<Answer> {
  const req = o.route.stepUp!;
  const session = o.who.sid !== undefined;
  // A session steps up at the provider it signed in with (no chooser): another provider's sign-in
  // would be another identity, never an upgrade of this one.
  const provider = isSession(o.who) ? o.who.provider : undefined;
  if (session && mode === 'proxy' && isBrowserNavigation(r.method, r.headers)) return signInRedirect(rt, r, returnTo, o.route, signInTooOld(req, o.who.claims, rt.now()), o.setCookies, provider);
  const description = o.shortfall === 'acr' ? 'A different authentication level is required' : 'More recent authentication is required';
  let params = `error="insufficient_user_authentication", error_description="${description}"`;
  const fields: Record<string, string> = { route: o.route.name };
  if (req.acrValues !== undefined) { params += `, acr_values="${req.acrValues}"`; fields.acr_values = req.acrValues; }
  if (req.maxAgeSec !== undefined) { params += `, max_age="${req.maxAgeSec}"`; fields.max_age = String(req.maxAgeSec); }
  // A page a person reads, where no redirect is possible (a form post…): it says what is needed and
  // links to a sign-in that steps up and comes back here.
  const html = session && mode === 'proxy' && isPageRequest(r.headers);
  const start = startUrl(rt, o.route, provider);
  const signInUrl = mode === 'forward-auth' || html ? withReturn(start, returnTo) : start;
  const www = session ? `OIDC realm="portcullis", ${params}, sign_in_url="${signInUrl}"` : `Bearer realm="portcullis", ${params}`;
  return errorAnswer(insufficient(req), r, { setCookies: o.setCookies, headers: { 'www-authenticate': www }, signInUrl: session ? signInUrl : undefined, fields, json: !html });
}

/**
 * `/oauth2/start` on publicUrl for a route: `step_up=` naming the route whose step-up the sign-in
 * must meet (if it has one); `provider=` when the route accepts one provider of several (no
 * chooser), `providers=a,b` when it accepts some — only what the chooser offers; the route's own
 * check is what enforces.
 */
function startUrl(rt: Runtime, route: RouteConfig, provider?: string): string {
  const q: string[] = [];
  if (route.stepUp) q.push(`step_up=${encodeURIComponent(route.name)}`);
  const all = rt.providers.all.length;
  if (all > 1 && provider !== undefined) q.push(`provider=${provider}`);
  else if (all > 1 && route.providers.size === 1) q.push(`provider=${route.providers.values().next().value!}`);
  else if (all > 1 && route.providers.size < all) q.push(`providers=${[...route.providers].join(',')}`);
  return `${rt.config.publicUrl}/oauth2/start${q.length ? `?${q.join('&')}` : ''}`;
}

function withReturn(url: string, returnTo: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}rd=${encodeURIComponent(returnTo)}`;
}

/**
 * A browser sent to sign in: a route of one provider (or `provider`: a session stepping up at its
 * own), on publicUrl's host (or under the cookie
 * domain), straight to that IdP; otherwise /oauth2/start on publicUrl — its chooser when the route
 * accepts several providers — asking for the route's step-up either way.
 */
async function signInRedirect(rt: Runtime, r: Inbound, returnTo: string, route: RouteConfig, promptLogin: boolean, setCookies: string[], provider?: string): Promise<Answer> {
  const only = provider !== undefined ? rt.providers.get(provider) : route.providers.size === 1 ? rt.providers.get(route.providers.values().next().value!) : undefined;
  const { location, setCookies: more } = only && (sameAuthority(rt.origin.publicHost, r.host) || rt.config.session.cookieDomain)
    ? await rt.beginSignIn(r.cookies, returnTo, only, route.stepUp && { stepUp: route.stepUp, promptLogin })
    : { location: withReturn(startUrl(rt, route, provider), returnTo), setCookies: [] };
  const headers: Record<string, string | string[]> = { 'cache-control': 'no-store', location };
  if (setCookies.length || more.length) headers['set-cookie'] = [...setCookies, ...more];
  return { status: 302, headers, body: '' };
}

/** Writes an answer to an HTTP response. */
export function writeAnswer(res: ServerResponse, a: Answer): void {
  const headers = a.body ? { ...a.headers, 'content-length': String(Buffer.byteLength(a.body)) } : { ...a.headers, 'content-length': '0' };
  res.writeHead(a.status, headers);
  res.end(a.body);
}

/** Writes an answer on a socket that asked to upgrade (no ServerResponse exists there), then closes it. */
export function writeAnswerToSocket(socket: Duplex, a: Answer): void {
  if (!socket.writable) { socket.destroy(); return; }
  const lines = [`HTTP/1.1 ${a.status} ${STATUS_CODES[a.status] ?? 'Error'}`, 'Connection: close'];
  for (const [k, v] of Object.entries(a.headers)) for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
  lines.push(`content-length: ${Buffer.byteLength(a.body)}`);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${a.body}`);
}

