// Test helper: a tiny OpenID Provider that misbehaves on demand. Discovery, JWKS, an authorization
// endpoint that answers at once (no login page) and a token endpoint whose ID token is crafted per
// `mode`, so the proxy's ID-token checks can be attacked one by one. Stopped by the test's cleanup.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';
import type { CleanupScope } from './idp.js';

/** What the next token response carries. `valid` and `exp-within-tolerance` must be accepted; everything else rejected. */
export type RogueMode =
  | 'valid'
  | 'exp-within-tolerance'
  | 'tampered-payload'
  | 'corrupt-signature'
  | 'alg-none'
  | 'hs256-client-secret'
  | 'wrong-iss'
  | 'wrong-aud'
  | 'aud-extra-no-azp'
  | 'wrong-azp'
  | 'wrong-nonce'
  | 'missing-nonce'
  | 'missing-sub'
  | 'expired'
  | 'iat-future'
  | 'unknown-key'
  | 'unknown-key-same-kid'
  | 'no-id-token';

/** What the next refresh_token grant answers. */
export type RefreshMode = 'valid' | 'other-sub' | 'other-aud' | 'new-azp' | 'invalid_grant' | 'server-error' | 'no-id-token';

export interface RogueIdpOptions {
  clientId?: string;
  clientSecret?: string;
  /** The `issuer` the discovery document claims (default: the real one). */
  discoveryIssuer?: (realIssuer: string) => string;
  /** `id_token_signing_alg_values_supported`; default advertises the dangerous ones too. */
  advertisedAlgs?: string[];
  /** Claims of the signed-in user. */
  claims?: Record<string, unknown>;
}

export interface RogueIdp {
  issuer: string;
  port: number;
  clientId: string;
  clientSecret: string;
  /** Set between tests. */
  mode: RogueMode;
  /** How refresh_token grants are answered. */
  refreshMode: RefreshMode;
  /** The `sub` userinfo returns (default: the ID token's). */
  userinfoSub: string | undefined;
  /** refresh_token grants received. */
  refreshes: number;
  /** Paths requested, in order (e.g. to see that discovery was attempted). */
  hits: string[];
  /** ID tokens handed out, with the mode each was made in. */
  issued: Array<{ mode: RogueMode; idToken: string | undefined }>;
  /** Set between tests: claims put into (or, as undefined, taken out of) the next ID tokens, e.g. an `acr` or `auth_time`. */
  idTokenClaims: Record<string, unknown>;
  /** The query of every authorization request, in order (what was asked for: acr_values, max_age, prompt…). */
  authorizeRequests: URLSearchParams[];
  close(): Promise<void>;
}

interface PendingCode {
  clientId: string;
  redirectUri: string;
  nonce: string | undefined;
  codeChallenge: string | undefined;
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

export async function startRogueIdp(t: CleanupScope, opts: RogueIdpOptions = {}): Promise<RogueIdp> {
  const clientId = opts.clientId ?? 'rogue-client';
  const clientSecret = opts.clientSecret ?? 'rogue-client-secret-0123456789abcdef';
  const good = await generateKeyPair('RS256', { extractable: true });
  const stranger = await generateKeyPair('RS256', { extractable: true });
  const kid = 'rogue-key-1';
  const publicJwk: JWK = { ...(await exportJWK(good.publicKey)), kid, alg: 'RS256', use: 'sig' };
  const codes = new Map<string, PendingCode>();

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const rogue: RogueIdp = {
    issuer, port, clientId, clientSecret, mode: 'valid', refreshMode: 'valid', userinfoSub: undefined, refreshes: 0, hits: [], issued: [], idTokenClaims: {}, authorizeRequests: [],
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
  t.after(() => rogue.close());

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', issuer);
    rogue.hits.push(url.pathname);
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer: opts.discoveryIssuer ? opts.discoveryIssuer(issuer) : issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        userinfo_endpoint: `${issuer}/userinfo`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: opts.advertisedAlgs ?? ['RS256', 'none', 'HS256'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        scopes_supported: ['openid', 'email', 'profile'],
      });
    }
    if (req.method === 'GET' && url.pathname === '/jwks') return json(res, 200, { keys: [publicJwk] });
    if (req.method === 'GET' && url.pathname === '/userinfo') {
      return json(res, 200, { sub: rogue.userinfoSub ?? 'rogue-user', email: 'rogue-user@example.com', department: 'from-userinfo', ...opts.claims });
    }
    if (req.method === 'GET' && url.pathname === '/authorize') {
      const p = url.searchParams;
      rogue.authorizeRequests.push(new URLSearchParams(p));
      const redirectUri = p.get('redirect_uri');
      if (p.get('client_id') !== clientId || !redirectUri || p.get('response_type') !== 'code') {
        return json(res, 400, { error: 'invalid_request' });
      }
      const code = randomBytes(16).toString('base64url');
      codes.set(code, { clientId, redirectUri, nonce: p.get('nonce') ?? undefined, codeChallenge: p.get('code_challenge') ?? undefined });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      const state = p.get('state');
      if (state !== null) back.searchParams.set('state', state);
      back.searchParams.set('iss', issuer);
      res.writeHead(302, { location: back.href, 'cache-control': 'no-store' }).end();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/token') {
      const form = new URLSearchParams(await readBody(req));
      const [id, secret] = basicAuth(req) ?? [form.get('client_id'), form.get('client_secret')];
      if (id !== clientId || secret !== clientSecret) return json(res, 401, { error: 'invalid_client' });
      if (form.get('grant_type') === 'refresh_token') {
        rogue.refreshes++;
        const m = rogue.refreshMode;
        if (m === 'invalid_grant') return json(res, 400, { error: 'invalid_grant' });
        if (m === 'server-error') return json(res, 500, { error: 'server_error' });
        const base = { clientId, redirectUri: '', nonce: undefined, codeChallenge: undefined };
        const over: Record<string, unknown> = m === 'other-sub' ? { sub: 'someone-else' } : m === 'other-aud' ? { aud: 'another-client' } : m === 'new-azp' ? { aud: [clientId], azp: 'another-client' } : {};
        const idToken = m === 'no-id-token' ? undefined : await mint('valid', base, over);
        return json(res, 200, { access_token: randomBytes(16).toString('base64url'), token_type: 'Bearer', expires_in: 3600, ...(idToken === undefined ? {} : { id_token: idToken }), refresh_token: randomBytes(16).toString('base64url') });
      }
      const code = form.get('code') ?? '';
      const pending = codes.get(code);
      codes.delete(code); // single use, as a real IdP
      if (form.get('grant_type') !== 'authorization_code' || !pending || pending.redirectUri !== form.get('redirect_uri')) {
        return json(res, 400, { error: 'invalid_grant' });
      }
      const verifier = form.get('code_verifier') ?? '';
      if (!pending.codeChallenge || createHash('sha256').update(verifier).digest('base64url') !== pending.codeChallenge) {
        return json(res, 400, { error: 'invalid_grant', error_description: 'PKCE verification failed' });
      }
      const mode = rogue.mode;
      const idToken = await mint(mode, pending);
      rogue.issued.push({ mode, idToken });
      return json(res, 200, {
        access_token: randomBytes(16).toString('base64url'),
        token_type: 'Bearer',
        expires_in: 3600,
        refresh_token: randomBytes(16).toString('base64url'),
        ...(idToken === undefined ? {} : { id_token: idToken }),
      });
    }
    json(res, 404, { error: 'not_found' });
  }

  async function mint(mode: RogueMode, pending: PendingCode, override: Record<string, unknown> = {}): Promise<string | undefined> {
    const now = Math.floor(Date.now() / 1000);
    const claims: Record<string, unknown> = {
      iss: issuer,
      sub: 'rogue-user',
      aud: pending.clientId,
      iat: now,
      exp: now + 600,
      nonce: pending.nonce,
      email: 'rogue-user@example.com',
      preferred_username: 'rogue-user',
      ...opts.claims,
      ...rogue.idTokenClaims,
      ...override,
    };
    if (override.nonce === undefined && pending.nonce === undefined) delete claims.nonce;
    const sign = (c: Record<string, unknown>, key: CryptoKey = good.privateKey, k = kid) =>
      new SignJWT(c).setProtectedHeader({ alg: 'RS256', kid: k, typ: 'JWT' }).sign(key);
    switch (mode) {
      case 'valid':
        return sign(claims);
      case 'exp-within-tolerance':
        return sign({ ...claims, iat: now - 300, exp: now - 5 });
      case 'tampered-payload': {
        // A genuine signature over other claims: the payload is swapped after signing.
        const [h, , sig] = (await sign(claims)).split('.');
        return `${h}.${b64url({ ...claims, sub: 'admin', groups: ['admin'] })}.${sig}`;
      }
      case 'corrupt-signature': {
        const [h, p, sig] = (await sign(claims)).split('.') as [string, string, string];
        const mid = Math.floor(sig.length / 2);
        return `${h}.${p}.${sig.slice(0, mid)}${sig[mid] === 'A' ? 'B' : 'A'}${sig.slice(mid + 1)}`;
      }
      case 'alg-none':
        return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`;
      case 'hs256-client-secret':
        return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(clientSecret));
      case 'wrong-iss':
        return sign({ ...claims, iss: 'https://evil.example' });
      case 'wrong-aud':
        return sign({ ...claims, aud: 'someone-else' });
      case 'aud-extra-no-azp':
        return sign({ ...claims, aud: [pending.clientId, 'other-client'] });
      case 'wrong-azp':
        return sign({ ...claims, aud: [pending.clientId, 'other-client'], azp: 'other-client' });
      case 'wrong-nonce':
        return sign({ ...claims, nonce: 'not-the-nonce-that-was-sent' });
      case 'missing-nonce': {
        const { nonce: _omit, ...rest } = claims;
        return sign(rest);
      }
      case 'missing-sub': {
        const { sub: _omit, ...rest } = claims;
        return sign(rest);
      }
      case 'expired':
        return sign({ ...claims, iat: now - 3600, exp: now - 120 });
      case 'iat-future':
        return sign({ ...claims, iat: now + 3600, exp: now + 7200 });
      case 'unknown-key':
        return sign(claims, stranger.privateKey, 'stranger-key');
      case 'unknown-key-same-kid':
        return sign(claims, stranger.privateKey, kid);
      case 'no-id-token':
        return undefined;
    }
  }

  return rogue;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function basicAuth(req: IncomingMessage): [string, string] | undefined {
  const h = req.headers.authorization;
  if (!h?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(h.slice(6), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
  return [decodeURIComponent(decoded.slice(0, i).replace(/\+/g, ' ')), decodeURIComponent(decoded.slice(i + 1).replace(/\+/g, ' '))];
}
