// Request ids: one rule for every way a request comes in (the Fastify path, the hot path).
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { PeerTrust } from './routing/trust.js';

/** X-Request-Id is believed only from a trusted proxy, and only if it looks sane; otherwise a new UUID. */
export function requestIdOf(req: IncomingMessage, peerTrusted: PeerTrust): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) && peerTrusted(req.socket.remoteAddress) ? given : randomUUID();
}
