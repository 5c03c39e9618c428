// The Helm chart rendered for real (Go text/template + sprig, see main.go): the session secret and the
// bundled Redis password never change by accident — a render without cluster access fails and says
// what to set, a first install generates, an upgrade reuses — and every values file renders to valid
// Kubernetes objects whose config is what the TypeScript mirror (chart.ts) says.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { parse } from 'yaml';
import { chartDir, chartValues, isPlainObject, RELEASE_NAME, renderedConfig, valueFiles } from '../chart.js';
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

type Labels = Record<string, string>;
interface Container { name: string; ports?: Array<{ name: string }>; env?: Array<{ valueFrom?: { secretKeyRef?: { name: string; key: string } } }> }
interface PodSpec { serviceAccountName?: string; containers: Container[]; volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string; items?: Array<{ key: string }> } }> }
interface Workload { metadata: { name: string }; spec: { selector: { matchLabels: Labels }; template: { metadata: { labels: Labels; annotations?: Record<string, string> }; spec: PodSpec } } }
interface Service { metadata: { name: string; labels: Labels }; spec: { selector: Labels; ports: Array<{ name: string; port: number; targetPort: string }> } }

const selects = (selector: Labels, labels: Labels): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

/**
 * What one rendered object says of another resolves: selectors select the pods they mean (and only
 * those; no Service selects a bare Pod such as a test hook), named ports and referenced objects exist,
 * the Secret keys pods read are in the Secret, and the config checksum is the rendered config's.
 */
function crossReferenceProblems(r: RenderResult, existingSecret: string): string[] {
  const problems: string[] = [];
  const check = (ok: boolean, what: string): void => { if (!ok) problems.push(what); };
  const named = (kind: string, name: string): K8sObject | undefined => ofKind(r, kind).find((o) => o.metadata.name === name);
  const workloads = ofKind(r, 'Deployment') as unknown as Workload[];
  const services = ofKind(r, 'Service') as unknown as Service[];
  const podsOf = (selector: Labels): Workload[] => workloads.filter((w) => selects(selector, w.spec.template.metadata.labels));
  const secret = ofKind(r, 'Secret')[0];
  const isProxyOnly = (selected: Workload[]): boolean => selected.length === 1 && selected[0]!.spec.template.spec.containers.some((c) => c.name === 'portcullis');
  const fullname = `${RELEASE_NAME}-portcullis`;
  check(existingSecret ? secret === undefined : secret?.metadata.name === fullname, 'the chart\'s Secret is rendered exactly when existingSecret is not set');
  for (const w of workloads) {
    check(selects(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name}: its selector does not select its own pods`);
    check(podsOf(w.spec.selector.matchLabels).length === 1, `${w.metadata.name}: its selector also selects another Deployment's pods`);
  }
  // Bare Pods (a helm test hook) are nobody's backend.
  const barePods = ofKind(r, 'Pod') as unknown as Array<{ metadata: { name: string; labels: Labels }; spec: PodSpec }>;
  for (const p of barePods) {
    check(!services.some((svc) => selects(svc.spec.selector, p.metadata.labels)), `Pod ${p.metadata.name}: a Service selects it`);
  }
  const podSpecs = [...workloads.map((w) => ({ owner: w.metadata.name, spec: w.spec.template.spec })), ...barePods.map((p) => ({ owner: p.metadata.name, spec: p.spec }))];
  for (const { owner, spec } of podSpecs) {
    if (spec.serviceAccountName && spec.serviceAccountName !== 'default') {
      check(named('ServiceAccount', spec.serviceAccountName) !== undefined, `${owner}: no ServiceAccount ${spec.serviceAccountName}`);
    }
    const secretKeys = [
      ...(spec.volumes ?? []).flatMap((v) => (v.secret ? (v.secret.items ?? []).map((i) => ({ name: v.secret!.secretName, key: i.key })) : [])),
      ...spec.containers.flatMap((c) => (c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : []))),
    ];
    // The chart's Secret is named like the Deployment; others (extraEnv) are the user's business.
    for (const { name, key } of secretKeys.filter((ref) => ref.name === fullname || ref.name === existingSecret)) {
      if (existingSecret) check(name === existingSecret, `${owner}: reads the chart's Secret, which existingSecret replaces`);
      else check(secret !== undefined && key in (secret.data as object), `${owner}: Secret ${name} has no key ${key}`);
    }
    const mounted = (spec.volumes ?? []).find((v) => v.name === 'secrets')?.secret?.secretName;
    if (mounted !== undefined) check(mounted === (existingSecret || fullname), `${owner}: mounts Secret ${mounted}`);
    for (const v of spec.volumes ?? []) {
      if (v.configMap) check(named('ConfigMap', v.configMap.name) !== undefined, `${owner}: no ConfigMap ${v.configMap.name}`);
    }
  }
  for (const svc of services) {
    const pods = podsOf(svc.spec.selector);
    // Each Service fronts the Deployment of its own name (the proxy's, the bundled Redis's).
    check(pods.length === 1 && pods[0]!.metadata.name === svc.metadata.name, `Service ${svc.metadata.name} does not select exactly the pods of its Deployment`);
    for (const port of svc.spec.ports) {
      check(pods.some((w) => w.spec.template.spec.containers.some((c) => c.ports?.some((p) => p.name === port.targetPort))), `Service ${svc.metadata.name}: no container port ${port.targetPort}`);
    }
  }
  const servicePort = (name: string, port: string | number): boolean => services.some((s) => s.metadata.name === name && s.spec.ports.some((p) => p.name === port || p.port === port));
  for (const ing of ofKind(r, 'Ingress')) {
    for (const rule of (ing.spec as { rules: Array<{ http: { paths: Array<{ backend: { service: { name: string; port: { name: string } } } }> } }> }).rules) {
      for (const { backend } of rule.http.paths) check(servicePort(backend.service.name, backend.service.port.name), `Ingress: no Service port ${backend.service.name}:${backend.service.port.name}`);
    }
  }
  for (const hpa of ofKind(r, 'HorizontalPodAutoscaler')) {
    const target = (hpa.spec as { scaleTargetRef: { kind: string; name: string } }).scaleTargetRef;
    check(named(target.kind, target.name) !== undefined, `HPA: no ${target.kind} ${target.name}`);
  }
  for (const pdb of ofKind(r, 'PodDisruptionBudget')) {
    check(isProxyOnly(podsOf((pdb.spec as { selector: { matchLabels: Labels } }).selector.matchLabels)), 'PodDisruptionBudget: does not select exactly the proxy pods');
  }
  for (const sm of ofKind(r, 'ServiceMonitor')) {
    const spec = sm.spec as { selector: { matchLabels: Labels }; endpoints: Array<{ port: string }> };
    const scraped = services.filter((s) => selects(spec.selector.matchLabels, s.metadata.labels));
    check(scraped.length === 1 && spec.endpoints.every((e) => servicePort(scraped[0]!.metadata.name, e.port)), 'ServiceMonitor: does not scrape a port of exactly one Service');
  }
  for (const np of ofKind(r, 'NetworkPolicy')) {
    const spec = np.spec as { podSelector: { matchLabels: Labels }; ingress: Array<{ from: Array<{ podSelector: { matchLabels: Labels } }> }> };
    check(podsOf(spec.podSelector.matchLabels).length === 1, `NetworkPolicy ${np.metadata.name}: does not select one Deployment's pods`);
    for (const from of spec.ingress.flatMap((i) => i.from)) {
      // The proxy's pods, or the `helm test` doctor Pod alone (it checks Redis from inside the cluster).
      const doctorOnly = podsOf(from.podSelector.matchLabels).length === 0
        && barePods.filter((p) => selects(from.podSelector.matchLabels, p.metadata.labels)).map((p) => p.metadata.labels['app.kubernetes.io/component']).join() === 'doctor';
      check(isProxyOnly(podsOf(from.podSelector.matchLabels)) || doctorOnly, `NetworkPolicy ${np.metadata.name}: lets in other pods than the proxy's (and the doctor test Pod)`);
    }
  }
  // Portcullis's Redis URL names a rendered Service and port.
  const [configMap] = ofKind(r, 'ConfigMap');
  const configText = String((configMap!.data as Record<string, unknown>)['portcullis.yaml']);
  const url = /redis:\/\/[^@]*@([^:/]+):(\d+)/.exec(configText);
  if (url && !configText.includes('${REDIS_URL}')) check(servicePort(url[1]!, Number(url[2])), `config: no Service ${url[1]}:${url[2]} for Redis`);
  // checksum/config is the hash of the config the pods mount (the ConfigMap holds it plus a newline).
  const proxy = workloads.find((w) => w.spec.template.spec.containers.some((c) => c.name === 'portcullis'));
  check(proxy?.spec.template.metadata.annotations?.['checksum/config'] === createHash('sha256').update(configText.replace(/\n$/, '')).digest('hex'), 'checksum/config is not the hash of the rendered config');
  return problems;
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
    test(`${name}: renders to Kubernetes objects that refer to each other rightly, its ConfigMap holds what chart.ts's mirror says`, () => {
      const values = chartValues(file);
      const secrets = values.secrets as { existingSecret: string; clientSecret: string; sessionSecrets: string[] };
      // values.yaml alone has no client secret: give it one, as `--set secrets.clientSecret=...` would
      // (several providers' files carry theirs in secrets.clientSecrets).
      const several = Array.isArray((values.config as { oidc: unknown }).oidc);
      const extra = secrets.clientSecret || secrets.existingSecret || several ? undefined : { secrets: { clientSecret: 'set-on-the-command-line' } };
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
      assert.deepEqual(crossReferenceProblems(r, secrets.existingSecret), []);

      // Without a cluster it renders exactly when nothing would have to be generated.
      const redis = values.redis as { enabled: boolean; password: string };
      const needsGenerating = !secrets.existingSecret && (secrets.sessionSecrets.length === 0 || (redis.enabled && !redis.password));
      const offline = noCluster(req);
      if (needsGenerating) assert.match(failure(offline), /is empty and Helm cannot see the cluster/);
      else assert.ok(offline.ok, offline.ok ? '' : offline.error);
    });
  }
});
