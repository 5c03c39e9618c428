// Forward stage, the one place the upstream request is built: method, path as forwarded, and every
// header rule — hop-by-hop and Connection-listed headers dropped, `Expect` answered here and not
// passed on, the forwarding family (X-Forwarded-*, Forwarded, X-Real-IP…) believed only from
// trusted proxies and otherwise rewritten, client-sent identity headers removed in every spelling,
// Portcullis's cookies removed, identity and assertion added. Plain HTTP requests and WebSocket
// upgrades both get their upstream request from `planUpstream`; forward-auth answers with the
// identity headers of the same plan. Pure: no I/O, table-tested (test/proxy/plan.test.ts).
import type { RouteConfig } from '../config/index.js';
import type { HeaderBag, IdentityHeaderPlan, Principal } from '../identity/headers.js';
import type { Inbound, OriginRules } from '../routing/origin.js';
import { HOP_BY_HOP, connectionTokens } from './hop-by-hop.js';
import { memoized } from '../routing/connection-memo.js';

/** An upstream as the forwarder uses it, parsed once per distinct `upstream` string. */
export interface UpstreamTarget {
  /** scheme://host:port */
  readonly origin: string;
  /** host[:port] for the Host header. */
  readonly host: string;
  /** The upstream URL's path without a trailing slash ('' for the root). */
  readonly basePath: string;
}

export interface UpstreamPlan {
  readonly upstream: UpstreamTarget;
  readonly method: string;
  /** Base path + path as forwarded (stripPrefix applied) + the verbatim query. */
  readonly path: string;
  readonly headers: HeaderBag;
  /** Whether the request carries a body to stream (Content-Length > 0 or Transfer-Encoding). */
  readonly hasBody: boolean;
}

/**
 * Request headers that never reach the upstream as the client sent them, whatever the peer:
 * hop-by-hop ones, `Expect` (a 100-continue is answered by Portcullis once the request is
 * authorized; undici would refuse it), `Host` (the upstream's own) and `X-Request-Id` (ours).
 */
const ALWAYS_DROPPED = new Set([...HOP_BY_HOP, 'expect', 'host', 'x-request-id']);

const targets = new Map<string, UpstreamTarget>();
/** The parsed form of a route's `upstream` (cached per string: routes are few). */
export function upstreamTarget(upstream: string): UpstreamTarget {
  let t = targets.get(upstream);
  if (!t) {
    const url = new URL(upstream);
    t = Object.freeze({ origin: url.origin, host: url.host, basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/+$/, '') });
    targets.set(upstream, t);
  }
  return t;
}

export interface PlanInput {
  readonly inbound: Inbound;
  readonly route: RouteConfig;
  /** The identity header plan of the table the route came from. */
  readonly identity: IdentityHeaderPlan;
  readonly who: Principal | undefined;
  readonly assertion?: string | undefined;
  /** A WebSocket upgrade: `Connection: Upgrade` + `Upgrade: websocket` are set, method is GET. */
  readonly upgrade?: boolean;
  /**
   * Tracing on (src/tracing.ts): `traceparent`/`tracestate` naming Portcullis's span, which replace
   * the client's (an untrusted peer's `baggage` is dropped too). Tracing off: undefined, and the
   * client's trace headers pass as any header.
   */
  readonly trace?: Readonly<Record<string, string>> | undefined;
}

export class UpstreamRequestRules {
  constructor(private readonly origin: OriginRules, private readonly stripOwnCookies: (header: string | undefined) => string | undefined) {}

  plan(p: PlanInput): UpstreamPlan {
    const { inbound: r, route } = p;
    const up = upstreamTarget(route.upstream);
    const headers = this.headers(p);
    headers.host = up.host;
    const path = route.stripPrefix ? stripPrefix(r.path, route.match.path) : r.path;
    const h = r.headers;
    const te = h['transfer-encoding'];
    const cl = h['content-length'];
    return {
      upstream: up,
      method: p.upgrade ? 'GET' : r.method,
      path: up.basePath + path + r.query,
      headers,
      hasBody: !p.upgrade && (te !== undefined || (cl !== undefined && cl !== '0')),
    };
  }

  /** The upstream's request headers: what the client sent minus what it may not say, plus ours. */
  private headers(p: PlanInput): HeaderBag {
    const r = p.inbound;
    const sent = r.headers;
    const listed = connectionTokens(sent.connection);
    const out: HeaderBag = {};
    for (const k in sent) {
      if (ALWAYS_DROPPED.has(k) || (listed !== undefined && listed.includes(k))) continue;
      const underscored = k.includes('_');
      const canonical = underscored ? k.replace(/_/g, '-') : k;
      if (p.identity.isProtected(canonical) || this.origin.dropsForwarding(canonical, underscored, r.trusted)) continue;
      if (underscored && ALWAYS_DROPPED.has(canonical)) continue;
      out[k] = sent[k];
    }
    if (out.cookie !== undefined) {
      const cookie = memoized(r.memo, this.stripOwnCookies, out.cookie as string);
      if (cookie === undefined) delete out.cookie; else out.cookie = cookie;
    }
    this.origin.setForwarding(r, out);
    out['x-request-id'] = r.id;
    if (p.who) p.identity.inject(p.route.name, p.who, out);
    if (p.assertion) out['x-portcullis-assertion'] = p.assertion;
    if (p.trace) {
      delete out.traceparent;
      delete out.tracestate;
      // W3C Baggage is context services downstream read as the edge's word (`role=admin`): like the
      // trace itself, believed from a trusted proxy only (Portcullis adds none of its own).
      if (!r.trusted) delete out.baggage;
      Object.assign(out, p.trace);
    }
    if (p.upgrade) {
      out.connection = 'Upgrade';
      out.upgrade = 'websocket';
    }
    return out;
  }
}

/** `/app/x` with prefix `/app` → `/x`. */
export function stripPrefix(path: string, prefix: string): string {
  if (prefix === '/' || prefix === '') return path;
  const p = prefix.replace(/\/+$/, '');
  const rest = path.slice(p.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}
