// End to end: a real Prometheus (Debian's prometheus package, the one that ships promtool) scrapes a
// real Portcullis every second and evaluates the chart's rules. An ID token that fails verification
// (Portcullis accepts only ES256, the dev IdP signs with RS256) fires PortcullisIdTokenInvalid — a
// failure counter born at its first count, which increase() alone would never see — and the login
// SLI records the failures; the successful sign-in before them fires nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { freePort } from '../../dev/devidp/net.js';
import { findTool } from '../helpers/chromium.js';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { waitFor } from '../helpers/wait.js';
import { missingGoReason } from '../packaging/render/renderer.js';
import { PROMETHEUS_PACKAGE, tempDir, writeRuleFile } from './rules.js';

function missingPrometheus(): string | undefined {
  if (findTool('prometheus')) return undefined;
  const message = `prometheus not found (apt-get install ${PROMETHEUS_PACKAGE}; see .ci/run)`;
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  return message;
}

interface Alert { labels: Record<string, string>; state: string }

test('a real Prometheus scraping Portcullis fires PortcullisIdTokenInvalid on an ID token that fails verification', { skip: missingPrometheus() ?? missingGoReason(), timeout: 180_000 }, async (t) => {
  const s = await startStack(t, {
    routes: [{ name: 'app', match: { path: '/' }, upstream: '{upstream}' }],
  });
  /** host:port of a proxy's metrics listener, Prometheus's scrape target. */
  const target = (st: typeof s): string => {
    if (!st.server.metricsUrl) throw new Error('the stack has no metrics listener');
    return new URL(st.server.metricsUrl).host;
  };
  const dir = tempDir();
  writeRuleFile(dir, { selector: 'job="portcullis"' });
  writeFileSync(join(dir, 'prometheus.yml'), stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: ['portcullis-rules.yaml'],
    scrape_configs: [{ job_name: 'portcullis', static_configs: [{ targets: [target(s)] }] }],
  }));
  const port = await freePort();
  const prom = spawn('prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  prom.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  // Stopped by its PID, then its data directory removed once it has exited.
  t.after(async () => {
    if (prom.exitCode === null && prom.signalCode === null) {
      const exited = new Promise((r) => prom.once('exit', r));
      prom.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const api = `http://127.0.0.1:${port}/api/v1`;

  const query = async (q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
    const r = await request(`${api}/query?query=${encodeURIComponent(q)}`);
    const body = await r.body.json() as { data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    return body.data?.result ?? [];
  };
  const alerts = async (): Promise<Alert[]> => {
    const r = await request(`${api}/alerts`);
    return ((await r.body.json()) as { data: { alerts: Alert[] } }).data.alerts;
  };
  /** Polls until check() answers a value (Prometheus works in its own time: scrapes and evaluations every second). */
  const until = <T>(what: string, check: () => Promise<T | undefined>, ms = 60_000): Promise<T> => waitFor(async () => {
    if (prom.exitCode !== null) throw new Error('prometheus exited');
    return check().catch(() => undefined);
  }, ms, what, { everyMs: 250, retryErrors: false }).catch((err: Error) => { throw new Error(`${what}: ${err.message} (prometheus: ${stderr.slice(-2000)})`); }) as Promise<T>;

  await until('Portcullis scraped', async () => ((await query('up{job="portcullis"} == 1')).length === 1 ? true : undefined));
  const bob = await loginViaHttp(`${s.url}/home`, { user: 'bob', password: 'bob-password' });
  assert.equal(bob.status, 200, 'the first sign-in works');
  await until('the sign-in scraped', async () => ((await query('portcullis_logins_total{result="success"} == 1')).length === 1 ? true : undefined));

  // Now only ES256 ID tokens are accepted: the dev IdP's RS256 ones fail verification.
  const s2 = await startStack(t, {
    existingIdp: s.idp,
    routes: [{ name: 'app', match: { path: '/' }, upstream: '{upstream}' }],
    edit: (raw) => { (raw.oidc as Record<string, unknown>).idTokenSigningAlgs = ['ES256']; },
  });
  // The second proxy is scraped under the same job (two targets, as two pods would be).
  writeFileSync(join(dir, 'prometheus.yml'), stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: ['portcullis-rules.yaml'],
    scrape_configs: [{ job_name: 'portcullis', static_configs: [{ targets: [target(s), target(s2)] }] }],
  }));
  prom.kill('SIGHUP');
  await until('both targets scraped', async () => ((await query('up{job="portcullis"} == 1')).length === 2 ? true : undefined));
  assert.deepEqual((await alerts()).filter((a) => a.labels.alertname === 'PortcullisIdTokenInvalid'), [], 'quiet while every ID token verifies');

  const alice = await loginViaHttp(`${s2.url}/home`, { user: 'alice', password: 'alice-password' });
  assert.equal(alice.status, 401, 'the sign-in with an RS256 ID token is refused');
  assert.match(await (await request(`${s2.server.metricsUrl}/metrics`)).body.text(), /^portcullis_logins_total\{result="ERR_CALLBACK_ID_TOKEN_INVALID",provider="default"\} 1$/m);

  const firing = await until('PortcullisIdTokenInvalid firing', async () => {
    const a = (await alerts()).find((x) => x.labels.alertname === 'PortcullisIdTokenInvalid' && x.state === 'firing');
    return a;
  });
  assert.equal(firing.labels.severity, 'critical');
  assert.equal(firing.labels.job, 'portcullis');
  // The failure series exists at 0 from the start (src/metrics.ts), so increase() sees the first failure.
  const increase = await until('the first failure in increase()', async () => {
    const r = await query('sum(increase(portcullis_logins_total{result="ERR_CALLBACK_ID_TOKEN_INVALID"}[15m]))');
    const v = Number(r[0]?.value[1] ?? 0);
    return v > 0 ? v : undefined;
  });
  assert.ok(increase > 0);
  // The login SLI counts it too; a second failure, and the success series has not moved since: every
  // counted sign-in failed.
  const bobAgain = await loginViaHttp(`${s2.url}/home`, { user: 'bob', password: 'bob-password' });
  assert.equal(bobAgain.status, 401);
  await until('the second failure scraped', async () => ((await query('sum(portcullis_logins_total{result="ERR_CALLBACK_ID_TOKEN_INVALID"}) == 2')).length === 1 ? true : undefined));
  // Two failures at the second proxy, bob's one success at the first, all within the window: 2/3
  // (rate() extrapolates each series over its own samples, so not exactly). Until the rule has been
  // evaluated on the scrape with the second failure it reads about 1/2 (one failure, one success).
  let last = Number.NaN;
  const ratio = await until('the login error ratio with both failures (above 1/2)', async () => {
    const r = await query('portcullis:login_error_ratio:rate5m{job="portcullis"} > 0');
    if (r.length === 1) last = Number(r[0]!.value[1]);
    return last > 0.55 ? last : undefined;
  }).catch((err: Error) => { throw new Error(`${err.message}; last read ${last}`); });
  assert.ok(ratio < 0.8, `login error ratio ${ratio}, want about 2/3`);
});
