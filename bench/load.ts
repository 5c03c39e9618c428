// Load generators, both in this process (no worker threads), both bounded in time:
//  - closed loop: autocannon, N connections each sending the next request when the last answered;
//  - fixed rate: an open-loop pacer over an undici Pool, one request every 1/rate s, to read latency at
//    a moderate load. (autocannon's overallRate sends each connection's quota for the second back to back
//    and then idles, so its p99 measures a burst, not a rate; it stays available as `autocannon`.)
// Latencies are recorded here per response in microseconds: autocannon's own histogram is 1 ms coarse.
import autocannon from 'autocannon';
import { Pool } from 'undici';

export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  /** Which statuses count as correct for this scenario. */
  expect: (status: number) => boolean;
}

export interface LoadResult {
  rps: number;
  total: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  max: number;
  codes: Record<string, number>;
  /** Responses with a status `expect` rejects. */
  unexpected: number;
  /** Socket errors + timeouts. */
  errors: number;
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Growable Float64Array: millions of latencies without millions of boxed numbers. */
class Samples {
  private buf = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  sorted(): Float64Array { return this.buf.slice(0, this.length).sort(); }
}

function summarise(samples: Samples, codes: Record<string, number>, seconds: number, errors: number, spec: LoadSpec): LoadResult {
  const lat = samples.sorted();
  const total = Object.values(codes).reduce((a, b) => a + b, 0);
  const ok = Object.entries(codes).filter(([k]) => spec.expect(Number(k))).reduce((a, [, v]) => a + v, 0);
  return {
    rps: total / seconds,
    total,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.length ? lat[lat.length - 1]! : Number.NaN,
    codes,
    unexpected: total - ok,
    errors,
  };
}

/** Closed loop at `connections` (autocannon, pipelining 1). */
export function closedLoop(spec: LoadSpec, opts: { connections: number; seconds: number; overallRate?: number }): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const samples = new Samples();
    const instance = autocannon({
      url: spec.url,
      headers: spec.headers,
      connections: opts.connections,
      duration: opts.seconds,
      pipelining: 1,
      timeout: 10,
      ...(opts.overallRate ? { overallRate: opts.overallRate } : {}),
    }, (err, res) => {
      if (err) {
        reject(err);
        return;
      }
      const codes = Object.fromEntries(Object.entries(res.statusCodeStats).map(([k, v]) => [k, v.count]));
      const seconds = (new Date(res.finish).getTime() - new Date(res.start).getTime()) / 1000;
      resolve(summarise(samples, codes, seconds, res.errors + res.timeouts, spec));
    });
    instance.on('response', (_client, _status, _bytes, ms) => { samples.push(ms); });
  });
}

/**
 * Open loop: requests are started on a fixed schedule whatever the answers do, over a keep-alive pool
 * of `connections`. Latency runs from the moment a request is handed to the pool to the end of its body.
 */
export async function fixedRate(spec: LoadSpec, opts: { rate: number; seconds: number; connections: number }): Promise<LoadResult> {
  const url = new URL(spec.url);
  const pool = new Pool(url.origin, { connections: opts.connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const samples = new Samples();
  const codes: Record<string, number> = {};
  let errors = 0;
  const total = Math.round(opts.rate * opts.seconds);
  const intervalNs = 1e9 / opts.rate;
  const path = url.pathname + url.search;
  const inFlight = new Set<Promise<void>>();
  const start = process.hrtime.bigint();
  let sent = 0;

  const fire = () => {
    const t0 = process.hrtime.bigint();
    const p = pool.request({ path, method: 'GET', headers: spec.headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
      .then(async (res) => {
        await res.body.dump();
        samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        codes[res.statusCode] = (codes[res.statusCode] ?? 0) + 1;
      }, () => { errors += 1; })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(Number(process.hrtime.bigint() - start) / intervalNs) + 1);
      while (sent < due) { fire(); sent += 1; }
      if (sent >= total) resolve();
      else setTimeout(tick, Math.max(0, (sent * intervalNs - Number(process.hrtime.bigint() - start)) / 1e6));
    };
    tick();
  });
  await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 10_000))]);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await pool.destroy();
  return summarise(samples, codes, seconds, errors, spec);
}
