// Request ids: one rule for every way a request comes in (the Fastify path, the hot path).
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { PeerTrust } from './routing/trust.js';

/** Ids already given, per request: every stage (span, Inbound, error answer) names the same one. */
const given = new WeakMap<IncomingMessage, string>();

/**
 * X-Request-Id is believed only from a trusted proxy, and only if it looks sane; otherwise a new
 * UUID — made once per request, so the tracing span, the log lines, the upstream's X-Request-Id
 * and an error answer all carry the same id.
 */
export function requestIdOf(req: IncomingMessage, peerTrusted: PeerTrust): string {
  let id = given.get(req);
  if (id === undefined) {
    const sent = req.headers['x-request-id'];
    id = typeof sent === 'string' && /^[\w.:-]{1,128}$/.test(sent) && peerTrusted(req.socket.remoteAddress) ? sent : randomUUID();
    given.set(req, id);
  }
  return id;
}
