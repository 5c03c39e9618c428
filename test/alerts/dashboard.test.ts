// The Grafana dashboard (helm/portcullis/files/dashboard.json): a well-formed dashboard whose panels
// do not overlap, query through its datasource variable, select the chosen release only, read only
// recording rules the chart records, and whose every query is PromQL that Prometheus's own parser
// (promtool) accepts. The chart ships it in a ConfigMap for Grafana's sidecar (chart.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { isPlainObject } from '../packaging/chart.js';
import { missingGoReason } from '../packaging/render/renderer.js';
import { dashboardExprs, promtool, readDashboard, renderedRules, runPromtool, tempDir } from './rules.js';

interface Target { refId: string; expr: string; datasource: { type: string; uid: string } }
interface Panel { id: number; type: string; title: string; description?: string; gridPos: { x: number; y: number; w: number; h: number }; datasource?: { uid: string }; targets?: Target[] }
interface Variable { name: string; type: string; query: unknown }
interface Dashboard { uid: string; title: string; schemaVersion: number; panels: Panel[]; templating: { list: Variable[] } }

const dashboard = readDashboard() as Dashboard;
const DATASOURCE = '${datasource}';
const SELECTOR = 'namespace="$namespace", job="$job"';

test('the dashboard is a Grafana dashboard: uid, title, schema version, unique panel ids, a 24-column grid without overlaps', () => {
  assert.match(dashboard.uid, /^[a-z0-9-]{1,40}$/);
  assert.equal(dashboard.title, 'Portcullis');
  assert.ok(Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 36, 'schemaVersion');
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const cells = new Map<string, string>();
  for (const p of dashboard.panels) {
    assert.ok(['row', 'stat', 'timeseries'].includes(p.type), `${p.title}: panel type ${p.type}`);
    const { x, y, w, h } = p.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && y >= 0 && h > 0, `${p.title}: gridPos ${JSON.stringify(p.gridPos)}`);
    for (let i = x; i < x + w; i += 1) {
      for (let j = y; j < y + h; j += 1) {
        const other = cells.get(`${i},${j}`);
        assert.equal(other, undefined, `${p.title} overlaps ${other}`);
        cells.set(`${i},${j}`, p.title);
      }
    }
  }
});

test('every panel queries the chosen Prometheus data source, for the chosen namespace and release', () => {
  const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
  assert.equal(vars.get('datasource')?.type, 'datasource');
  assert.equal(vars.get('datasource')?.query, 'prometheus');
  assert.equal(vars.get('namespace')?.type, 'query');
  assert.equal(vars.get('job')?.type, 'query');
  const panels = dashboard.panels.filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 15, `${panels.length} panels`);
  for (const p of panels) {
    assert.equal(p.datasource?.uid, DATASOURCE, `${p.title}: panel data source`);
    assert.ok(p.description, `${p.title}: a description says what it shows`);
    assert.ok(p.targets && p.targets.length > 0, `${p.title}: targets`);
    assert.equal(new Set(p.targets.map((t) => t.refId)).size, p.targets.length, `${p.title}: refIds unique`);
    for (const t of p.targets) {
      assert.equal(t.datasource.uid, DATASOURCE, `${p.title} ${t.refId}: data source`);
      // Every series selector, of a metric or a recording rule, is narrowed to the chosen release.
      const selectors = [...t.expr.matchAll(/portcullis[_:][a-z0-9_:]*(\{[^}]*\})?/g)];
      assert.ok(selectors.length > 0, `${p.title}: ${t.expr}`);
      for (const s of selectors) assert.ok(s[1] === `{${SELECTOR}}` || s[1]?.startsWith(`{${SELECTOR}, `), `${p.title}: ${s[0]} selects the chosen release`);
    }
  }
});

test('the issue\'s panels are there: SLIs, burn rates, sign-ins, decisions, refreshes, IdP latency, cache, upstreams, workers', () => {
  const exprs = dashboardExprs(dashboard).join('\n');
  for (const [what, needle] of [
    ['login success SLI', 'portcullis:login_error_ratio:rate1h'],
    ['token validation SLI', 'portcullis:token_validation_error_ratio:rate1h'],
    ['JWKS fetch SLI', 'portcullis:jwks_fetch_success_ratio:rate6h'],
    ['burn rates', 'portcullis:login_error_budget_burn:rate6h'],
    ['sign-ins by result', 'sum by (result) (rate(portcullis_logins_total'],
    ['decisions by route', 'sum by (route, decision) (rate(portcullis_auth_decisions_total'],
    ['refresh results', 'sum by (result) (rate(portcullis_session_refresh_total'],
    ['IdP latency by endpoint', 'sum by (endpoint, le) (rate(portcullis_idp_request_duration_seconds_bucket'],
    ['session cache hit ratio', 'portcullis_session_cache_misses_total'],
    ['upstream errors by route', 'sum by (route, kind) (rate(portcullis_upstream_errors_total'],
    ['latency by route', 'sum by (route, le) (rate(portcullis_http_request_duration_seconds_bucket'],
    ['workers', 'portcullis_workers'],
  ] as const) assert.ok(exprs.includes(needle), `${what}: ${needle}`);
});

test('the recording rules the dashboard reads are the ones the chart records', { skip: missingGoReason() }, () => {
  const recorded = new Set(renderedRules().groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))));
  const used = new Set(dashboardExprs(dashboard).flatMap((e) => [...e.matchAll(/portcullis:[a-z0-9_:]+/g)].map((m) => m[0])));
  assert.ok(used.size >= 4);
  for (const name of used) assert.ok(recorded.has(name), `${name} is not recorded by files/prometheus-rules.yaml`);
});

test('every dashboard query is PromQL that Prometheus parses (promtool check rules)', { skip: promtool().missing }, (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Grafana's variables as Grafana substitutes them, then each query as a recording rule.
  const rules = dashboardExprs(dashboard).map((expr, i) => ({
    record: `dashboard:query:${i}`,
    expr: expr.replaceAll('$__rate_interval', '2m').replaceAll('$namespace', 'auth').replaceAll('$job', 'release-portcullis'),
  }));
  for (const r of rules) assert.doesNotMatch(r.expr, /\$/, `a Grafana variable left in ${r.expr}`);
  const file = join(dir, 'dashboard-queries.yaml');
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
  const r = runPromtool(promtool().path!, ['check', 'rules', file], dir);
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

test('the dashboard JSON holds no data source of this or any installation (only the variable)', () => {
  const uids: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (isPlainObject(v)) {
      if (isPlainObject(v.datasource) && typeof v.datasource.uid === 'string') uids.push(v.datasource.uid);
      Object.values(v).forEach(walk);
    }
  };
  walk(dashboard.panels);
  assert.ok(uids.length > 0);
  assert.deepEqual([...new Set(uids)], [DATASOURCE]);
});
