// Test support: the alerting rules and the dashboard as the chart ships them. The rules are rendered
// through the chart (test/packaging/render, Go text/template + sprig as Helm renders), so promtool tests
// what a `helm install` with metrics.prometheusRule.enabled produces, not a copy.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { chartDir, isPlainObject, RELEASE_NAME, type Values } from '../packaging/chart.js';
import { NAMESPACE, ofKind, renderChart } from '../packaging/render/renderer.js';
import { findTool } from '../helpers/chromium.js';

/** The series' labels the rendered rules select on by default (this release's namespace and job). */
export const JOB = `${RELEASE_NAME}-portcullis`;
export { NAMESPACE };

export interface RuleGroup { name: string; rules: Array<{ record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }

/** The rendered PrometheusRule's spec (groups) with these values for metrics.prometheusRule. */
export function renderedRules(prometheusRule: Values = {}): { groups: RuleGroup[] } {
  const r = renderChart({
    cluster: null,
    values: { secrets: { existingSecret: 'portcullis-secrets' }, metrics: { prometheusRule: { enabled: true, ...prometheusRule } } },
  });
  const rules = ofKind(r, 'PrometheusRule');
  if (rules.length !== 1) throw new Error(`expected one PrometheusRule, got ${rules.length}`);
  const spec = rules[0]!.spec;
  if (!isPlainObject(spec) || !Array.isArray(spec.groups)) throw new Error('the PrometheusRule has no spec.groups');
  return spec as unknown as { groups: RuleGroup[] };
}

/** Writes the rendered rules as a Prometheus rule file (what promtool and a plain Prometheus read). */
export function writeRuleFile(dir: string, prometheusRule: Values = {}): string {
  const file = join(dir, 'portcullis-rules.yaml');
  writeFileSync(file, stringify(renderedRules(prometheusRule), { lineWidth: 0 }));
  return file;
}

export const dashboardFile = join(chartDir, 'files', 'dashboard.json');
export const readDashboard = (): unknown => JSON.parse(readFileSync(dashboardFile, 'utf8'));

/** Every PromQL expression in the dashboard's panels (targets[].expr) and its variables' queries. */
export function dashboardExprs(dashboard: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (isPlainObject(v)) {
      if (typeof v.expr === 'string') out.push(v.expr);
      Object.values(v).forEach(walk);
    }
  };
  walk(dashboard);
  return out;
}

/**
 * The Portcullis metric names an expression uses. Recording rules (portcullis:...) are not metric
 * names; a name is followed by a selector, a range, an offset or the end of the expression.
 */
export function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bportcullis_[a-z0-9_]*[a-z0-9]\b/g)].map((m) => m[0]);
}

export const PROMETHEUS_PACKAGE = 'prometheus';

/** promtool's path, or undefined with a reason to skip; with CI=true a missing promtool throws. */
export function promtool(): { path?: string; missing?: string } {
  const path = findTool('promtool');
  if (path) return { path };
  const missing = `promtool not found (apt-get install ${PROMETHEUS_PACKAGE}, with a policy-rc.d that keeps the server from starting; see .ci/run)`;
  // The same rule as test/helpers/chromium.ts: CI must not go green by skipping.
  if (process.env.CI === 'true') throw new Error(`${missing}; CI=true, so this fails instead of skipping`);
  return { missing };
}

export function runPromtool(bin: string, args: string[], cwd: string): { status: number | null; output: string } {
  const r = spawnSync(bin, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

export const tempDir = (): string => mkdtempSync(join(tmpdir(), 'portcullis-alerts-'));
