// Request ids: one rule for every way a request comes in (the Fastify path, the hot path).
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { PeerTrust } from './routing/trust.js';

/**
 * The id given to a request, kept on it: every stage (span, Inbound, error answer) names the same
 * one. A symbol-keyed property rather than a WeakMap: no ephemeron table entry per request.
 */
const GIVEN = Symbol('portcullis.requestId');
type WithId = IncomingMessage & { [GIVEN]?: string };

/**
 * X-Request-Id is believed only from a trusted proxy, and only if it looks sane; otherwise a new
 * UUID — made once per request, so the tracing span, the log lines, the upstream's X-Request-Id
 * and an error answer all carry the same id.
 */
export function requestIdOf(req: IncomingMessage, peerTrusted: PeerTrust): string {
  let id = (req as WithId)[GIVEN];
  if (id === undefined) {
    const sent = req.headers['x-request-id'];
    id = typeof sent === 'string' && /^[\w.:-]{1,128}$/.test(sent) && peerTrusted(req.socket.remoteAddress) ? sent : randomUUID();
    (req as WithId)[GIVEN] = id;
  }
  return id;
}
