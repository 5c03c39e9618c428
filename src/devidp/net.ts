// Development and test tooling (demo, tests, bench): loopback ports and listening, in one place.
import type { Server } from 'node:http';
import { createServer } from 'node:net';

/** A port that was free a moment ago on 127.0.0.1 (for servers whose URL must be known before they start). */
export function freePort(): Promise<number> {
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
