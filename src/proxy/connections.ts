// Forward stage, long-lived connections: WebSockets and server-sent-event streams outlive the
// request that authorized them, so each is remembered with its session and cut when the session
// ends — at once on sign-out, back-channel logout or a refused refresh handled by this process;
// within CONNECTION_SWEEP_MS for the absolute timeout and for revocations learnt from elsewhere.
//
// An event stream is simply cut. A WebSocket is closed the way RFC 6455 §5.5.1 says: once the frame
// under way in each direction is complete, the client gets a Close frame (1008 "session ended";
// 1001 at shutdown) and the upstream a masked one, nothing more is relayed, and both sockets are
// destroyed CLOSE_GRACE_MS later if the peers have not closed them by then. Finding frame
// boundaries needs no payload parsing: each direction's frame headers are followed as the bytes go
// by (a few comparisons per frame, payloads skipped by length).
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { EventEmitter } from 'node:events';

/** How often live connections are checked against absolute timeouts and shared revocations. */
export const CONNECTION_SWEEP_MS = 5_000;

/** How long a closing WebSocket's peers get to answer the Close frame before both sockets are cut. */
export const CLOSE_GRACE_MS = 1_000;

/** What a closed WebSocket's Close frame says (RFC 6455 §7.4). Reason: ≤ 123 bytes of UTF-8. */
export interface CloseReason { readonly code: number; readonly reason: string }

/** Sign-out, back-channel logout, revocation, refused refresh, absolute timeout. */
export const SESSION_ENDED: CloseReason = Object.freeze({ code: 1008, reason: 'session ended' });
/** Shutdown (grace period over). */
export const SHUTTING_DOWN: CloseReason = Object.freeze({ code: 1001, reason: 'server shutting down' });

/** What a connection is cut for: the session's own fields. */
export interface ConnectionOwner {
  readonly sid: string;
  readonly sub: string;
  readonly idpSid: string | undefined;
  readonly createdAt: number;
}

interface Tracked<S> {
  readonly session: S;
  end(why: CloseReason): void;
}

export class LiveConnections<S extends ConnectionOwner = ConnectionOwner> {
  private readonly connections = new Map<Duplex, Tracked<S>>();
  private sweepTimer: NodeJS.Timeout | undefined;

  /** `ended(s)`: whether a session is over (absolute timeout, revocation) — asked at every sweep. */
  constructor(private readonly ended: (s: S) => boolean) {}

  /** Remembers a live connection (cut when its session ends); `until`: an event-stream response, whose end stops the tracking. */
  track(session: S, socket: Duplex, until?: EventEmitter): void {
    this.add(socket, { session, end: () => socket.destroy() }, until);
  }

  /**
   * Remembers a WebSocket being proxied on `socket` (the client's), from before the upstream has
   * answered: the relay then writes the 101 and pipes the upstream socket into it. `head`: the
   * client's bytes that came with the upgrade request (sent upstream first). Before the 101 the
   * socket is cut; after it, it is closed with a Close frame.
   */
  trackWebSocket(session: S, socket: Duplex, head: Buffer = Buffer.alloc(0)): void {
    const link = new WebSocketLink(socket, head);
    this.add(socket, { session, end: (why) => link.close(why) });
  }

  private add(socket: Duplex, entry: Tracked<S>, until?: EventEmitter): void {
    this.connections.set(socket, entry);
    const untrack = () => this.connections.delete(socket);
    socket.once('close', untrack);
    until?.once('close', untrack);
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.endWhere(this.ended), CONNECTION_SWEEP_MS);
      this.sweepTimer.unref();
    }
  }

  /** Closes every live connection whose session matches; returns how many. */
  endWhere(match: (s: S) => boolean, why: CloseReason = SESSION_ENDED): number {
    let n = 0;
    for (const [socket, t] of this.connections) {
      if (match(t.session)) { this.connections.delete(socket); t.end(why); n++; }
    }
    return n;
  }

  /** Closes every live connection of a Portcullis session id. */
  endSession(sid: string): number {
    return this.endWhere((s) => s.sid === sid);
  }

  close(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.endWhere(() => true, SHUTTING_DOWN);
  }
}

/** A Close frame (RFC 6455 §5.5.1): server-to-client unmasked, client-to-server masked with a fresh key. */
export function closeFrame(why: CloseReason, masked: boolean): Buffer {
  const reason = Buffer.from(why.reason, 'utf8').subarray(0, 123);
  const payload = Buffer.alloc(2 + reason.length);
  payload.writeUInt16BE(why.code, 0);
  reason.copy(payload, 2);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const key = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), key, payload]);
}

/**
 * Follows one direction of a WebSocket byte stream frame by frame (RFC 6455 §5.2 header: 2 bytes,
 * then a 16- or 64-bit length, then a 4-byte masking key when masked; then the payload), so a frame
 * of our own can be put between two frames, never inside one.
 */
export class FrameCursor {
  private readonly header = Buffer.alloc(14);
  private have = 0;
  private need = 2;
  private left = 0;

  /** Between two frames. */
  get atBoundary(): boolean {
    return this.have === 0 && this.left === 0;
  }

  /** Takes in `chunk`; with `stop`, only up to the end of the current frame. Returns how many bytes were taken. */
  consume(chunk: Uint8Array, stop = false): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.left > 0) {
        const k = Math.min(this.left, n - i);
        this.left -= k;
        i += k;
        if (this.left === 0 && stop) return i;
        continue;
      }
      this.header[this.have++] = chunk[i++]!;
      if (this.have === 2) {
        const len7 = this.header[1]! & 0x7f;
        this.need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.header[1]! & 0x80 ? 4 : 0);
      }
      if (this.have >= 2 && this.have === this.need) {
        const len7 = this.header[1]! & 0x7f;
        this.left = len7 === 126 ? this.header.readUInt16BE(2) : len7 === 127 ? Number(this.header.readBigUInt64BE(2)) : len7;
        this.have = 0;
        this.need = 2;
        if (this.left === 0 && stop) return i;
      }
    }
    return i;
  }
}

const END_OF_HEAD = [13, 10, 13, 10];

/**
 * One proxied WebSocket, seen from the client's socket. The relay (proxy/relay.ts) writes the
 * upstream's 101 head (and any bytes that came with it) to the client socket, then pipes the
 * upstream socket into it and it into the upstream socket. This watches the bytes written to the
 * client (past the head) and read from it, so each direction's frame boundary is known.
 */
class WebSocketLink {
  private upstream: Duplex | undefined;
  /** Matched bytes of the 101 head's closing CRLFCRLF; 4 once the head is out. */
  private headMatched = 0;
  private readonly down = new FrameCursor();
  private readonly up = new FrameCursor();
  private readonly originalWrite: Duplex['write'];
  private readonly feedUp = (c: Buffer) => { this.up.consume(c); };
  private closing = false;

  constructor(private readonly client: Duplex, head: Buffer) {
    this.up.consume(head);
    this.originalWrite = client.write;
    const link = this;
    client.write = function write(this: Duplex, chunk: unknown, ...rest: unknown[]) {
      link.sawDown(chunk, typeof rest[0] === 'string' ? rest[0] as BufferEncoding : undefined);
      return (link.originalWrite as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as Duplex['write'];
    client.once('pipe', (src: Duplex) => {
      if (this.closing) { src.destroy(); return; }
      this.upstream = src;
      client.on('data', this.feedUp);
    });
    client.once('close', () => this.restoreWrite());
  }

  private restoreWrite(): void {
    if (this.client.write !== this.originalWrite) this.client.write = this.originalWrite;
  }

  /** Bytes on their way to the client: the 101 head, then frames. */
  private sawDown(chunk: unknown, encoding: BufferEncoding | undefined): void {
    let b = typeof chunk === 'string' ? Buffer.from(chunk, encoding ?? 'utf8') : chunk as Uint8Array;
    if (this.headMatched < 4) {
      let i = 0;
      while (i < b.length && this.headMatched < 4) {
        const c = b[i++];
        this.headMatched = c === END_OF_HEAD[this.headMatched] ? this.headMatched + 1 : c === 13 ? 1 : 0;
      }
      b = b.subarray(i);
    }
    if (b.length) this.down.consume(b);
  }

  close(why: CloseReason): void {
    if (this.closing) return;
    this.closing = true;
    const { client, upstream } = this;
    this.restoreWrite();
    if (!upstream || this.headMatched < 4 || client.destroyed) { client.destroy(); return; }
    const cut = setTimeout(() => { client.destroy(); upstream.destroy(); }, CLOSE_GRACE_MS);
    cut.unref();
    client.once('close', () => clearTimeout(cut));
    client.off('data', this.feedUp);
    upstream.unpipe(client);
    client.unpipe(upstream);

    let clientClosed = false;
    let upBoundary = false;
    const closeUpstream = () => {
      if (!clientClosed || !upBoundary || upstream.destroyed) return;
      upstream.end(closeFrame(why, true));
      upstream.resume();
    };

    // Client → upstream: the rest of a frame under way goes on; the client's answer to our Close
    // (and anything else) is read and dropped.
    const fromClient = (c: Buffer) => {
      if (upBoundary) return;
      const k = this.up.consume(c, true);
      if (k > 0 && !upstream.destroyed) upstream.write(c.subarray(0, k));
      if (this.up.atBoundary) { upBoundary = true; closeUpstream(); }
    };
    if (this.up.atBoundary) upBoundary = true;
    client.on('data', fromClient);
    client.resume();

    // Upstream → client: the rest of a frame under way, then our Close, then nothing.
    const sendClose = () => {
      upstream.off('data', fromUpstream);
      if (client.destroyed || !client.writable) return;
      client.end(closeFrame(why, false), () => { clientClosed = true; closeUpstream(); });
    };
    const fromUpstream = (c: Buffer) => {
      const k = this.down.consume(c, true);
      if (k > 0 && !client.destroyed) client.write(c.subarray(0, k));
      if (this.down.atBoundary) sendClose();
    };
    if (this.down.atBoundary) sendClose();
    else upstream.on('data', fromUpstream);
    upstream.resume();
  }
}
