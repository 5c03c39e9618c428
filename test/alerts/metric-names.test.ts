// Every metric name the alerting rules and the dashboard use is one a running Portcullis exports:
// a real proxy (dev IdP in-process, a loopback upstream) serves a sign-in and a few requests, and its
// /metrics must name each one — a renamed metric fails here instead of silently never alerting.
// The cluster primary's own two metrics exist only with workers > 1; they are checked against the
// names src/cluster.ts registers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { repoRoot } from '../packaging/chart.js';
import { missingGoReason } from '../packaging/render/renderer.js';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { createMetrics } from '../../src/metrics.js';
import { isErrorCode } from '../../src/errors.js';
import { dashboardExprs, dashboardFile, metricNames, readDashboard, renderedRules } from './rules.js';

/** The names /metrics text exports: each family's `# TYPE`, with a histogram's _bucket/_sum/_count. */
function exported(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m;
    names.add(name!);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

/** The metrics the cluster primary registers itself (src/cluster.ts), not served by a single process. */
function primaryMetrics(): Set<string> {
  const source = readFileSync(join(repoRoot, 'src', 'cluster.ts'), 'utf8');
  return new Set([...source.matchAll(/new (?:Gauge|Counter|Histogram)\(\{ name: '(portcullis_[a-z0-9_]+)'/g)].map((m) => m[1]!));
}

test('every metric the rules and the dashboard use is exported by a running Portcullis', { skip: missingGoReason() }, async (t) => {
  const s = await startStack(t, {
    routes: [
      { name: 'down', match: { path: '/down' }, upstream: 'http://127.0.0.1:1' },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
  });
  const bob = await loginViaHttp(`${s.url}/home`, { user: 'bob', password: 'bob-password' });
  assert.equal(bob.status, 200, 'sign-in');
  const cookie = bob.jar.header(s.url);
  for (const [path, status] of [['/reports', 200], ['/down/x', 502]] as const) {
    const r = await request(`${s.url}${path}`, { headers: { cookie, accept: 'application/json' } });
    await r.body.dump();
    assert.equal(r.statusCode, status, path);
  }
  const res = await request(`${s.server.metricsUrl}/metrics`);
  assert.equal(res.statusCode, 200);
  const text = await res.body.text();
  // The traffic above is in it (the listener is the one that counted it).
  assert.match(text, /^portcullis_logins_total\{result="success",provider="default"\} 1$/m);
  assert.match(text, /^portcullis_upstream_errors_total\{route="down",kind="\w+"\} 1$/m);

  const primary = primaryMetrics();
  assert.deepEqual([...primary].sort(), ['portcullis_worker_restarts_total', 'portcullis_workers']);
  const available = new Set([...exported(text), ...primary]);

  const rules = JSON.stringify(renderedRules());
  const dashboard = readFileSync(dashboardFile, 'utf8');
  const used = new Map<string, string>();
  for (const name of metricNames(rules)) used.set(name, 'files/prometheus-rules.yaml');
  for (const name of metricNames(dashboard)) used.set(name, used.has(name) ? 'both' : 'files/dashboard.json');
  assert.ok(used.size >= 15, `${used.size} names found`);
  const unknown = [...used].filter(([name]) => !available.has(name)).map(([name, where]) => `${name} (${where})`);
  assert.deepEqual(unknown, [], 'names used but not exported');

  // And the other way round: every Portcullis metric (the process defaults aside) is on the dashboard.
  const own = [...exported(text), ...primary].filter((n) => !/^portcullis_(process|nodejs)_/.test(n) && !/_(bucket|sum|count)$/.test(n));
  const shown = new Set(metricNames(dashboard).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
  assert.deepEqual(own.filter((n) => !shown.has(n)), [], 'metrics missing from the dashboard');
});

/** Labels every series has from the scrape (target labels), or a histogram bucket's bound. */
const SCRAPE_LABELS = new Set(['namespace', 'job', 'instance', 'pod', 'le']);

test('the label names the rules and the dashboard select and group by are the metrics\' own; sign-in results are success or an error code', { skip: missingGoReason() }, () => {
  // The label names each family is declared with (prom-client's own objects, as src/metrics.ts
  // creates them), and the route histogram's, which is not a prom-client Histogram.
  const labels = new Map<string, Set<string>>();
  for (const m of createMetrics({ defaultMetrics: false }).registry.getMetricsAsArray()) {
    const declared = (m as unknown as { labelNames?: string[] }).labelNames ?? [];
    labels.set((m as unknown as { name: string }).name, new Set(declared));
  }
  labels.set('portcullis_http_request_duration_seconds', new Set(['route']));
  labels.set('portcullis_workers', new Set());
  labels.set('portcullis_worker_restarts_total', new Set());
  const family = (name: string): string => (labels.has(name) ? name : name.replace(/_(bucket|sum|count)$/, ''));

  const exprs = [
    ...renderedRules().groups.flatMap((g) => g.rules.map((r) => r.expr)),
    ...dashboardExprs(readDashboard()),
  ];
  const problems: string[] = [];
  let checked = 0;
  for (const expr of exprs) {
    const families = new Set(metricNames(expr).map(family).filter((f) => labels.has(f)));
    for (const m of expr.matchAll(/\b(portcullis_[a-z0-9_]*[a-z0-9])\{([^}]*)\}/g)) {
      const f = family(m[1]!);
      const own = labels.get(f);
      if (!own) continue; // process defaults: checked by name above
      for (const [, label, value] of m[2]!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"/g)) {
        checked += 1;
        if (!SCRAPE_LABELS.has(label!) && !own.has(label!)) problems.push(`${m[0]}: ${f} has no label ${label}`);
        if (f === 'portcullis_logins_total' && label === 'result') {
          for (const v of value!.split('|')) if (v !== 'success' && !isErrorCode(v)) problems.push(`${m[0]}: ${v} is not a sign-in result`);
        }
      }
    }
    // Grouping labels, where the expression reads one family (recording-rule expressions mix several).
    if (families.size === 1) {
      const own = labels.get([...families][0]!)!;
      for (const by of expr.matchAll(/\bby \(([^)]*)\)/g)) {
        for (const label of by[1]!.split(',').map((x) => x.trim())) {
          checked += 1;
          if (!SCRAPE_LABELS.has(label) && !own.has(label)) problems.push(`${expr}: by ${label}`);
        }
      }
    }
  }
  assert.ok(checked > 50, `${checked} label uses checked`);
  assert.deepEqual(problems, []);
});

