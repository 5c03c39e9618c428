// The Helm chart rendered for real (Go text/template + sprig, see main.go): the session secret and the
// bundled Redis password never change by accident — a render without cluster access fails and says
// what to set, a first install generates, an upgrade reuses — and every values file renders to valid
// Kubernetes objects whose config is what the TypeScript mirror (chart.ts) says.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parse } from 'yaml';
import { chartDir, chartValues, isPlainObject, renderedConfig, valueFiles } from '../chart.js';
import { missingGoReason, NAMESPACE, ofKind, renderChart, type K8sObject, type RenderRequest, type RenderResult } from './renderer.js';

const ci = (name: string): string => join(chartDir, 'ci', `${name}-values.yaml`);
const SESSION_SECRET = 'test-session-secret-0123456789abcdef0123456789abcdef';
const OLDER_SECRET = 'test-older-secret-0123456789abcdef0123456789abcdef00';

/** The chart's Secret's data, decoded; fails the test if there is not exactly one Secret. */
function secretData(result: RenderResult): Record<string, string> {
  const secrets = ofKind(result, 'Secret');
  assert.equal(secrets.length, 1, 'one Secret rendered');
  const data = secrets[0]!.data as Record<string, string>;
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

function failure(result: RenderResult): string {
  assert.equal(result.ok, false, 'the render should have failed');
  return (result as { error: string }).error;
}

/** The chart's Secret as the cluster holds it after an install (with its namespace set). */
function inCluster(result: RenderResult): K8sObject {
  const secret = structuredClone(ofKind(result, 'Secret')[0]!);
  secret.metadata.namespace = NAMESPACE;
  return secret;
}

const noCluster = (req: Omit<RenderRequest, 'cluster'> = {}): RenderResult => renderChart({ ...req, cluster: null });
const firstInstall = (req: Omit<RenderRequest, 'cluster'> = {}): RenderResult => renderChart({ ...req, cluster: { objects: [] } });

describe('the chart, rendered', { skip: missingGoReason() }, () => {
  test('no cluster (helm template, Argo CD) and no session secret: the render fails and says what to set', () => {
    const error = failure(noCluster({ valueFiles: [ci('default')] }));
    assert.match(error, /^execution error at \(portcullis\/templates\/secret\.yaml:\d+:\d+\): secrets\.sessionSecrets is empty and Helm cannot see the cluster/);
    assert.match(error, /--set "secrets\.sessionSecrets\[0\]=\$\(openssl rand -hex 32\)"/);
    assert.match(error, /secrets\.existingSecret/);
  });

  test('no cluster, the bundled Redis and no redis.password: the render fails and says what to set', () => {
    const error = failure(noCluster({ valueFiles: [ci('redis')] }));
    assert.match(error, /redis\.password is empty and Helm cannot see the cluster/);
    assert.match(error, /--set "redis\.password=\$\(openssl rand -hex 32\)"/);
  });

  test('no cluster, secrets given: the Secret holds them, and two renders are byte for byte the same', () => {
    const req = { valueFiles: [ci('redis')], values: { redis: { password: 'test-redis-password' } } };
    const first = noCluster(req);
    assert.ok(first.ok, first.ok ? '' : first.error);
    assert.deepEqual(secretData(first), {
      'client-secret': 'ci-client-secret',
      'session-secrets': (chartValues(ci('redis')).secrets as { sessionSecrets: string[] }).sessionSecrets.join('\n'),
      'redis-password': 'test-redis-password',
    });
    assert.deepEqual(noCluster(req), first);
  });

  test('several session secrets are one a line, the first one first', () => {
    const r = noCluster({ valueFiles: [ci('default')], values: { secrets: { sessionSecrets: [SESSION_SECRET, OLDER_SECRET] } } });
    assert.equal(secretData(r)['session-secrets'], `${SESSION_SECRET}\n${OLDER_SECRET}`);
  });

  test('first install on a cluster (even into a namespace --create-namespace has yet to make): generated', () => {
    const req = { valueFiles: [ci('default')], values: { redis: { enabled: true } } };
    const data = secretData(firstInstall(req));
    assert.match(data['session-secrets']!, /^[A-Za-z0-9]{48}$/);
    assert.match(data['redis-password']!, /^[A-Za-z0-9]{32}$/);
    // Random indeed: another first install gets another one.
    assert.notEqual(secretData(firstInstall(req))['session-secrets'], data['session-secrets']);
  });

  test('upgrade: the generated values already in the cluster are reused, the same bytes', () => {
    const req = { valueFiles: [ci('default')], values: { redis: { enabled: true } }, release: { revision: 2, isUpgrade: true } };
    const installed = firstInstall(req);
    const ours = inCluster(installed);
    // Other Secrets in the namespace, and a same-named Secret in another namespace, are not ours.
    const stranger: K8sObject = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'other', namespace: NAMESPACE }, data: { 'session-secrets': 'b3RoZXI=' } };
    const elsewhere: K8sObject = { ...ours, metadata: { name: ours.metadata.name, namespace: 'elsewhere' }, data: { 'session-secrets': 'ZWxzZXdoZXJl' } };
    for (const objects of [[ours], [stranger, elsewhere, ours]]) {
      assert.deepEqual(ofKind(renderChart({ ...req, cluster: { objects } }), 'Secret')[0]!.data, ours.data);
    }
    // Only elsewhere's: this namespace holds no Secret of ours, so it is a first install again.
    assert.notEqual(secretData(renderChart({ ...req, cluster: { objects: [elsewhere] } }))['session-secrets'], 'elsewhere');
    // An upgrade rendered without the cluster cannot read it back either: it fails too.
    assert.match(failure(noCluster(req)), /secrets\.sessionSecrets is empty/);
  });

  test('values win over what the cluster holds: setting sessionSecrets rotates on purpose', () => {
    const installed = firstInstall({ valueFiles: [ci('default')] });
    const r = renderChart({ valueFiles: [ci('default')], values: { secrets: { sessionSecrets: [SESSION_SECRET] } }, cluster: { objects: [inCluster(installed)] } });
    assert.equal(secretData(r)['session-secrets'], SESSION_SECRET);
  });

  test('existingSecret: no Secret is rendered, with or without a cluster, and the pods mount the named one', () => {
    for (const r of [noCluster({ valueFiles: [ci('existing-secret')] }), firstInstall({ valueFiles: [ci('existing-secret')] })]) {
      assert.deepEqual(ofKind(r, 'Secret'), []);
      const [deployment] = ofKind(r, 'Deployment');
      const volumes = ((deployment!.spec as { template: { spec: { volumes: Array<{ name: string; secret?: { secretName: string } }> } } }).template.spec.volumes);
      assert.equal(volumes.find((v) => v.name === 'secrets')?.secret?.secretName, 'portcullis-credentials');
    }
  });

  test('values.yaml alone: secrets.clientSecret is required', () => {
    assert.match(failure(firstInstall()), /secrets\.clientSecret is required/);
  });

  for (const { name, file } of valueFiles()) {
    test(`${name}: renders to Kubernetes objects, its ConfigMap holds what chart.ts's mirror says`, () => {
      const values = chartValues(file);
      const secrets = values.secrets as { existingSecret: string; clientSecret: string; sessionSecrets: string[] };
      // values.yaml alone has no client secret: give it one, as `--set secrets.clientSecret=...` would.
      const extra = secrets.clientSecret || secrets.existingSecret ? undefined : { secrets: { clientSecret: 'set-on-the-command-line' } };
      const req = { valueFiles: file ? [file] : [], values: extra };
      const r = firstInstall(req);
      assert.ok(r.ok, r.ok ? '' : r.error);
      const kinds = r.objects.map((o) => o.kind);
      for (const kind of ['ConfigMap', 'Deployment', 'Service']) assert.ok(kinds.includes(kind), `no ${kind} rendered`);
      assert.equal(kinds.includes('Secret'), !secrets.existingSecret);
      assert.ok(r.notes.includes('/oauth2/callback'), 'NOTES.txt rendered');
      const [configMap] = ofKind(r, 'ConfigMap');
      const config: unknown = parse(String((configMap!.data as Record<string, unknown>)['portcullis.yaml']));
      assert.ok(isPlainObject(config));
      assert.deepEqual(config, renderedConfig(values));

      // Without a cluster it renders exactly when nothing would have to be generated.
      const redis = values.redis as { enabled: boolean; password: string };
      const needsGenerating = !secrets.existingSecret && (secrets.sessionSecrets.length === 0 || (redis.enabled && !redis.password));
      const offline = noCluster(req);
      if (needsGenerating) assert.match(failure(offline), /is empty and Helm cannot see the cluster/);
      else assert.ok(offline.ok, offline.ok ? '' : offline.error);
    });
  }
});
