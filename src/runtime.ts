// Boot stage 3: compile the validated Config into the runtime the door runs — route matcher,
// header plan, session manager, sign-in flow — once. Requests only run what is built here.
// The route table is one object so hot reload can swap routes, rules and headers atomically.
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config, RouteConfig } from './config/index.js';
import { compileMatcher, type RouteMatcher } from './routing/match.js';
import { IdentityHeaderPlan, type HeaderBag } from './identity/headers.js';
import { SessionCodec } from './session/codec.js';
import { cookieSettings, makeCookieStripper } from './session/cookies.js';
import { SessionManager, type ActiveSession } from './session/sessions.js';
import { CookieStore, type SessionStore } from './session/store.js';
import { TransactionCookies } from './signin/transactions.js';
import { IdentityProvider, randomSignInChecks } from './signin/idp.js';
import { errors } from './errors.js';
import type { RedirectPolicy } from './signin/redirects.js';
import type { Metrics } from './metrics.js';
import { compilePeerTrust, type PeerTrust } from './routing/trust.js';

export interface RouteTable {
  readonly routes: readonly RouteConfig[];
  readonly matcher: RouteMatcher;
  readonly headers: IdentityHeaderPlan;
}

export function compileRouteTable(routes: readonly RouteConfig[]): RouteTable {
  return Object.freeze({ routes, matcher: compileMatcher(routes.map((r) => r.match)), headers: new IdentityHeaderPlan(routes) });
}

export interface RuntimeOptions {
  now?: () => number;
  store?: SessionStore;
}

export class Runtime {
  table: RouteTable;
  readonly sessions: SessionManager;
  readonly txns: TransactionCookies;
  readonly idp: IdentityProvider;
  readonly redirects: RedirectPolicy;
  readonly publicHost: string;
  readonly stripOwnCookies: (header: string | undefined) => string | undefined;
  /** Log an audit line for allowed requests too (debug level), not only denials. */
  readonly auditAllows: boolean;
  private readonly publicProto: string;
  /** Whether a peer may tell us about the original request (X-Forwarded-*). */
  readonly peerTrusted: PeerTrust;
  private readonly connections = new Map<string, Set<Duplex>>();

  constructor(readonly config: Config, readonly metrics: Metrics, readonly log: FastifyBaseLogger, opts: RuntimeOptions = {}) {
    const now = opts.now ?? Date.now;
    this.table = compileRouteTable(config.routes);
    const cookies = cookieSettings(config.publicUrl, config.session.cookieName, config.session.cookieDomain);
    const codec = new SessionCodec(config.session.secrets);
    const store = opts.store ?? new CookieStore(codec, cookies.session);
    this.sessions = new SessionManager(cookies, store, {
      idleTimeoutMs: config.session.idleTimeoutMs,
      absoluteTimeoutMs: config.session.absoluteTimeoutMs,
      cacheMaxEntries: config.session.cacheMaxEntries,
    }, now, () => false, (hit) => (hit ? metrics.cacheHits : metrics.cacheMisses).inc());
    this.txns = new TransactionCookies(codec, cookies, now);
    this.idp = new IdentityProvider({
      ...config.oidc,
      redirectUri: `${config.publicUrl}/oauth2/callback`,
    }, {
      now,
      log,
      observe: (endpoint, seconds, ok) => metrics.idpDuration.observe({ endpoint, outcome: ok ? 'ok' : 'error' }, seconds),
    });
    const pub = new URL(config.publicUrl);
    this.peerTrusted = compilePeerTrust(config.trustProxy);
    this.publicHost = pub.host;
    this.publicProto = pub.protocol.slice(0, -1);
    this.redirects = { origin: pub.origin, allowedDomains: config.redirects.allowedDomains };
    this.stripOwnCookies = makeCookieStripper(config.session.cookieName);
    this.auditAllows = ['debug', 'trace'].includes(config.logLevel);
  }

  /** The Host the client asked for (X-Forwarded-Host only from a trusted proxy). */
  hostOf(request: FastifyRequest): string | undefined {
    return this.peerTrusted(request.socket.remoteAddress) ? request.host : request.headers.host;
  }

  hostOfRaw(req: IncomingMessage): string | undefined {
    if (this.peerTrusted(req.socket.remoteAddress)) {
      const xf = req.headers['x-forwarded-host'];
      if (typeof xf === 'string' && xf) return xf.split(',')[0]!.trim();
    }
    return req.headers.host;
  }

  /** scheme://host of the request as the browser sees it. */
  originOf(request: FastifyRequest): string {
    const proto = this.peerTrusted(request.socket.remoteAddress) ? request.protocol : this.publicProto;
    return `${proto}://${this.hostOf(request) ?? this.publicHost}`;
  }

  upstreamBase(route: RouteConfig): string {
    return route.upstream;
  }

  /** Request headers as the upstream will see them: no client-set identity, no Portcullis cookies, our identity. */
  rewriteUpstreamHeaders(route: RouteConfig, session: ActiveSession | undefined, h: HeaderBag, request: FastifyRequest | undefined): void {
    this.table.headers.strip(h);
    const cookie = this.stripOwnCookies(h.cookie as string | undefined);
    if (cookie === undefined) delete h.cookie; else h.cookie = cookie;
    if (session) this.table.headers.inject(route.name, session.claims, h);
    if (request) {
      const trusted = this.peerTrusted(request.socket.remoteAddress);
      const prior = trusted ? h['x-forwarded-for'] : undefined;
      h['x-forwarded-for'] = prior ? `${prior}, ${request.socket.remoteAddress}` : request.socket.remoteAddress;
      h['x-forwarded-proto'] = trusted ? request.protocol : this.publicProto;
      h['x-forwarded-host'] = this.hostOf(request) ?? this.publicHost;
      h['x-request-id'] = request.id;
    } else {
      // WebSocket upgrades: forwarding headers are only passed on from a trusted peer.
      delete h['x-forwarded-for'];
      delete h['x-forwarded-host'];
      delete h['x-forwarded-proto'];
    }
  }

  /** Starts a sign-in: transaction cookie + the IdP authorization URL. */
  async beginSignIn(cookies: Record<string, string | undefined>, returnTo: string): Promise<{ location: string; setCookies: string[] }> {
    if (!this.idp.ready) {
      this.idp.start();
      throw errors.idpUnavailable(new Error(this.idp.lastError ?? 'discovery pending'));
    }
    const checks = randomSignInChecks();
    const { txn, setCookies } = this.txns.begin(cookies, { ...checks, returnTo });
    const location = await this.idp.authorizationUrl({ state: txn.state, nonce: txn.nonce, verifier: txn.verifier });
    return { location, setCookies };
  }

  /** Remembers a live WebSocket of a session so it can be closed when the session ends. */
  trackConnection(sid: string, socket: Duplex): void {
    let set = this.connections.get(sid);
    if (!set) this.connections.set(sid, (set = new Set()));
    set.add(socket);
    socket.once('close', () => {
      set!.delete(socket);
      if (set!.size === 0) this.connections.delete(sid);
    });
  }

  /** Closes every live connection of a session (sign-out, back-channel logout). */
  endConnections(sid: string): number {
    const set = this.connections.get(sid);
    if (!set) return 0;
    for (const s of set) s.destroy();
    this.connections.delete(sid);
    return set.size;
  }

  async close(): Promise<void> {
    this.idp.close();
    for (const set of this.connections.values()) for (const s of set) s.destroy();
    await this.sessions.close();
  }
}
