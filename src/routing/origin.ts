// Routing stage, first step of every doorway: what a request says about itself and where it came
// from — normalised target, method, the Host and scheme the client asked for, the client's address,
// the request id — read once into an `Inbound` value by one set of rules. And the other half of the
// same rules: the forwarding headers (X-Forwarded-*, Forwarded, X-Real-IP) the upstream is told.
//
// Only a trusted peer (`trustProxy`) may tell us about the original request. From anyone else every
// member of the forwarding family is removed, in every spelling, and Portcullis says what it knows.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import proxyAddr from '@fastify/proxy-addr';
import { parseCookie } from 'cookie';
import { compilePeerTrust, type PeerTrust } from './trust.js';
import { requestIdOf } from '../request-id.js';
import { connectionMemo, memoized, type ConnectionMemo } from './connection-memo.js';

/** Request or response headers as node:http gives and takes them (name → value or values). */
export type HeaderBag = Record<string, string | string[] | undefined>;

export type Cookies = Record<string, string | undefined>;

/** One request as every later stage sees it. Built once per request by `OriginRules.inbound`. */
export interface Inbound {
  readonly id: string;
  /** The method as sent (Node upper-cases nothing: the token is what the client wrote). */
  readonly method: string;
  /** Normalised path (routing/normalize.ts): what is matched, authorized and forwarded. */
  readonly path: string;
  /** Verbatim query with its `?`, or ''. */
  readonly query: string;
  /** Host the client asked for (host[:port]); the last X-Forwarded-Host entry from a trusted peer. */
  readonly host: string | undefined;
  /** Scheme the client used: the last X-Forwarded-Proto entry from a trusted peer, else publicUrl's. */
  readonly proto: string;
  /** Port the client used: the last X-Forwarded-Port from a trusted peer, else Host's, else the scheme's default. */
  readonly port: string;
  /** The TCP peer. */
  readonly peer: string;
  /** The client: the peer, or from a trusted peer the first untrusted address in X-Forwarded-For. */
  readonly clientIp: string;
  /** Whether the peer is a trusted proxy. */
  readonly trusted: boolean;
  /** The request headers as received (never modified). */
  readonly headers: IncomingHttpHeaders;
  /** Parsed Cookie header (frozen: shared by the requests of a connection that repeat it). */
  readonly cookies: Cookies;
  /** Pure functions of what this client connection repeats (routing/connection-memo.ts); absent in tests that build an Inbound by hand. */
  readonly memo?: ConnectionMemo | undefined;
}

/**
 * Headers with which a client or proxy describes the original request (its address, host, scheme,
 * port) — believed from a trusted peer only. Canonical spelling: lower case, `-` (a `_` spelling is
 * read as the same header by CGI/WSGI/PHP/Rails, so it is removed from everyone).
 */
export const FORWARDING_FAMILY: ReadonlySet<string> = new Set([
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port',
  'x-forwarded-ssl', 'x-forwarded-scheme', 'x-forwarded-server', 'x-forwarded-protocol', 'x-real-ip',
  'true-client-ip', 'x-client-ip', 'client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip',
  'x-original-forwarded-for', 'front-end-https', 'x-url-scheme', 'x-proxyuser-ip',
]);

/**
 * Headers some frameworks (Symfony, IIS, Spring, Rails) obey to rewrite the request path or method.
 * From a client they would let the upstream act on another path or method than the one Portcullis
 * authorized, so they pass only from trusted proxies.
 */
export const ROUTING_OVERRIDES: ReadonlySet<string> = new Set([
  'x-original-url', 'x-rewrite-url', 'x-forwarded-uri', 'x-forwarded-prefix', 'x-forwarded-path', 'x-original-uri',
  'x-http-method-override', 'x-http-method', 'x-method-override', 'x-forwarded-method',
]);

/** The headers Portcullis itself writes for the upstream about the original request. */
const SET_BY_US = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip'] as const;

export class OriginRules {
  readonly peerTrusted: PeerTrust;
  readonly publicHost: string;
  readonly publicProto: string;
  readonly publicOrigin: string;
  private readonly trustFn: (addr: string) => boolean;

  constructor(trustProxy: boolean | readonly string[], publicUrl: string, private readonly cookieBase: string) {
    this.peerTrusted = compilePeerTrust(trustProxy);
    this.trustFn = (addr) => this.peerTrusted(addr);
    const pub = new URL(publicUrl);
    this.publicHost = pub.host;
    this.publicProto = pub.protocol.slice(0, -1);
    this.publicOrigin = pub.origin;
  }

  /** The Inbound for a raw request; `target` is its normalised path and query. */
  inbound(req: IncomingMessage, target: { path: string; query: string }): Inbound {
    const headers = req.headers;
    const peer = req.socket.remoteAddress ?? '';
    const trusted = this.peerTrusted(peer);
    const host = trusted ? lastEntry(headers['x-forwarded-host']) || headers.host : headers.host;
    const proto = (trusted ? lastEntry(headers['x-forwarded-proto']).toLowerCase() : '') || this.publicProto;
    const cookie = headers.cookie;
    const memo = connectionMemo(req.socket);
    return {
      id: requestIdOf(req, this.peerTrusted),
      method: req.method ?? 'GET',
      path: target.path,
      query: target.query,
      host,
      proto,
      port: (trusted && lastEntry(headers['x-forwarded-port'])) || portOf(host) || (proto === 'https' ? '443' : '80'),
      peer,
      clientIp: this.clientIpOf(req, trusted),
      trusted,
      headers,
      // Parsed only when one of ours may be there; other cookies are passed on byte for byte.
      cookies: cookie !== undefined && cookie.includes(this.cookieBase) ? memo.of(parseCookies, cookie) : NO_COOKIES,
      memo,
    };
  }

  /**
   * The same request describing another one (forward-auth: the request the fronting proxy received,
   * told in X-Forwarded-* / X-Original-URL). Id, peer, client, trust, headers and cookies stay.
   */
  retarget(r: Inbound, as: { method: string; host: string | undefined; proto: string | undefined; path: string; query: string }): Inbound {
    const proto = as.proto || this.publicProto;
    return { ...r, method: as.method, host: as.host, proto, path: as.path, query: as.query, port: portOf(as.host) || (proto === 'https' ? '443' : '80') };
  }

  /** The client: the peer, or from a trusted peer the first untrusted address in X-Forwarded-For (proxy-addr). */
  clientIpOf(req: IncomingMessage, trusted = this.peerTrusted(req.socket.remoteAddress)): string {
    return trusted && req.headers['x-forwarded-for'] !== undefined ? proxyAddr(req, this.trustFn) : req.socket.remoteAddress ?? '';
  }

  /** scheme://host of the request as the browser sees it. */
  originOf(r: Inbound): string {
    return `${r.proto}://${r.host ?? this.publicHost}`;
  }

  /**
   * Whether a request header from this peer describes the original request and must not reach the
   * upstream as sent. `canonicalName`: lower case with `_` read as `-`; `underscored`: whether the
   * client spelled it with `_`.
   */
  dropsForwarding(canonicalName: string, underscored: boolean, trusted: boolean): boolean {
    if (!FORWARDING_FAMILY.has(canonicalName) && !ROUTING_OVERRIDES.has(canonicalName)) return false;
    return underscored || !trusted || (SET_BY_US as readonly string[]).includes(canonicalName);
  }

  /**
   * What the upstream is told about the original request: X-Forwarded-For and Forwarded with this
   * hop appended to a trusted proxy's chain (started afresh otherwise), and X-Forwarded-Host/-Proto/
   * -Port and X-Real-IP from what `inbound` determined.
   */
  setForwarding(r: Inbound, out: HeaderBag): void {
    const h = r.headers;
    const priorFor = r.trusted ? joined(h['x-forwarded-for']) : undefined;
    out['x-forwarded-for'] = priorFor ? `${priorFor}, ${r.peer}` : r.peer;
    const host = r.host ?? this.publicHost;
    // Peer and Host repeat on every request of a connection: quoted once (routing/connection-memo.ts).
    const element = `for=${memoized(r.memo, forwardedValue, r.peer)};host=${memoized(r.memo, forwardedHost, host)};proto=${r.proto}`;
    const priorForwarded = r.trusted ? joined(h.forwarded) : undefined;
    out.forwarded = priorForwarded ? `${priorForwarded}, ${element}` : element;
    out['x-forwarded-host'] = host;
    out['x-forwarded-proto'] = r.proto;
    out['x-forwarded-port'] = r.port;
    out['x-real-ip'] = r.clientIp;
  }
}

const NO_COOKIES: Cookies = Object.freeze({}) as Cookies;
const parseCookies = (header: string): Cookies => Object.freeze(parseCookie(header)) as Cookies;

/** The last entry of a comma-separated forwarding header ('' when there is none). */
export function lastEntry(v: string | string[] | undefined): string {
  const s = Array.isArray(v) ? v.at(-1) : v;
  return s ? s.slice(s.lastIndexOf(',') + 1).trim() : '';
}

function joined(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v.join(', ') : v;
  return s && s.trim() !== '' ? s : undefined;
}

/** The port written in a Host value ('' when none). */
function portOf(host: string | undefined): string {
  if (!host) return '';
  const m = /:(\d{1,5})$/.exec(host);
  return m && !host.endsWith(']') ? m[1]! : '';
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** forwardedValue for the host= pair: the same rule, its own memo slot (a connection repeats both its peer and its Host). */
const forwardedHost = (host: string): string => forwardedValue(host);
/**
 * RFC 7239 §4: a token, or a quoted string; IPv6 addresses bracketed and quoted. An IPv6 address
 * has a `:`, never a token character, so the token test comes first: the usual IPv4 peer and plain
 * host name cost one regular-expression test, `host:port` no isIP (it was 1.8 % of a public-route
 * request's CPU).
 */
function forwardedValue(v: string): string {
  if (TOKEN.test(v)) return v;
  // An IPv6 address has two colons at least; `host:port` has one.
  const quoted = v.indexOf(':') !== v.lastIndexOf(':') && isIP(v) === 6 ? `[${v}]` : v;
  return `"${quoted.replace(/["\\]/g, '\\$&')}"`;
}
