// Development and test tooling (demo, tests, bench): loopback ports and listening, in one place.
import type { Server } from 'node:http';
import { createServer } from 'node:net';

/**
 * A port that was free a moment ago on 127.0.0.1 (for servers whose URL must be known before they
 * start). Picked below Linux's ephemeral range (32768–60999 by default): a port the kernel hands out
 * for `listen(0)` is also one it hands out as the source port of outgoing connections, and on a busy
 * test machine one of those could take it between this check and the real listen (EADDRINUSE).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
  return canListenOnAny();
}

/** Whether 127.0.0.1:port can be listened on right now (the listener is closed again). */
export function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function canListenOnAny(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Listens and resolves once bound (rejects on EADDRINUSE and friends). */
export function listenOn(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
