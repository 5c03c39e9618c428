// Forward stage, long-lived connections: WebSockets and server-sent-event streams outlive the
// request that authorized them, so each is remembered with its session and cut when the session
// ends — at once on sign-out, back-channel logout or a refused refresh handled by this process;
// within CONNECTION_SWEEP_MS for the absolute timeout and for revocations learnt from elsewhere.
import type { Duplex } from 'node:stream';
import type { EventEmitter } from 'node:events';

/** How often live connections are checked against absolute timeouts and shared revocations. */
export const CONNECTION_SWEEP_MS = 5_000;

/** What a connection is cut for: the session's own fields. */
export interface ConnectionOwner {
  readonly sid: string;
  readonly sub: string;
  readonly idpSid: string | undefined;
  readonly createdAt: number;
}

export class LiveConnections<S extends ConnectionOwner = ConnectionOwner> {
  private readonly connections = new Map<Duplex, S>();
  private sweepTimer: NodeJS.Timeout | undefined;

  /** `ended(s)`: whether a session is over (absolute timeout, revocation) — asked at every sweep. */
  constructor(private readonly ended: (s: S) => boolean) {}

  /** Remembers a live connection; `until`: an event-stream response, whose end stops the tracking. */
  track(session: S, socket: Duplex, until?: EventEmitter): void {
    this.connections.set(socket, session);
    const untrack = () => this.connections.delete(socket);
    socket.once('close', untrack);
    until?.once('close', untrack);
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.endWhere(this.ended), CONNECTION_SWEEP_MS);
      this.sweepTimer.unref();
    }
  }

  /** Closes every live connection whose session matches; returns how many. */
  endWhere(match: (s: S) => boolean): number {
    let n = 0;
    for (const [socket, s] of this.connections) {
      if (match(s)) { socket.destroy(); this.connections.delete(socket); n++; }
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
    this.endWhere(() => true);
  }
}
