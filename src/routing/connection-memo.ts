// Routing stage: what a client connection repeats. A browser sends the same Cookie header — 2–4 KB
// with a cookie-store session — on every request of a keep-alive connection, and three pure
// functions of it ran per request: parsing it, removing Portcullis's cookies before the upstream
// sees it, and hashing the session cookie for the session cache's key (together ~6 % of an
// authenticated request's CPU, the hash most of it). A ConnectionMemo keeps, per function, the
// last input and its result, and reuses the result while the input is the very same string: an
// exact comparison, so a reused result is always the one the function would return. Results are
// shared by the connection's requests, so they must be immutable (the parsed cookies are frozen).
// Memory: per open connection, the last Cookie header and what was derived from it (a few KB,
// about what Node keeps per connection anyway); gone with the socket.
import type { Socket } from 'node:net';

const MEMO = Symbol('portcullis.connectionMemo');

export class ConnectionMemo {
  /** Function → [last input, its result]. A handful of functions per connection (and new ones after a reload). */
  private readonly slots = new Map<(input: string) => unknown, [string, unknown]>();

  /** `fn(input)`, computed once for as long as the connection keeps sending the same `input`. */
  of<O>(fn: (input: string) => O, input: string): O {
    const slot = this.slots.get(fn);
    if (slot !== undefined && slot[0] === input) return slot[1] as O;
    const out = fn(input);
    this.slots.set(fn, [input, out]);
    return out;
  }
}

/** The connection's memo (made on its first request; gone with the socket). */
export function connectionMemo(socket: Socket): ConnectionMemo {
  const s = socket as Socket & { [MEMO]?: ConnectionMemo };
  return (s[MEMO] ??= new ConnectionMemo());
}

/** `fn(input)` through `memo` when there is one. */
export function memoized<O>(memo: ConnectionMemo | undefined, fn: (input: string) => O, input: string): O {
  return memo === undefined ? fn(input) : memo.of(fn, input);
}
