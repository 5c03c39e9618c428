// Bench plumbing: child processes started and stopped by PID (never by name), free loopback ports,
// readiness probes, and RSS/CPU sampling of a process and its descendants from /proc.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { freePort } from '../dev/devidp/net.js';

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  logFile: string;
}

const children: Child[] = [];

export { freePort };

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/**
 * Starts a child in this process's session and process group (not detached): with
 * kernel.sched_autogroup_enabled=1 the scheduler shares CPU per session, so a server in another session
 * would get a CPU share of its own and skew the comparison (see shared/peer-bench/README.md).
 * stdout/stderr go to `logFile` (a file descriptor, so the bench's event loop never handles them),
 * unless `pipeStdout` is set.
 */
export function startChild(name: string, command: string, args: string[], logFile: string, opts: SpawnOptions & { pipeStdout?: boolean } = {}): Child {
  const fd = openSync(logFile, 'a');
  const proc = spawn(command, args, { ...opts, detached: false, stdio: ['ignore', opts.pipeStdout ? 'pipe' : fd, fd] });
  closeSync(fd);
  if (proc.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  const child = { name, proc, pid: proc.pid, logFile };
  children.push(child);
  return child;
}

export function exited(c: Child): boolean {
  return c.proc.exitCode !== null || c.proc.signalCode !== null;
}

/** Resolves with stdout so far once `marker` appears; rejects if the child exits or the time runs out. */
export function waitForStdout(c: Child, marker: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => finish(new Error(`${c.name}: no ${marker} on stdout within ${timeoutMs} ms (log: ${c.logFile})`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      out += chunk;
      if (marker.test(out)) finish(undefined);
    };
    const onExit = () => finish(new Error(`${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}) before it was ready (log: ${c.logFile})`));
    function finish(err: Error | undefined) {
      clearTimeout(timer);
      c.proc.stdout?.off('data', onData);
      c.proc.off('exit', onExit);
      if (err) reject(err);
      else {
        c.proc.stdout?.resume(); // keep draining, output no longer needed
        resolve(out);
      }
    }
    c.proc.stdout?.on('data', onData);
    c.proc.once('exit', onExit);
  });
}

/** One GET with node:http (not fetch: undici's fetch always sends Sec-Fetch-Mode: cors). */
export function httpGet(url: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: GET ${url}`)));
    req.on('error', reject);
  });
}

/** Polls until `accept(status)`; fails early when `child` exits. */
export async function waitForHttp(url: string, accept: (status: number) => boolean, timeoutMs: number, child?: Child, headers: Record<string, string> = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child && exited(child)) throw new Error(`${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}); see ${child.logFile}`);
    try {
      const r = await httpGet(url, headers, 2000);
      if (accept(r.status)) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timeout waiting for ${url} (${last})${child ? `; see ${child.logFile}` : ''}`);
}

/** SIGTERM by PID; SIGKILL after `graceMs`. Descendants that outlive the parent (Apache workers) too. */
export async function stopChild(c: Child, graceMs = 5000): Promise<void> {
  const descendants = descendantsOf(c.pid);
  if (!exited(c)) {
    const done = once(c.proc, 'exit');
    try { process.kill(c.pid, 'SIGTERM'); } catch { /* already gone */ }
    const timer = setTimeout(() => { if (!exited(c)) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
    await done;
    clearTimeout(timer);
  }
  const deadline = Date.now() + graceMs;
  for (const pid of descendants) {
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (alive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  const i = children.indexOf(c);
  if (i >= 0) children.splice(i, 1);
}

/** Stops every child this process started, newest first. */
export async function stopAll(): Promise<void> {
  for (const c of [...children].reverse()) await stopChild(c).catch(() => {});
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); it is gone for our purposes.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** PIDs of all descendants of `root`, from /proc/<pid>/stat. */
export function descendantsOf(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(Number(entry), Number(fields[1]));
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const frontier = [root];
  while (frontier.length) {
    const p = frontier.pop()!;
    for (const [pid, ppid] of parentOf) if (ppid === p) { out.push(pid); frontier.push(pid); }
  }
  return out;
}

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** utime + stime in clock ticks. */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface ResourceUse {
  /** Highest sampled RSS of the process tree, MB. */
  rssPeakMb: number;
  /** CPU used by the process tree over the run, % of one core. */
  cpuPercent: number;
}

/** Samples a process tree's RSS every 250 ms and its CPU time at start and end. */
export function sampleResources(rootPid: number): { stop(): ResourceUse } {
  const tree = () => [rootPid, ...descendantsOf(rootPid)];
  const startTicks = new Map(tree().map((p) => [p, cpuTicks(p)]));
  const started = process.hrtime.bigint();
  let peak = 0;
  const sample = () => { peak = Math.max(peak, tree().reduce((sum, p) => sum + rssBytes(p), 0)); };
  sample();
  const timer = setInterval(sample, 250);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const ticks = tree().reduce((sum, p) => sum + cpuTicks(p) - (startTicks.get(p) ?? 0), 0);
      return { rssPeakMb: peak / (1024 * 1024), cpuPercent: (ticks / TICKS_PER_SECOND / seconds) * 100 };
    },
  };
}

/** Busy CPU ticks of the whole machine (all cores) from /proc/stat: user+nice+system+irq+softirq+steal. */
function machineBusyTicks(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return f[0]! + f[1]! + f[2]! + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * CPU the rest of the machine used while a run went on: busy time of all cores minus the CPU of this
 * process and its descendants (generator, upstream, proxies), as % of one core. A busy box (a test
 * suite, a build) shows up here; on 2 cores, 200 would mean the run got no CPU at all.
 * Descendants that started or ended during the interval are counted only for the part seen.
 */
export function sampleOtherCpu(): { stop(): number } {
  const tree = () => [process.pid, ...descendantsOf(process.pid)];
  const startOurs = new Map(tree().map((p) => [p, cpuTicks(p)]));
  const startBusy = machineBusyTicks();
  const started = process.hrtime.bigint();
  return {
    stop() {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const ours = tree().reduce((sum, p) => sum + cpuTicks(p) - (startOurs.get(p) ?? 0), 0);
      const other = machineBusyTicks() - startBusy - ours;
      return Math.max(0, (other / TICKS_PER_SECOND / seconds) * 100);
    },
  };
}

/** Raw RESP over TCP: one inline command, the first reply line. */
export function redisCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    import('node:net').then(({ createConnection }) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      let reply = '';
      socket.setTimeout(2000, () => { socket.destroy(); reject(new Error(`redis ${command}: timeout`)); });
      socket.on('error', reject);
      socket.on('connect', () => socket.write(`${command}\r\n`));
      socket.on('data', (c: Buffer) => {
        reply += c;
        const end = reply.indexOf('\r\n');
        if (end >= 0) { socket.destroy(); resolve(reply.slice(0, end)); }
      });
    }, reject);
  });
}
