// The chart's alerting rules, as `helm install` renders them with metrics.prometheusRule.enabled, pass
// `promtool check rules`, and `promtool test rules` runs the unit tests next to this file
// (*.test.yaml: series fed in, the alerts that must and must not fire asserted). Every alert has a
// case where it fires and one where it does not, or this test fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { missingGoReason } from '../packaging/render/renderer.js';
import { promtool, renderedRules, runPromtool, tempDir, writeRuleFile } from './rules.js';

const here = dirname(fileURLToPath(import.meta.url));
const unitTestFiles = readdirSync(here).filter((f) => f.endsWith('.test.yaml')).sort();
const tool = promtool();
const skip = tool.missing ?? missingGoReason();

interface AlertCase { eval_time: string; alertname: string; exp_alerts?: unknown[] }
interface UnitTests { rule_files: string[]; tests: Array<{ name: string; alert_rule_test?: AlertCase[] }> }

test('the rendered rules pass promtool check rules and every unit test in test/alerts/*.test.yaml', { skip }, (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const rules = writeRuleFile(dir);
  const check = runPromtool(tool.path!, ['check', 'rules', rules], dir);
  assert.equal(check.status, 0, `promtool check rules:\n${check.output}`);
  assert.ok(unitTestFiles.length > 0, 'no unit test files');
  // promtool finds rule_files relative to the test file: the copies sit beside the rendered rules.
  for (const f of unitTestFiles) copyFileSync(join(here, f), join(dir, f));
  const run = runPromtool(tool.path!, ['test', 'rules', ...unitTestFiles], dir);
  assert.equal(run.status, 0, `promtool test rules:\n${run.output}`);
  for (const f of unitTestFiles) assert.match(run.output, new RegExp(`Unit Testing:\\s+${f.replace('.', '\\.')}\\s+SUCCESS`), f);
});

test('every alert has a unit test where it fires and one where it does not', { skip: missingGoReason() }, () => {
  const alerts = renderedRules().groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
  // Issue 18's list: burn rates, ID-token failures, JWKS, IdP unready, upstream errors per route,
  // worker crash loops (and the README's latency, session-size and rate-limit examples, and the
  // introspection endpoint bearer routes depend on).
  assert.deepEqual([...alerts].sort(), [
    'PortcullisIdPLatencyHigh', 'PortcullisIdPUnready', 'PortcullisIdTokenInvalid', 'PortcullisIntrospectionFailing', 'PortcullisJwksFetchFailing',
    'PortcullisLoginErrorBudgetBurnFast', 'PortcullisLoginErrorBudgetBurnSlow', 'PortcullisSessionsTooLarge',
    'PortcullisSignInRateLimited', 'PortcullisUpstreamErrors', 'PortcullisWorkerCrashLooping',
  ]);
  const fires = new Set<string>();
  const quiet = new Set<string>();
  for (const f of unitTestFiles) {
    const doc = parse(readFileSync(join(here, f), 'utf8')) as UnitTests;
    assert.deepEqual(doc.rule_files, ['portcullis-rules.yaml'], `${f}: rule_files`);
    for (const c of doc.tests.flatMap((x) => x.alert_rule_test ?? [])) {
      assert.ok(alerts.includes(c.alertname), `${f}: ${c.alertname} is not an alert of the chart`);
      ((c.exp_alerts ?? []).length > 0 ? fires : quiet).add(c.alertname);
    }
  }
  assert.deepEqual(alerts.filter((a) => !fires.has(a)), [], 'alerts without a case where they fire');
  assert.deepEqual(alerts.filter((a) => !quiet.has(a)), [], 'alerts without a case where they stay quiet');
});

test('alerts carry a severity, a summary, a description and a runbook link to their own section of docs/runbooks.md', { skip: missingGoReason() }, () => {
  const runbooks = readFileSync(join(here, '..', '..', 'docs', 'runbooks.md'), 'utf8');
  // GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped.
  const anchors = new Set([...runbooks.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
  const rules = renderedRules({ runbookUrl: 'https://docs.example/runbooks.md' }).groups.flatMap((g) => g.rules);
  for (const r of rules.filter((x) => x.alert)) {
    assert.match(r.labels?.severity ?? '', /^(critical|warning)$/, `${r.alert}: severity`);
    assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
    const link = r.annotations?.runbook_url ?? '';
    assert.equal(link, `https://docs.example/runbooks.md#${r.alert!.toLowerCase()}`, `${r.alert}: runbook_url follows metrics.prometheusRule.runbookUrl`);
    assert.ok(anchors.has(r.alert!.toLowerCase()), `docs/runbooks.md has no section ${r.alert}`);
  }
});

test('the values reach the rules: objective, thresholds and the series selector', { skip: missingGoReason() }, () => {
  const text = JSON.stringify(renderedRules({
    loginSuccessObjective: 0.999, idpLatencyP95Seconds: 1.5, upstreamErrorRatio: 0.2, workerRestarts: 7,
    selector: 'cluster="eu", job="auth-proxy"',
  }));
  assert.match(text, /portcullis:login_error_ratio:rate5m \/ \(1 - 0\.999\)/);
  assert.match(text, /p95_rate5m > 1\.5/);
  assert.match(text, /> 0\.2/);
  assert.match(text, /\[15m\]\) > 7/);
  const selectors = [...text.matchAll(/portcullis_[a-z_]+\{([^}]*)\}/g)].map((m) => m[1]!);
  assert.ok(selectors.length > 10);
  for (const s of selectors) assert.ok(s.startsWith('cluster=\\"eu\\", job=\\"auth-proxy\\"'), s);
  // By default: this release's namespace and job (the ServiceMonitor's, the Service's name).
  const byDefault = JSON.stringify(renderedRules());
  const defaults = [...byDefault.matchAll(/portcullis_[a-z_]+\{([^}]*)\}/g)].map((m) => m[1]!);
  for (const s of defaults) assert.ok(s.startsWith('namespace=\\"auth\\", job=\\"release-portcullis\\"'), s);
});
