// The chart's `helm test` hook (templates/tests/doctor.yaml): a Pod running `portcullis doctor` with
// exactly the Deployment's config, secrets and environment, never selected by the Service, and
// turned off by doctor.helmTest.enabled. Checked as text (always) and rendered (where Go is).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chartDir, defaultValues, readText, readYaml, isPlainObject } from './chart.js';
import { missingGoReason, ofKind, renderChart, type K8sObject } from './render/renderer.js';

const templatesDir = join(chartDir, 'templates');
const doctor = readText(join(templatesDir, 'tests', 'doctor.yaml'));
const deployment = readText(join(templatesDir, 'deployment.yaml'));

/**
 * The YAML block under `key:` (its header's indentation and deeper), without comments, dedented,
 * and with `nindent N` made N-independent: the same block at another depth compares equal.
 */
function block(text: string, key: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^\\s*(?:\\{\\{-? if [^}]*\\}\\}\\s*)?${key}:\\s*$`).test(l));
  assert.notEqual(start, -1, `no "${key}:" block`);
  const indent = lines[start]!.search(/\S/);
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') continue;
    const at = line.search(/\S/);
    // Template control lines (`{{- with … }}`, `{{- end }}`) belong to the block while indented deeper.
    if (at <= indent) break;
    if (line.trim().startsWith('#')) continue;
    body.push(line);
  }
  const min = Math.min(...body.map((l) => l.search(/\S/)));
  return body.map((l) => l.slice(min).replace(/nindent \d+/g, 'nindent _')).join('\n');
}

test('doctor.yaml is a helm test hook Pod running `portcullis doctor` on the Deployment\'s config file', () => {
  assert.match(doctor, /^kind: Pod$/m);
  assert.match(doctor, /^\s+helm\.sh\/hook: test$/m);
  assert.match(doctor, /^\s+restartPolicy: Never$/m);
  const configArg = /args: \["--config", "([^"]+)"\]/.exec(deployment)?.[1];
  assert.ok(configArg, 'the Deployment passes --config');
  assert.match(doctor, new RegExp(`args: \\["doctor", "--config", "${configArg.replace(/\./g, '\\.')}"\\]`));
  // Its image is the proxy's: the same entrypoint (portcullis) with the doctor subcommand.
  assert.match(doctor, /image: \{\{ include "portcullis\.image" \. \| quote \}\}/);
});

test('doctor.yaml mounts, volumes and environment are the Deployment\'s, block for block', () => {
  for (const key of ['volumeMounts', 'volumes', 'env', 'envFrom', 'securityContext']) {
    assert.equal(block(doctor, key), block(deployment, key), `${key} differs from deployment.yaml's`);
  }
  assert.match(block(doctor, 'volumes'), /secretName: \{\{ include "portcullis\.secretName" \. \}\}/, 'the block parser found the real volumes');
});

test('the doctor Pod never carries the proxy\'s selector labels (the Service must not send it traffic)', () => {
  assert.doesNotMatch(doctor, /portcullis\.selectorLabels|include "portcullis\.labels"/);
  assert.match(doctor, /app\.kubernetes\.io\/component: doctor/);
});

test('doctor.helmTest.enabled: on by default, gates the whole template, allowed by the values schema', () => {
  const values = defaultValues() as { doctor?: { helmTest?: { enabled?: unknown } } };
  assert.equal(values.doctor?.helmTest?.enabled, true);
  assert.match(doctor.replace(/^\{\{-? ?\/\*[\s\S]*?\*\/ ?-?\}\}/, '').trim(), /^\{\{- if \.Values\.doctor\.helmTest\.enabled \}\}[\s\S]*\{\{- end \}\}$/);
  const schema = readYaml(join(chartDir, 'values.schema.json')) as { properties: Record<string, unknown> };
  const doctorSchema = schema.properties.doctor as { properties?: { helmTest?: { properties?: { enabled?: { type?: string } } } } };
  assert.ok(isPlainObject(doctorSchema));
  assert.equal(doctorSchema.properties?.helmTest?.properties?.enabled?.type, 'boolean');
});

describe('the doctor hook, rendered', { skip: missingGoReason() }, () => {
  const secrets = { secrets: { clientSecret: 'client-secret-value', sessionSecrets: ['doctor-chart-test-session-secret-0123456789abcdef'] } };
  type Pod = K8sObject & { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: { containers: Array<Record<string, unknown>>; volumes: unknown } };
  type Deployment = K8sObject & { spec: { template: { spec: { containers: Array<Record<string, unknown>>; volumes: unknown } } } };

  for (const [what, values] of [['defaults', {}], ['bundled Redis and extra env/volumes', {
    redis: { enabled: true, password: 'redis-password-value' },
    extraEnv: [{ name: 'UPSTREAM_TOKEN', value: 'x' }],
    extraVolumes: [{ name: 'ca', configMap: { name: 'corp-ca' } }],
    extraVolumeMounts: [{ name: 'ca', mountPath: '/etc/ssl/corp', readOnly: true }],
  }], ['several providers (a client secret each)', {
    secrets: { clientSecrets: { corp: 'corp-secret-value', partners: 'partners-secret-value' }, sessionSecrets: secrets.secrets.sessionSecrets },
    config: { oidc: [{ id: 'corp', issuer: 'https://login.corp.example.com', clientId: 'portcullis' }, { id: 'partners', issuer: 'https://id.partners.example.net', clientId: 'portcullis' }] },
  }]] as const) {
    test(`${what}: the Pod has the Deployment's volumes, mounts and env; the Service does not select it`, () => {
      const r = renderChart({ values: { ...secrets, ...values }, cluster: null });
      assert.ok(r.ok, r.ok ? '' : r.error);
      const pods = ofKind(r, 'Pod') as Pod[];
      assert.equal(pods.length, 1);
      const pod = pods[0]!;
      assert.equal(pod.metadata.annotations['helm.sh/hook'], 'test');
      const proxy = (ofKind(r, 'Deployment') as Deployment[]).find((d) => d.spec.template.spec.containers.some((c) => c.name === 'portcullis'))!;
      const [runs, serves] = [pod.spec.containers[0]!, proxy.spec.template.spec.containers.find((c) => c.name === 'portcullis')!];
      assert.deepEqual(runs.args, ['doctor', ...(serves.args as string[])]);
      assert.equal(runs.image, serves.image);
      for (const key of ['volumeMounts', 'env', 'envFrom', 'securityContext', 'resources']) assert.deepEqual(runs[key], serves[key], key);
      assert.deepEqual(pod.spec.volumes, proxy.spec.template.spec.volumes);
      for (const service of ofKind(r, 'Service') as Array<K8sObject & { spec: { selector: Record<string, string> } }>) {
        assert.ok(!Object.entries(service.spec.selector).every(([k, v]) => pod.metadata.labels[k] === v), `Service ${service.metadata.name} would select the doctor Pod`);
      }
    });
  }

  test('doctor.helmTest.enabled: false renders no Pod', () => {
    const r = renderChart({ values: { ...secrets, doctor: { helmTest: { enabled: false } } }, cluster: null });
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(ofKind(r, 'Pod').length, 0);
  });
});
