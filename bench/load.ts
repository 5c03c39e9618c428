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
export async function fixedRate(spec: LoadSpec, opts: { rate: number; seconds: number; connections: number }, shadow?: LoadSpec): Promise<LoadResult & { shadow?: LoadResult }> {
  const target = (s: LoadSpec) => {
    const url = new URL(s.url);
    return {
      spec: s,
      pool: new Pool(url.origin, { connections: opts.connections, pipelining: 1, keepAliveTimeout: 30_000 }),
      path: url.pathname + url.search,
      samples: new Samples(),
      codes: {} as Record<string, number>,
      errors: 0,
    };
  };
  const main = target(spec);
  // With a shadow, every request to `spec` has a twin to `shadow` half an interval later: both see the
  // same moments of the (shared, noisy) machine, so their difference is what `spec` adds.
  const twin = shadow ? target(shadow) : undefined;
  const total = Math.round(opts.rate * opts.seconds);
  const intervalNs = 1e9 / opts.rate;
  const inFlight = new Set<Promise<void>>();
  const start = process.hrtime.bigint();
  let sent = 0;

  const fire = (t: ReturnType<typeof target>) => {
    const t0 = process.hrtime.bigint();
    const p = t.pool.request({ path: t.path, method: 'GET', headers: t.spec.headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
      .then(async (res) => {
        await res.body.dump();
        t.samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        t.codes[res.statusCode] = (t.codes[res.statusCode] ?? 0) + 1;
      }, () => { t.errors += 1; })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  await new Promise<void>((resolve) => {
    let twinsSent = 0;
    const tick = () => {
      const elapsed = Number(process.hrtime.bigint() - start);
      const due = Math.min(total, Math.floor(elapsed / intervalNs) + 1);
      while (sent < due) { fire(main); sent += 1; }
      if (twin) {
        const twinsDue = Math.min(total, Math.floor(elapsed / intervalNs + 0.5));
        while (twinsSent < twinsDue) { fire(twin); twinsSent += 1; }
      }
      if (sent >= total && (!twin || twinsSent >= total)) resolve();
      else {
        const next = twin ? Math.min(sent * intervalNs, (twinsSent + 0.5) * intervalNs) : sent * intervalNs;
        setTimeout(tick, Math.max(0, (next - Number(process.hrtime.bigint() - start)) / 1e6));
      }
    };
    tick();
  });
  await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 10_000))]);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await Promise.all([main.pool.destroy(), twin?.pool.destroy()]);
  const result: LoadResult & { shadow?: LoadResult } = summarise(main.samples, main.codes, seconds, main.errors, spec);
  if (twin) result.shadow = summarise(twin.samples, twin.codes, seconds, twin.errors, twin.spec);
  return result;
}
