// The Helm chart with several OpenID Providers (config.oidc a list), rendered for real (main.go):
// each provider that reads a client secret gets its own Secret key client-secret-<id>, mounted and
// pointed at by its clientSecretFile — proven end to end by loading the rendered config with
// Portcullis's own validator through the rendered mounts. A missing, misplaced or unknown secret
// fails the render naming the value to set. And the mapping form (one provider) renders as it did
// before the list form existed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { parse } from 'yaml';
import { validateConfigObject } from '../../../src/config/index.js';
import { chartDir, chartValues, readYaml, SECRETS_DIR, valueFiles, type Values } from '../chart.js';
import { missingGoReason, ofKind, renderChart, type K8sObject, type RenderResult } from './renderer.js';

const MULTI = join(chartDir, 'ci', 'multi-provider-values.yaml');
const SESSION_SECRET = 'providers-test-session-secret-0123456789abcdef';

type Provider = Record<string, unknown> & { id: string };
type Items = Array<{ key: string; path: string }>;
interface PodSpec { volumes: Array<{ name: string; secret?: { secretName: string; items: Items } }> }

/** The multi-provider ci values as a document of its own, to change and render (`values`, no -f). */
function multiValues(): Values & { config: { oidc: Provider[] }; secrets: { clientSecrets: Record<string, string> } } {
  return structuredClone(readYaml(MULTI)) as ReturnType<typeof multiValues>;
}

/** partners authenticates with private_key_jwt: no client secret of its own. */
function withPartnersJwt(v: ReturnType<typeof multiValues>): ReturnType<typeof multiValues> {
  Object.assign(v.config.oidc[1]!, { tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: '/etc/portcullis/client-keys/partners.pem' });
  delete v.secrets.clientSecrets.partners;
  return v;
}

function ok(r: RenderResult): Extract<RenderResult, { ok: true }> {
  assert.ok(r.ok, r.ok ? '' : r.error);
  return r;
}

function failure(r: RenderResult): string {
  assert.equal(r.ok, false, 'the render should have failed');
  return (r as { error: string }).error;
}

function secretData(r: RenderResult): Record<string, string> {
  const [secret, ...more] = ofKind(r, 'Secret');
  assert.ok(secret && more.length === 0, 'one Secret rendered');
  return Object.fromEntries(Object.entries(secret.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

/** The pod specs that mount the secrets: the proxy's Deployment and the `helm test` doctor Pod. */
function podSpecs(r: RenderResult): Array<{ owner: string; spec: PodSpec }> {
  const proxy = ofKind(r, 'Deployment').filter((d) => !d.metadata.name.endsWith('-redis'));
  return [
    ...proxy.map((d) => ({ owner: d.metadata.name, spec: (d.spec as { template: { spec: PodSpec } }).template.spec })),
    ...ofKind(r, 'Pod').map((p) => ({ owner: p.metadata.name, spec: p.spec as PodSpec })),
  ];
}

function secretItems(spec: PodSpec): Items {
  return spec.volumes.find((v) => v.name === 'secrets')!.secret!.items;
}

function renderedConfigOf(r: RenderResult): Record<string, unknown> {
  const [configMap] = ofKind(r, 'ConfigMap');
  return parse(String((configMap!.data as Record<string, string>)['portcullis.yaml'])) as Record<string, unknown>;
}

/**
 * Loads the rendered config as a pod would: every `*File` under the secrets mount is read through
 * the pod's volume items from the rendered Secret; nothing else may be read.
 */
function loadAsPod(r: RenderResult, spec: PodSpec) {
  const data = secretData(r);
  const byPath = new Map(secretItems(spec).map((i) => [`${SECRETS_DIR}/${i.path}`, i.key]));
  const read: string[] = [];
  const result = validateConfigObject(renderedConfigOf(r), {}, {
    readFile: (path) => {
      read.push(path);
      const key = byPath.get(path);
      if (key === undefined) throw new Error(`${path}: not mounted`);
      const value = data[key];
      if (value === undefined) throw new Error(`${path}: Secret key ${key} missing`);
      return value;
    },
  });
  return { result, read };
}

describe('several OpenID Providers, rendered', { skip: missingGoReason() }, () => {
  test('ci/multi-provider-values.yaml: a Secret key per provider, mounted, and each provider reads its own secret', () => {
    const r = ok(renderChart({ valueFiles: [MULTI], cluster: null }));
    assert.deepEqual(secretData(r), {
      'client-secret-corp': 'ci-corp-client-secret',
      'client-secret-partners': 'ci-partners-client-secret',
      'session-secrets': (multiValues().secrets as unknown as { sessionSecrets: string[] }).sessionSecrets.join('\n'),
    });
    const config = renderedConfigOf(r);
    assert.deepEqual((config.oidc as Provider[]).map((p) => [p.id, p.clientSecretFile]), [
      ['corp', `${SECRETS_DIR}/client-secret-corp`],
      ['partners', `${SECRETS_DIR}/client-secret-partners`],
    ]);
    const specs = podSpecs(r);
    assert.deepEqual(specs.map((s) => s.owner), ['release-portcullis', 'release-portcullis-doctor']);
    for (const { owner, spec } of specs) {
      assert.deepEqual(secretItems(spec), [
        { key: 'client-secret-corp', path: 'client-secret-corp' },
        { key: 'client-secret-partners', path: 'client-secret-partners' },
        { key: 'session-secrets', path: 'session-secrets' },
      ], owner);
      const { result, read } = loadAsPod(r, spec);
      assert.ok(result.ok, JSON.stringify(!result.ok && result.issues));
      assert.deepEqual(result.config.providers.map((p) => [p.id, p.clientSecret]), [['corp', 'ci-corp-client-secret'], ['partners', 'ci-partners-client-secret']]);
      assert.deepEqual(read.sort(), [`${SECRETS_DIR}/client-secret-corp`, `${SECRETS_DIR}/client-secret-partners`, `${SECRETS_DIR}/session-secrets`]);
    }
  });

  test('NOTES.txt names each provider\'s client id and issuer, and the one redirect URI', () => {
    const { notes } = ok(renderChart({ valueFiles: [MULTI], cluster: null }));
    assert.match(notes, /Register these at each OpenID Provider/);
    assert.match(notes, /^ {5}corp: client id "portcullis" at https:\/\/login\.corp\.example\.com$/m);
    assert.match(notes, /^ {5}partners: client id "portcullis" at https:\/\/id\.partners\.example\.net$/m);
    assert.match(notes, /Redirect URI \(required\): +https:\/\/apps\.example\.com\/oauth2\/callback {3}\(the same for every provider\)/);
  });

  test('a provider without its secret: the render fails naming secrets.clientSecrets.<id>', () => {
    const v = multiValues();
    delete v.secrets.clientSecrets.partners;
    const error = failure(renderChart({ values: v, cluster: null }));
    assert.match(error, /^execution error at \(portcullis\/templates\/secret\.yaml:\d+:\d+\): secrets\.clientSecrets\.partners is required: the client secret of config\.oidc provider "partners"/);
    assert.match(error, /secrets\.existingSecret/);
    // An empty one is no secret either.
    v.secrets.clientSecrets.partners = '';
    assert.match(failure(renderChart({ values: v, cluster: null })), /secrets\.clientSecrets\.partners is required/);
  });

  test('private_key_jwt in one provider, a secret in the other: only the other has a Secret key, a mount and a clientSecretFile', () => {
    const r = ok(renderChart({ values: withPartnersJwt(multiValues()), cluster: null }));
    assert.deepEqual(Object.keys(secretData(r)), ['client-secret-corp', 'session-secrets']);
    const [corp, partners] = renderedConfigOf(r).oidc as Provider[];
    assert.equal(corp!.clientSecretFile, `${SECRETS_DIR}/client-secret-corp`);
    assert.equal(partners!.clientSecretFile, undefined);
    assert.equal(partners!.clientKeysFile, '/etc/portcullis/client-keys/partners.pem');
    for (const { spec } of podSpecs(r)) {
      assert.deepEqual(secretItems(spec).map((i) => i.key), ['client-secret-corp', 'session-secrets']);
    }
  });

  test('a secret for a private_key_jwt provider, or for an id config.oidc does not have, fails the render', () => {
    const jwt = withPartnersJwt(multiValues());
    jwt.secrets.clientSecrets.partners = 'unused';
    assert.match(failure(renderChart({ values: jwt, cluster: null })), /secrets\.clientSecrets\.partners: config\.oidc has no provider "partners" that reads a client secret \(providers with one: corp\)/);
    const typo = multiValues();
    typo.secrets.clientSecrets.partner = 'typo';
    assert.match(failure(renderChart({ values: typo, cluster: null })), /secrets\.clientSecrets\.partner: config\.oidc has no provider "partner"/);
  });

  test('secrets.clientSecret with a list, or secrets.clientSecrets with a mapping: the render fails saying which to set', () => {
    const v = multiValues();
    (v.secrets as Record<string, unknown>).clientSecret = 'one-secret';
    assert.match(failure(renderChart({ values: v, cluster: null })), /secrets\.clientSecret is the client secret of config\.oidc as one mapping; config\.oidc is a list of providers: set secrets\.clientSecrets\.<id>/);
    const mapping = renderChart({ valueFiles: [join(chartDir, 'ci', 'redis-values.yaml')], values: { redis: { password: 'p' }, secrets: { clientSecrets: { corp: 'x' } } }, cluster: null });
    assert.match(failure(mapping), /secrets\.clientSecrets is for config\.oidc as a list of providers; with one provider \(config\.oidc a mapping\) set secrets\.clientSecret/);
  });

  test('existingSecret: no Secret; the pods mount client-secret-<id> from it, with or without a cluster', () => {
    const v = multiValues();
    v.secrets = { existingSecret: 'portcullis-credentials' } as unknown as typeof v.secrets;
    for (const cluster of [null, { objects: [] as K8sObject[] }]) {
      const r = ok(renderChart({ values: v, cluster }));
      assert.deepEqual(ofKind(r, 'Secret'), []);
      for (const { spec } of podSpecs(r)) {
        const volume = spec.volumes.find((x) => x.name === 'secrets')!.secret!;
        assert.equal(volume.secretName, 'portcullis-credentials');
        assert.deepEqual(volume.items.map((i) => i.key), ['client-secret-corp', 'client-secret-partners', 'session-secrets']);
      }
    }
  });

  test('checksum/secret follows secrets.clientSecrets: a changed provider secret rolls the pods', () => {
    const checksum = (v: Values): string => {
      const [d] = ofKind(ok(renderChart({ values: v, cluster: null })), 'Deployment');
      return (d!.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations['checksum/secret']!;
    };
    const before = multiValues();
    const after = multiValues();
    after.secrets.clientSecrets.partners = 'rotated';
    assert.notEqual(checksum(before), checksum(after));
  });
});

describe('one provider (config.oidc a mapping) renders as before the list form', { skip: missingGoReason() }, () => {
  for (const { name, file } of valueFiles()) {
    const values = chartValues(file);
    const config = values.config as { oidc: unknown; publicUrl: string };
    if (Array.isArray(config.oidc)) continue;
    const secrets = values.secrets as { existingSecret: string; clientSecret: string; sessionSecrets: string[] };
    test(`${name}: the client-secret key, its mount, clientSecretFile, checksum/secret and NOTES as they were`, () => {
      const redis = values.redis as { enabled: boolean; password: string };
      const jwt = (config.oidc as { tokenEndpointAuthMethod?: string }).tokenEndpointAuthMethod === 'private_key_jwt';
      // Given secrets, so that it renders without a cluster and without generating anything.
      const given = {
        secrets: { sessionSecrets: secrets.sessionSecrets.length ? secrets.sessionSecrets : [SESSION_SECRET], ...(secrets.clientSecret || secrets.existingSecret || jwt ? {} : { clientSecret: 'given' }) },
        redis: { password: redis.password || 'given-redis-password' },
      };
      const r = ok(renderChart({ valueFiles: file ? [file] : [], values: given, cluster: null }));
      const s: Record<string, unknown> = { ...(values.secrets as Record<string, unknown>), ...given.secrets };
      delete s.clientSecrets;
      if (!secrets.existingSecret) {
        assert.deepEqual(Object.keys(secretData(r)), ['client-secret', 'session-secrets', ...(redis.enabled ? ['redis-password'] : [])]);
      }
      for (const { owner, spec } of podSpecs(r)) {
        assert.deepEqual(secretItems(spec), [{ key: 'client-secret', path: 'client-secret' }, { key: 'session-secrets', path: 'session-secrets' }], owner);
      }
      assert.equal((renderedConfigOf(r).oidc as Record<string, unknown>).clientSecretFile, jwt ? undefined : `${SECRETS_DIR}/client-secret`);
      // The checksum's formula before secrets.clientSecrets existed: Go's JSON (keys sorted) of these three.
      const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
      const old = JSON.stringify({ redis: redis.enabled, redisPassword: given.redis.password, secrets: sorted(s) });
      const [deployment] = ofKind(r, 'Deployment').filter((d) => !d.metadata.name.endsWith('-redis'));
      assert.equal((deployment!.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations['checksum/secret'], createHash('sha256').update(old).digest('hex'));
      const oidc = config.oidc as { clientId: string; issuer: string };
      assert.ok(r.notes.includes(`in namespace auth.\n\n1. Register these at your OpenID Provider (client id "${oidc.clientId}"):\n\n     Redirect URI (required):        ${config.publicUrl.replace(/\/$/, '')}/oauth2/callback\n`), r.notes);
      assert.ok(r.notes.includes(`Until the IdP's discovery at ${oidc.issuer} answers, /readyz stays 503 and the\n   pods receive no traffic. Watch them with:\n\n     kubectl`), r.notes);
    });
  }
});
