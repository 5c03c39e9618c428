// Test helper: a throwaway redis-server on a free loopback port, no persistence, killed by PID after the test.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { freePort } from '../../dev/devidp/net.js';
import { until } from './wait.js';
import { findTool, requireTool, type SkippableScope } from './chromium.js';

export interface TestRedis {
  url: string;
  port: number;
  /** PID of the running server (changes after start()). */
  readonly pid: number;
  /** Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty, and waits until it answers PING. */
  start(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

/** Resolves to undefined (the test is then skipped) when redis-server is missing locally; fails with CI=true. */
export async function startRedis(t: SkippableScope): Promise<TestRedis | undefined> {
  if (!requireTool(t, 'redis-server')) return undefined;
  const binary = findTool('redis-server')!;
  const port = await freePort();
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    if (child && child.exitCode === null && child.signalCode === null) return;
    const proc = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    let stderr = '';
    proc.stderr?.on('data', (c: Buffer) => { stderr += c; });
    try {
      await waitForPong(port, proc);
    } catch (err) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not come up: ${(err as Error).message}\n${stderr}`);
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    process.kill(proc.pid!, 'SIGKILL');
    await exited;
  }

  await start();
  t.after(stop);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return child!.pid!;
    },
    stop,
    start,
  };
}

/** Raw RESP over TCP: no client library needed just to know the server is up. */
async function waitForPong(port: number, proc: ChildProcess): Promise<void> {
  await until(`a PONG from port ${port}`, READY_TIMEOUT_MS, () => {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`exited with ${proc.exitCode ?? proc.signalCode}`);
    return ping(port);
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (c: Buffer) => {
      reply += c;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}
