// Helm chart values: every shipped values file passes values.schema.json (as `helm install` would
// check it), typos and wrong types are rejected, and values.yaml documents every key it owns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
// The named export: under NodeNext, TypeScript types ajv's CommonJS default import as the module object.
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isScalar, isSeq, parseDocument, visit, type Pair } from 'yaml';
import { chartDir, chartValues, coalesce, defaultValues, isPlainObject, readText, valueFiles } from './chart.js';

const schema = JSON.parse(readText(join(chartDir, 'values.schema.json'))) as Record<string, unknown>;
// strict: a misspelt keyword in the schema itself (e.g. "additionalProperty") is an error, not a no-op.
const ajv = new Ajv({ allErrors: true, strictSchema: true, strictTypes: true, allowUnionTypes: true });
const validate = ajv.compile(schema);

function problems(values: unknown): string[] {
  return validate(values) ? [] : (validate.errors ?? []).map((e: ErrorObject) => `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
}

test('values.schema.json is draft-07', () => {
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
});

for (const { name, file } of valueFiles()) {
  test(`${name} (over values.yaml) passes values.schema.json`, () => {
    assert.deepEqual(problems(chartValues(file)), []);
  });
}

test('there is a ci values file for each install variant', () => {
  const names = valueFiles().map((v) => v.name);
  for (const variant of ['default', 'redis', 'ingress-hpa', 'existing-secret', 'private-key-jwt', 'multi-provider']) {
    assert.ok(names.includes(`helm/portcullis/ci/${variant}-values.yaml`), `missing ci/${variant}-values.yaml`);
  }
});

const PROVIDER = { id: 'corp', issuer: 'https://idp.example.com', clientId: 'c' };

// Each bad document is a user values file coalesced over values.yaml, as Helm does.
const rejected: Array<[string, unknown]> = [
  ['a typo at the top level', { replicaCont: 3 }],
  ['a typo in a chart-owned block', { ingress: { enabled: true, classname: 'nginx' } }],
  ['a wrong type', { replicaCount: 'two' }],
  ['a port out of range', { containerPorts: { http: 70000 } }],
  ['an unknown pull policy', { image: { pullPolicy: 'Sometimes' } }],
  ['a session secret shorter than 32 bytes', { secrets: { sessionSecrets: ['short'] } }],
  ['a typo in the Portcullis config', { config: { trustproxy: true } }],
  ['a typo in config.oidc', { config: { oidc: { clientID: 'x' } } }],
  ['a client secret written into the config', { config: { oidc: { clientSecret: 'hunter2' } } }],
  ['session secrets written into the config', { config: { session: { secrets: ['x'.repeat(40)] } } }],
  // config.oidc as a list of providers: each item is checked like the mapping, chart-owned keys too.
  ['a client secret written into a listed provider', { config: { oidc: [{ ...PROVIDER, clientSecret: 'hunter2' }] } }],
  ['a client secret file written into a listed provider', { config: { oidc: [{ ...PROVIDER, clientSecretFile: '/x' }] } }],
  ['a typo in a listed provider', { config: { oidc: [{ ...PROVIDER, clientID: 'x' }] } }],
  ['a listed provider without an id', { config: { oidc: [{ issuer: 'https://idp.example.com', clientId: 'c' }] } }],
  ['a listed provider with a bad id', { config: { oidc: [{ ...PROVIDER, id: 'corp.example' }] } }],
  ['an empty provider list', { config: { oidc: [] } }],
  ['config.oidc as a ${VAR}', { config: { oidc: '${OIDC}' } }],
  ['secrets.clientSecrets keyed by something that is not a provider id', { secrets: { clientSecrets: { 'corp.example': 'x' } } }],
  ['a secrets.clientSecrets value that is not text', { secrets: { clientSecrets: { corp: 42 } } }],
  ['listen set in the config (the chart owns the ports)', { config: { listen: { port: 3000 } } }],
  ['a bad duration', { config: { session: { idleTimeout: '8 hours' } } }],
  ['an unknown log level', { config: { logLevel: 'verbose' } }],
  ['no routes', { config: { routes: [] } }],
  ['a typo in a route', { config: { routes: [{ name: 'app', upstream: 'http://app:8080', upstrem: 'http://x' }] } }],
  ['an unknown rule operator', { config: { routes: [{ name: 'app', upstream: 'http://app:8080', allow: { claim: 'groups', contain: 'admin' } }] } }],
  ['a rule with two operators', { config: { routes: [{ name: 'app', upstream: 'http://app:8080', allow: { claim: 'groups', contains: 'a', equals: 'b' } }] } }],
  ['publicUrl with a path', { config: { publicUrl: 'https://apps.example.com/sub' } }],
  ['an unknown route method', { config: { routes: [{ name: 'app', upstream: 'http://app:8080', match: { methods: ['GTE'] } }] } }],
  ['session.store set by hand next to the bundled Redis', { redis: { enabled: true }, config: { session: { store: 'redis' } } }],
  ['an image digest that is not sha256', { image: { digest: 'latest' } }],
];
for (const [what, doc] of rejected) {
  test(`values.schema.json rejects ${what}`, () => {
    assert.notDeepEqual(problems(coalesce(defaultValues(), doc)), [], JSON.stringify(doc));
  });
}

test('a full route passes: match, rule, headers, assertion, grafana preset', () => {
  const route = {
    name: 'grafana', match: { host: 'grafana.example.com', path: '/', methods: ['GET', 'POST'] }, upstream: 'http://grafana:3000',
    websocket: true, timeout: '1m', assertion: { ttl: '2m' }, headers: { 'X-Team': '{team}' }, preset: 'grafana',
    allow: { any: [{ claim: 'groups', contains: 'admin' }, { all: [{ claim: 'email', endsWith: '@example.com' }, { not: { claim: 'blocked', exists: true } }] }] },
    grafanaRoles: { Admin: { claim: ['https://example.com/claims', 'roles'], in: ['admin', 'owner'] } },
  };
  assert.deepEqual(problems(coalesce(defaultValues(), { config: { routes: [route] } })), []);
});

test('config.oidc as a list of providers passes, with secrets.clientSecrets; a listed provider takes ${VAR} like the mapping', () => {
  const doc = {
    secrets: { clientSecrets: { corp: 'a', 'partners_2-x': 'b' } },
    config: { oidc: [{ ...PROVIDER, scopes: ['openid', 'groups'] }, { id: 'partners_2-x', issuer: '${PARTNERS_ISSUER}', clientId: 'p', tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: '/keys/p.pem', clockTolerance: '${SKEW:-30s}' }] },
  };
  assert.deepEqual(problems(coalesce(defaultValues(), doc)), []);
});

test('values accepted with ${VAR} references where Portcullis substitutes them', () => {
  const doc = { config: { trustProxy: '${TRUST_PROXY}', shutdownGracePeriod: '${GRACE:-25s}', publicUrl: '${PUBLIC_URL}' } };
  assert.deepEqual(problems(coalesce(defaultValues(), doc)), []);
});

test('values.yaml is complete: every key the schema describes has a default', () => {
  const missing: string[] = [];
  const walk = (node: Record<string, unknown>, values: unknown, path: string): void => {
    const props = node.properties as Record<string, Record<string, unknown>> | undefined;
    if (!props) return;
    for (const [key, sub] of Object.entries(props)) {
      // Forbidden keys (`not: {}`) and optional Portcullis settings need no default in values.yaml.
      if ('not' in sub || path.startsWith('config') || key === 'global') continue;
      if (!isPlainObject(values) || !Object.hasOwn(values, key)) { missing.push(path ? `${path}.${key}` : key); continue; }
      walk(sub, values[key], path ? `${path}.${key}` : key);
    }
  };
  walk(schema, defaultValues(), '');
  assert.deepEqual(missing, []);
});

test('values.yaml has a comment for every key the chart owns', () => {
  // Keys inside objects passed through to Kubernetes (securityContext, resources...) or inside
  // lists are documented by the comment on their parent.
  const doc = parseDocument(readText(join(chartDir, 'values.yaml')));
  const undocumented: string[] = [];
  visit(doc, {
    Pair(_, pair: Pair, path) {
      if (path.some((p) => isSeq(p))) return;
      const keys = path.filter((p): p is Pair => !isMap(p) && !isSeq(p) && 'key' in (p as object)).map((p) => String((p.key as { value: unknown }).value));
      let node: Record<string, unknown> | undefined = schema;
      for (const k of keys) node = (node?.properties as Record<string, Record<string, unknown>> | undefined)?.[k];
      const key = String(isScalar(pair.key) ? pair.key.value : pair.key);
      if (!(node?.properties as Record<string, unknown> | undefined)?.[key]) return;
      const parent = path[path.length - 1];
      const first = isMap(parent) && parent.items[0] === pair;
      const commented = Boolean((pair.key as { commentBefore?: string }).commentBefore)
        || Boolean((pair.value as { comment?: string } | null)?.comment)
        || (first && Boolean((parent as { commentBefore?: string }).commentBefore));
      if (!commented) undocumented.push([...keys, key].join('.'));
    },
  });
  assert.deepEqual(undocumented, []);
});
