// Shared by the smaller doorway tables (test/security/doorways-*.test.ts): the stacks that make
// each doorway happen, with the same routes, secret and IdP, so one sign-in gives a cookie all
// accept —
//   A  default session cache (a: cached session, d: bearer, e: upgrade, f: forward-auth)
//   B  session.cacheMaxEntries 0: every request opens the cookie (b)
//   C  a clock 10 min ahead of the IdP's 5-min tokens: every request with a session refreshes
//      first (c); call `beforeC()` before each request to C, `tookC(reply)` after it.
// and a JWT access token for a user, signed with the dev IdP's key for `oidc.bearerAudiences`.
import { generateKeyPairSync } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import type { CleanupScope, TestIdpOptions } from '../helpers/idp.js';
import { REFRESH_MIN_INTERVAL_MS } from '../../src/session/refresh.js';

export const DOORWAY_AUDIENCE = 'urn:portcullis-doorways';
const TOKEN_TTL_S = 300;
const C_CLOCK_AHEAD_MS = 10 * 60_000;

export type Doorway = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';
export const DOORWAYS: ReadonlyArray<readonly [Doorway, string]> = [
  ['a', '(a) plain, session cached'], ['b', '(b) plain, session not cached'], ['c', '(c) during a refresh'],
  ['d', '(d) bearer token'], ['e', '(e) WebSocket upgrade'], ['f', '(f) forward-auth'],
];

export interface DoorwayStacks {
  A: Stack;
  B: Stack;
  C: Stack;
  stackOf(d: Doorway): Stack;
  /** The session cookie value for `d` (C's own copy, replaced by each refresh). */
  cookie(d: Doorway): string;
  /** Before a request to C: its clock moves past the minimum interval between two refreshes. */
  beforeC(): void;
  /** After a request to C: keeps the refreshed cookie; false when the request did not refresh. */
  tookC(headers: Array<[string, string]>): boolean;
  /** A JWT access token the IdP could have issued for `claims.sub`, for DOORWAY_AUDIENCE. */
  token(claims: Record<string, unknown> & { sub: string }): Promise<string>;
}

export async function startDoorwayStacks(t: CleanupScope, opts: { routes: Array<Record<string, unknown>>; edit?: (raw: Record<string, unknown>) => void; user: { user: string; password: string }; users?: TestIdpOptions['users'] }): Promise<DoorwayStacks> {
  const jwk = { ...(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK), kid: 'doorway-stacks', alg: 'RS256', use: 'sig' };
  const edit = (raw: Record<string, unknown>) => {
    (raw.oidc as Record<string, unknown>).bearerAudiences = [DOORWAY_AUDIENCE];
    opts.edit?.(raw);
  };
  const A = await startStack(t, { routes: opts.routes, idp: { keys: { keys: [jwk] }, ttl: { AccessToken: TOKEN_TTL_S, IdToken: TOKEN_TTL_S }, users: opts.users }, edit });
  const B = await startStack(t, { routes: opts.routes, existingIdp: A.idp, edit, sessionCache: false });
  let offset = 0;
  const C = await startStack(t, { routes: opts.routes, existingIdp: A.idp, edit, now: () => Date.now() + offset });
  const login = await loginViaHttp(`${A.url}/`, opts.user);
  if (login.status !== 200) throw new Error(`${opts.user.user} could not sign in (${login.status})`);
  const cookie = login.jar.get('portcullis', A.url)!;
  let cCookie = cookie;
  offset = C_CLOCK_AHEAD_MS;
  const key = await importJWK(jwk, 'RS256');
  const stacks: Record<Doorway, Stack> = { a: A, b: B, c: C, d: A, e: A, f: A };
  return {
    A, B, C,
    stackOf: (d) => stacks[d],
    cookie: (d) => (d === 'c' ? cCookie : cookie),
    beforeC: () => { offset += REFRESH_MIN_INTERVAL_MS; },
    tookC: (headers) => {
      const set = headers.find(([n, v]) => n === 'set-cookie' && /^portcullis=/.test(v) && !/max-age=0/i.test(v));
      if (set) cCookie = /^portcullis=([^;]+)/.exec(set[1])![1]!;
      return set !== undefined;
    },
    token: async (claims) => {
      const nowS = Math.floor(Date.now() / 1000);
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: jwk.kid }).setIssuer(A.idp.issuer)
        .setAudience(DOORWAY_AUDIENCE).setIssuedAt(nowS).setExpirationTime(nowS + 900).sign(key);
    },
  };
}

/** The raw request head that sends `path` through doorway `d` (forward-auth: as a trusted proxy describes it). */
export function doorwayHead(d: Doorway, port: number, path: string, credential: Array<[string, string]>, extra: Array<[string, string]> = []): string {
  const host: [string, string] = ['Host', `127.0.0.1:${port}`];
  let lines: Array<[string, string]>;
  let requestLine = `GET ${path} HTTP/1.1`;
  if (d === 'e') {
    lines = [host, ['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13'], ...credential, ...extra];
  } else if (d === 'f') {
    requestLine = 'GET /oauth2/auth HTTP/1.1';
    lines = [host, ['X-Forwarded-Method', 'GET'], ['X-Forwarded-Proto', 'http'], ['X-Forwarded-Host', `127.0.0.1:${port}`], ['X-Forwarded-Uri', path], ...credential, ...extra];
  } else {
    const accept: Array<[string, string]> = extra.some(([n]) => n.toLowerCase() === 'accept') ? [] : [['Accept', 'application/json']];
    lines = [host, ...accept, ...credential, ...extra];
  }
  return `${[requestLine, ...lines.map(([k, v]) => `${k}: ${v}`)].join('\r\n')}\r\n\r\n`;
}
