// Helm templates, checked without helm: they reference only values that exist, every value is used,
// and the Deployment keeps its probes, hardening, rollout checksums and drain timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseDuration } from '../../src/config/durations.js';
import { at, chartDir, chartValues, defaultValues, isPlainObject, listFiles, readText, readYaml, SECRETS_DIR, valueFiles } from './chart.js';

const templatesDir = join(chartDir, 'templates');
const templateFiles = listFiles(templatesDir, (n) => n.endsWith('.yaml') || n.endsWith('.tpl') || n.endsWith('.txt'));
const template = (name: string): string => readText(join(templatesDir, name));
const deployment = template('deployment.yaml');
const helpers = template('_helpers.tpl');

/** Every `.Values.a.b` (or `$.Values.a.b`) path in a template. */
function valueRefs(text: string): string[] {
  return [...text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)].map((m) => m[1]!.slice(1));
}

const refs = new Map<string, string[]>();
for (const file of templateFiles) {
  for (const ref of valueRefs(readText(file))) refs.set(ref, [...(refs.get(ref) ?? []), file.slice(templatesDir.length + 1)]);
}

test('the chart has the templates the issue asks for', () => {
  const names = templateFiles.map((f) => f.slice(templatesDir.length + 1));
  for (const t of ['_helpers.tpl', 'deployment.yaml', 'configmap.yaml', 'secret.yaml', 'service.yaml', 'ingress.yaml',
    'hpa.yaml', 'pdb.yaml', 'servicemonitor.yaml', 'serviceaccount.yaml', 'redis.yaml', 'NOTES.txt']) {
    assert.ok(names.includes(t), `templates/${t} is missing`);
  }
});

test('every .Values reference in the templates exists in values.yaml', () => {
  const values = defaultValues();
  const missing = [...refs.entries()]
    .filter(([path]) => !path.split('.').reduce<{ ok: boolean; cur: unknown }>(
      (acc, seg) => (acc.ok && isPlainObject(acc.cur) && Object.hasOwn(acc.cur, seg) ? { ok: true, cur: acc.cur[seg] } : { ok: false, cur: undefined }),
      { ok: true, cur: values },
    ).ok)
    .map(([path, files]) => `.Values.${path} (${files.join(', ')})`);
  assert.ok(refs.size > 40, `only ${refs.size} references found: is the pattern still right?`);
  assert.deepEqual(missing, []);
});

test('every value in values.yaml is used by some template', () => {
  // Two levels deep is where the chart's own keys live; below that are Kubernetes objects passed
  // through whole (resources, securityContext) and the Portcullis config, rendered whole.
  const used = [...refs.keys()];
  const unused: string[] = [];
  const values = defaultValues();
  for (const [k, v] of Object.entries(values)) {
    const paths = isPlainObject(v) && k !== 'config' ? Object.keys(v).map((c) => `${k}.${c}`) : [k];
    for (const p of paths) {
      if (!used.some((u) => u === p || u.startsWith(`${p}.`) || p.startsWith(`${u}.`))) unused.push(p);
    }
  }
  // nameOverride/fullnameOverride and redis.image.* are read through helpers/templates too.
  assert.deepEqual(unused, []);
});

test('deployment: liveness on /healthz and readiness on /readyz, on the http port', () => {
  assert.match(deployment, /livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/healthz\s*\n\s*port: http/);
  assert.match(deployment, /readinessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/readyz\s*\n\s*port: http/);
});

test('deployment: pod and container securityContext come from values, which are hardened by default', () => {
  assert.match(deployment, /^ {6}securityContext:\s*\n\s*\{\{- toYaml \.Values\.podSecurityContext/m);
  assert.match(deployment, /^ {10}securityContext:\s*\n\s*\{\{- toYaml \.Values\.securityContext/m);
  const v = defaultValues();
  assert.equal(at(v, 'podSecurityContext.runAsNonRoot'), true);
  assert.equal(at(v, 'podSecurityContext.runAsUser'), 10001);
  assert.deepEqual(at(v, 'podSecurityContext.seccompProfile'), { type: 'RuntimeDefault' });
  assert.equal(at(v, 'securityContext.runAsNonRoot'), true);
  assert.equal(at(v, 'securityContext.runAsUser'), 10001);
  assert.equal(at(v, 'securityContext.allowPrivilegeEscalation'), false);
  assert.equal(at(v, 'securityContext.readOnlyRootFilesystem'), true);
  assert.deepEqual(at(v, 'securityContext.capabilities.drop'), ['ALL']);
  assert.deepEqual(at(v, 'securityContext.seccompProfile'), { type: 'RuntimeDefault' });
  assert.equal(at(v, 'serviceAccount.automountToken'), false);
});

test('deployment: /tmp is a writable emptyDir, everything else read-only', () => {
  assert.match(deployment, /- name: tmp\s*\n\s*mountPath: \/tmp/);
  assert.match(deployment, /- name: tmp\s*\n\s*emptyDir:/);
  assert.match(deployment, /mountPath: \/etc\/portcullis\/portcullis\.yaml\s*\n\s*subPath: portcullis\.yaml\s*\n\s*readOnly: true/);
});

test('deployment: config and secret changes roll the pods', () => {
  assert.match(deployment, /checksum\/config: \{\{ include "portcullis\.config" \. \| sha256sum \}\}/);
  assert.match(deployment, /checksum\/secret: \{\{ include "portcullis\.secretChecksum" \. \}\}/);
});

test('deployment: preStop sleep, and a grace period longer than sleep + drain for every values file', () => {
  assert.match(deployment, /preStop:\s*\n(\s*#.*\n)*\s*exec:\s*\n\s*command: \["sleep", "\{\{ \.Values\.preStopSleepSeconds \}\}"\]/);
  assert.match(deployment, /terminationGracePeriodSeconds: \{\{ \.Values\.terminationGracePeriodSeconds \}\}/);
  for (const { name, file } of valueFiles()) {
    const v = chartValues(file);
    const drainMs = parseDuration(String(at(v, 'config.shutdownGracePeriod') ?? '25s'))!;
    const budgetMs = (Number(v.terminationGracePeriodSeconds) - Number(v.preStopSleepSeconds)) * 1000;
    assert.ok(Number(v.preStopSleepSeconds) > 0, `${name}: preStopSleepSeconds must be > 0`);
    assert.ok(budgetMs > drainMs, `${name}: terminationGracePeriodSeconds - preStopSleepSeconds (${budgetMs} ms) must exceed shutdownGracePeriod (${drainMs} ms)`);
  }
});

test('deployment: the args match the image CMD and the mounted config path', () => {
  assert.match(deployment, /args: \["--config", "\/etc\/portcullis\/portcullis\.yaml"\]/);
  const dockerfile = readText(join(chartDir, '..', '..', 'Dockerfile'));
  assert.match(dockerfile, /^CMD \["--config", "\/etc\/portcullis\/portcullis\.yaml"\]$/m);
});

test('secrets are mounted as files where the rendered config points', () => {
  assert.match(helpers, new RegExp(`define "portcullis\\.secretsDir" -\\}\\}${SECRETS_DIR.replace(/\//g, '\\/')}\\{\\{- end`));
  assert.match(deployment, /- name: secrets\s*\n\s*mountPath: \{\{ include "portcullis\.secretsDir" \. \}\}\s*\n\s*readOnly: true/);
  // The mounted keys are "portcullis.secretItems"'s, each file named as its key.
  assert.match(deployment, /items:\s*\n\s*\{\{- include "portcullis\.secretItems" \. \| trim \| nindent 14 \}\}/);
  const items = /\{\{- define "portcullis\.secretItems" -\}\}([\s\S]*?)\n\n\{\{\/\*/.exec(helpers)?.[1] ?? '';
  for (const key of ['client-secret', 'client-secret-{{ .id }}', 'session-secrets']) {
    assert.ok(items.includes(`- key: ${key}\n  path: ${key}\n`), `portcullis.secretItems does not mount ${key}`);
  }
  const secret = template('secret.yaml');
  for (const key of ['client-secret', 'client-secret-{{ $id }}', 'session-secrets']) {
    assert.ok(secret.includes(`\n  ${key}: `), `secret.yaml has no key ${key}`);
  }
});

test('the config helper adds exactly what the test mirror (chart.ts renderedConfig) adds', () => {
  // If this fails, update renderedConfig in chart.ts together with the template.
  for (const line of [
    'set $config "listen" (dict "host" "0.0.0.0" "port" .Values.containerPorts.http)',
    'set $config "metrics" (dict "host" "0.0.0.0" "port" .Values.containerPorts.metrics)',
    'set $oidc "clientSecretFile" (printf "%s/client-secret" (include "portcullis.secretsDir" .))',
    'set . "clientSecretFile" (printf "%s/client-secret-%s" (include "portcullis.secretsDir" $) .id)',
    'set $session "secretsFile" (printf "%s/session-secrets" (include "portcullis.secretsDir" .))',
    'set $session "store" "redis"',
    'set $session "redis" (dict "url" (printf "redis://:${REDIS_PASSWORD}@%s:6379" (include "portcullis.redis.fullname" .)))',
  ]) assert.ok(helpers.includes(line), `_helpers.tpl no longer does: ${line}`);
  assert.equal((helpers.match(/\$_ := set /g) ?? []).length, 9, 'a set was added to or removed from portcullis.config');
  // private_key_jwt: no clientSecretFile (the mirror skips it the same way), in both forms of config.oidc.
  assert.ok(helpers.includes('{{- if ne (get $oidc "tokenEndpointAuthMethod" | default "") "private_key_jwt" }}'), 'clientSecretFile is set only without private_key_jwt');
  assert.ok(helpers.includes('{{- if ne (get . "tokenEndpointAuthMethod" | default "") "private_key_jwt" }}true{{ end }}'), 'portcullis.readsClientSecret: every provider but private_key_jwt ones');
  assert.ok(helpers.includes('{{- if kindIs "slice" $oidc }}\n{{- /* Several providers'), 'the list form is told apart from the mapping');
  assert.match(template('configmap.yaml'), /portcullis\.yaml: \|\s*\n\s*\{\{- include "portcullis\.config" \. \| nindent 4 \}\}/);
});

test('generated secrets never change by accident: values, else the cluster\'s copy, else generated only with cluster access', () => {
  // The text of the rule; render/chart-render.test.ts renders each case for real where Go is installed.
  const kept = /\{\{- define "portcullis\.keptSecret" -\}\}([\s\S]*?)\{\{- end \}\}\s*\{\{- end \}\}/.exec(helpers)?.[1] ?? '';
  const steps = ['{{- if .value }}', '{{- else if hasKey .previous .key }}', '{{- else if .cluster }}', '{{- randAlphaNum .length }}', '{{- else }}', '{{- fail '];
  const at = steps.map((step) => kept.indexOf(step));
  assert.ok(at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1]!)), `order must be: ${steps.join(' → ')}`);
  const secret = template('secret.yaml');
  assert.match(secret, /\{\{- if not \.Values\.secrets\.existingSecret \}\}/);
  // Cluster access is told by a list lookup: a SecretList always has items, no cluster gives {}.
  assert.match(secret, /\$secrets := lookup "v1" "Secret" \.Release\.Namespace ""/);
  assert.match(secret, /\$cluster := hasKey \$secrets "items"/);
  assert.equal((secret.match(/include "portcullis\.keptSecret" \(dict "previous" \$previous "cluster" \$cluster/g) ?? []).length, 2,
    'session-secrets and redis-password both kept, from the same lookup');
  assert.doesNotMatch(secret, /randAlphaNum/, 'generate only through portcullis.keptSecret');
});

test('NOTES.txt tells the operator the callback URL to register', () => {
  assert.match(template('NOTES.txt'), /\{\{ \$publicUrl \}\}\/oauth2\/callback/);
});

test('Chart.yaml is a v2 application chart', () => {
  const chart = readYaml(join(chartDir, 'Chart.yaml')) as Record<string, unknown>;
  assert.equal(chart.apiVersion, 'v2');
  assert.equal(chart.name, 'portcullis');
  assert.equal(chart.type, 'application');
  assert.match(String(chart.version), /^\d+\.\d+\.\d+/);
  assert.ok(chart.appVersion);
});

test('the Service and the container agree on port names; the Ingress only uses http', () => {
  const service = template('service.yaml');
  assert.match(service, /- name: http\s*\n\s*port: \{\{ \.Values\.service\.port \}\}\s*\n\s*targetPort: http/);
  assert.match(service, /- name: metrics\s*\n\s*port: \{\{ \.Values\.service\.metricsPort \}\}\s*\n\s*targetPort: metrics/);
  assert.match(deployment, /- name: http\s*\n\s*containerPort: \{\{ \.Values\.containerPorts\.http \}\}/);
  assert.match(deployment, /- name: metrics\s*\n\s*containerPort: \{\{ \.Values\.containerPorts\.metrics \}\}/);
  assert.match(template('ingress.yaml'), /port:\s*\n\s*name: http/);
  assert.doesNotMatch(template('ingress.yaml'), /metrics/);
  assert.match(template('servicemonitor.yaml'), /- port: metrics\s*\n\s*path: \/metrics/);
});
