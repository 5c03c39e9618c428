// The chart renders the PrometheusRule and the dashboard ConfigMap when metrics.prometheusRule /
// metrics.dashboard are enabled, and neither when they are not (the default): rendered for real
// (test/packaging/render, Go text/template + sprig as Helm renders, with .Files.Get).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { type Values } from '../packaging/chart.js';
import { missingGoReason, NAMESPACE, ofKind, renderChart, rendererBinary } from '../packaging/render/renderer.js';
import { dashboardFile, tempDir } from './rules.js';

const render = (metrics: Values) => renderChart({ cluster: null, values: { secrets: { existingSecret: 'portcullis-secrets' }, metrics } });

describe('the chart\'s alerts and dashboard, rendered', { skip: missingGoReason() }, () => {
  test('neither by default', () => {
    const r = render({});
    assert.deepEqual(ofKind(r, 'PrometheusRule'), []);
    assert.deepEqual(ofKind(r, 'ConfigMap').map((c) => c.metadata.name), ['release-portcullis'], 'only the config');
  });

  test('metrics.prometheusRule.enabled: a PrometheusRule holding the rules of files/prometheus-rules.yaml, with labels and namespace', () => {
    const r = render({ prometheusRule: { enabled: true, labels: { release: 'kube-prometheus-stack' } } });
    const [rule, ...more] = ofKind(r, 'PrometheusRule');
    assert.ok(rule && more.length === 0, 'one PrometheusRule');
    assert.equal(rule.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(rule.metadata.name, 'release-portcullis');
    assert.equal(rule.metadata.namespace, NAMESPACE);
    const labels = (rule.metadata as unknown as { labels: Record<string, string> }).labels;
    assert.equal(labels.release, 'kube-prometheus-stack');
    assert.equal(labels['app.kubernetes.io/instance'], 'release');
    const groups = (rule.spec as { groups: Array<{ name: string; rules: Array<{ record?: string; alert?: string }> }> }).groups;
    assert.deepEqual(groups.map((g) => g.name), ['portcullis.sli', 'portcullis.alerts']);
    assert.ok(groups[1]!.rules.every((x) => x.alert?.startsWith('Portcullis')));
    // The source file's Prometheus templates reach Prometheus unchanged, Helm's are rendered.
    const text = JSON.stringify(rule.spec);
    assert.match(text, /\{\{ \$labels\.route \}\}/);
    assert.doesNotMatch(text, /\.Values|\{\{`/);
    const elsewhere = render({ prometheusRule: { enabled: true, namespace: 'monitoring' } });
    assert.equal(ofKind(elsewhere, 'PrometheusRule')[0]!.metadata.namespace, 'monitoring');
    assert.equal(ofKind(elsewhere, 'ConfigMap').length, 1, 'no dashboard unless asked');
  });

  test('metrics.dashboard.enabled: a ConfigMap with the sidecar label holding files/dashboard.json byte for byte', () => {
    const r = render({ dashboard: { enabled: true, annotations: { grafana_folder: 'Auth' } } });
    const dashboards = ofKind(r, 'ConfigMap').filter((c) => c.metadata.name !== 'release-portcullis');
    assert.equal(dashboards.length, 1);
    const cm = dashboards[0]! as unknown as { metadata: { name: string; namespace?: string; labels: Record<string, string>; annotations: Record<string, string> }; data: Record<string, string> };
    assert.equal(cm.metadata.name, 'release-portcullis-dashboard');
    assert.equal(cm.metadata.labels.grafana_dashboard, '1');
    assert.equal(cm.metadata.annotations.grafana_folder, 'Auth');
    assert.deepEqual(Object.keys(cm.data), ['portcullis.json']);
    assert.equal(cm.data['portcullis.json'], readFileSync(dashboardFile, 'utf8').trimEnd());
    assert.deepEqual(ofKind(r, 'PrometheusRule'), [], 'no rules unless asked');
    // Another sidecar label (a sidecar's label is configurable) and namespace. Helm merges maps, so
    // the default label stays unless set to null.
    const labelsOf = (metrics: Values) => {
      const c = ofKind(render(metrics), 'ConfigMap').find((x) => x.metadata.name.endsWith('-dashboard'))! as unknown as { metadata: { namespace: string; labels: Record<string, string> } };
      return { namespace: c.metadata.namespace, labels: c.metadata.labels };
    };
    const other = labelsOf({ dashboard: { enabled: true, namespace: 'grafana', labels: { dashboards: 'portcullis' } } });
    assert.equal(other.namespace, 'grafana');
    assert.equal(other.labels.dashboards, 'portcullis');
    assert.equal(other.labels.grafana_dashboard, '1');
    const only = labelsOf({ dashboard: { enabled: true, labels: { dashboards: 'portcullis', grafana_dashboard: null } } });
    assert.equal(only.labels.grafana_dashboard, undefined, 'null drops the default label');
  });

  test('.Files.Get reads the chart\'s own files, as Helm: not templates/, Chart.yaml, values.yaml or paths outside the chart', (t) => {
    const dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const chart = join(dir, 'chart');
    mkdirSync(join(chart, 'templates'), { recursive: true });
    mkdirSync(join(chart, 'files'));
    writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: probe\nversion: 0.0.1\n');
    writeFileSync(join(chart, 'values.yaml'), 'x: 1\n');
    writeFileSync(join(chart, 'files', 'a.txt'), 'file a');
    writeFileSync(join(dir, 'outside.txt'), 'outside');
    const reads = { a: 'files/a.txt', dotted: './files/../files/a.txt', values: 'values.yaml', chart: 'Chart.yaml', template: 'templates/t.yaml', outside: '../outside.txt', absolute: join(dir, 'outside.txt'), missing: 'files/none.txt' };
    writeFileSync(join(chart, 'templates', 't.yaml'), Object.entries(reads).map(([k, path]) => `${k}: {{ .Files.Get ${JSON.stringify(path)} | quote }}\n`).join(''));
    const r = spawnSync(rendererBinary(), [], { input: JSON.stringify({ chart, release: { name: 'r', namespace: 'n' }, cluster: null }), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { manifests: Record<string, string> };
    assert.deepEqual(parse(out.manifests['probe/templates/t.yaml']!), { a: 'file a', dotted: 'file a', values: '', chart: '', template: '', outside: '', absolute: '', missing: '' });
  });
});
