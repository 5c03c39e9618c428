// Test helper: a stack for step-up routes (routes[].stepUp) — the dev IdP offering acr values, step-up
// routes in front of the echo upstream — and a look at the Portcullis session behind a cookie jar.
import assert from 'node:assert/strict';
import { startStack, type Stack, type StackOptions } from './stack.js';
import { CookieJar, loginViaHttp } from './browserless-login.js';
import type { CleanupScope } from './idp.js';

export const ALICE = { user: 'alice', password: 'alice-password' };
export const BOB = { user: 'bob', password: 'bob-password' };

export const ACR_VALUES = ['pwd', 'mfa', 'phr'];
export const STEP_UP_ROUTES = [
  { name: 'console', match: { path: '/console' }, upstream: '{upstream}', websocket: true, stepUp: { acr: ['phr', 'mfa'] } },
  { name: 'recent', match: { path: '/recent' }, upstream: '{upstream}', stepUp: { maxAge: '2m' } },
  { name: 'recent-mfa', match: { path: '/recent-mfa' }, upstream: '{upstream}', stepUp: { acr: ['mfa'], maxAge: '2m' } },
  { name: 'both', match: { path: '/both' }, upstream: '{upstream}', stepUp: { acr: ['mfa'], maxAge: '10m' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true },
];

/** The dev IdP offering ACR_VALUES, STEP_UP_ROUTES; `opts` adds to (or replaces) that. */
export async function startStepUpStack(t: CleanupScope, opts: StackOptions = {}): Promise<Stack> {
  return startStack(t, { routes: STEP_UP_ROUTES, ...opts, idp: { acrValues: ACR_VALUES, ...(opts.idp as object) } });
}

/** The Portcullis session behind the jar's session cookie (its id, claims), as the proxy sees it. */
export async function sessionOf(s: Stack, jar: CookieJar) {
  const value = jar.get('portcullis', s.url);
  const lookup = await s.server.runtime.sessions.lookup({ portcullis: value });
  return lookup.kind === 'valid' ? lookup.session : undefined;
}

/** Signs alice in on an ordinary route, choosing the weakest method (acr `pwd`). */
export async function signInWeakly(s: Stack, jar = new CookieJar()) {
  const r = await loginViaHttp(`${s.url}/home`, { ...ALICE, jar, fields: { acr: 'pwd' } });
  assert.equal(r.status, 200, `signed in on an ordinary route: ${r.body.slice(0, 300)}`);
  const session = await sessionOf(s, jar);
  assert.equal(session?.claims.acr, 'pwd', 'the sign-in was at acr pwd');
  return { jar, session: session! };
}

