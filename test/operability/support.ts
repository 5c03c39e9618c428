// Shared by the operability tests: Portcullis as a real process (`node src/main.js --config FILE`
// compiled, or src/main.ts under tsx: helpers/entry.ts) with its JSON log lines captured, config files in a temporary directory, and
// small polling helpers. Everything started here is stopped by the test's own cleanup, by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { entryArgs } from '../helpers/entry.js';
import type { CleanupScope } from '../helpers/idp.js';
import { TEST_SESSION_SECRET } from '../helpers/stack.js';

export { waitFor } from '../helpers/wait.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * How long a spawned Portcullis (and its workers) may take to start and log: a deadline, not a wait —
 * generous because on a loaded machine (the suite three files at a time, other work beside it) a
 * start took over 20 s of wall time for about 1.5 s of CPU.
 */
export const PROCESS_START_MS = 60_000;

export interface LogLine {
  level?: number;
  msg?: string;
  pid?: number;
  [k: string]: unknown;
}

export interface PortcullisProcess {
  child: ChildProcess;
  pid: number;
  /** Every stdout line parsed as JSON (pino), in order; non-JSON lines as `{ msg: line }`. */
  logs: LogLine[];
  stderr: string[];
  /** Resolves on the first log line matching, or rejects after `ms`. */
  waitForLog(match: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  /** Resolves with the exit code and signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  signal(sig: NodeJS.Signals): void;
}

/** Writes `raw` (JSON is YAML) to a fresh temporary directory; `write` replaces it later. */
export function configFile(t: CleanupScope, raw: unknown): { path: string; write(raw: unknown): void; writeText(text: string): void } {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-op-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'portcullis.yaml');
  const writeText = (text: string) => writeFileSync(path, text);
  const write = (r: unknown) => writeText(JSON.stringify(r, null, 2));
  write(raw);
  return { path, write, writeText };
}

/** A config for a spawned proxy on fixed loopback ports. */
export function processConfig(o: {
  port: number;
  metricsPort: number;
  issuer: string;
  clientId?: string;
  clientSecret?: string;
  routes: Array<Record<string, unknown>>;
  extra?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: o.port },
    publicUrl: `http://127.0.0.1:${o.port}`,
    metrics: { host: '127.0.0.1', port: o.metricsPort },
    logLevel: 'debug',
    oidc: { issuer: o.issuer, clientId: o.clientId ?? 'portcullis', clientSecret: o.clientSecret ?? 'test-secret', scopes: ['openid', 'email', 'profile', 'groups'], timeout: '5s' },
    session: { secrets: [TEST_SESSION_SECRET] },
    routes: o.routes,
    ...o.extra,
  };
}

/** Starts `portcullis --config FILE` as a child process; killed (SIGKILL, by PID) in cleanup if still running. */
export function spawnPortcullis(t: CleanupScope, file: string, env: Record<string, string> = {}): PortcullisProcess {
  const child = spawn(process.execPath, [...entryArgs('src/main.ts'), '--config', file], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters = new Set<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  let buffered = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.trim()) continue;
      let parsed: LogLine;
      try { parsed = JSON.parse(line) as LogLine; } catch { parsed = { msg: line }; }
      logs.push(parsed);
      for (const w of waiters) if (w.match(parsed)) { waiters.delete(w); w.resolve(parsed); }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  let exitedAt: { code: number | null; signal: NodeJS.Signals | null; at: number } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.once('exit', (code, signal) => { exitedAt = { code, signal, at: Date.now() }; resolve(exitedAt); });
  });
  t.after(async () => {
    if (!exitedAt && child.pid) {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
      await exited;
    }
  });
  return {
    child,
    pid: child.pid!,
    logs,
    stderr,
    exited,
    signal: (sig) => { process.kill(child.pid!, sig); },
    waitForLog(match, ms = PROCESS_START_MS) {
      const found = logs.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { match, resolve: (l: LogLine) => { clearTimeout(timer); resolve(l); } };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no matching log line within ${ms} ms; exit ${JSON.stringify(exitedAt)}; last lines:\n${logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr.join('').slice(-3000)}`));
        }, ms);
        waiters.add(w);
      });
    },
  };
}

/** GET with no keep-alive reuse: every call is a fresh connection (so cluster workers take turns). */
export async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const r = await request(url, { headers, reset: true });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

/** True while a process with this PID exists. */
export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
