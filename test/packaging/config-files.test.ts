// Every Portcullis config we ship passes Portcullis's own validation, as `portcullis check` would run
// it: the config block of each Helm values file (with the keys the chart adds) and every
// examples/**/portcullis.yaml.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { validateConfigObject } from '../../src/config/index.js';
import { parseConfigText } from '../../src/config/load.js';
import { chartDir, chartValues, examplesDir, listFiles, readText, rel, renderedConfig, SECRETS_DIR, valueFiles } from './chart.js';

// What the pod's environment and secret files would supply; fake, but shaped like the real thing.
const SECRET_48 = 'x7Qp2LmN9vRt4KsW8yZc3HdF6jBg1AeU5oIrT0nMqPlKsJhG';
const env: Record<string, string> = {
  OIDC_CLIENT_SECRET: 'example-client-secret',
  CORP_CLIENT_SECRET: 'example-corp-client-secret',
  PARTNERS_CLIENT_SECRET: 'example-partners-client-secret',
  SESSION_SECRET: SECRET_48,
  REDIS_URL: 'redis://redis.example.internal:6379',
  REDIS_PASSWORD: 'example-redis-password',
  PUBLIC_URL: 'https://apps.example.com',
};
// A client keys file (oidc.clientKeysFile, private_key_jwt) holds a private key, not a secret line.
const CLIENT_KEY_PEM = String(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
const readFile = (path: string): string => (path.endsWith('.pem') ? CLIENT_KEY_PEM : `${SECRET_48}\n`);

function issuesOf(raw: unknown): string[] {
  const r = validateConfigObject(raw, env, { readFile });
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
}

test('the test secret is long enough to be a session secret', () => {
  assert.equal(SECRET_48.length, 48);
});

for (const { name, file } of valueFiles()) {
  test(`${name}: config block, as the chart renders it, passes validateConfigObject`, () => {
    const config = renderedConfig(chartValues(file));
    assert.deepEqual(issuesOf(config), []);
  });
}

test('the chart points Portcullis at its mounted secret files', () => {
  const read: string[] = [];
  const r = validateConfigObject(renderedConfig(chartValues()), env, { readFile: (p) => { read.push(p); return SECRET_48; } });
  assert.ok(r.ok);
  assert.deepEqual(read.sort(), [`${SECRETS_DIR}/client-secret`, `${SECRETS_DIR}/session-secrets`]);
});

test('with several providers, each reads its own mounted client secret file', () => {
  const read: string[] = [];
  const r = validateConfigObject(renderedConfig(chartValues(join(chartDir, 'ci', 'multi-provider-values.yaml'))), env, { readFile: (p) => { read.push(p); return SECRET_48; } });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  assert.deepEqual(read.sort(), [`${SECRETS_DIR}/client-secret-corp`, `${SECRETS_DIR}/client-secret-partners`, `${SECRETS_DIR}/session-secrets`]);
});

const examples = listFiles(examplesDir, (n) => n === 'portcullis.yaml');

test('there are example configs', () => {
  assert.ok(examples.length >= 8, `found only ${examples.length}`);
});

for (const file of examples) {
  test(`${rel(file)} passes validateConfigObject`, () => {
    // Read as `portcullis check` reads a file: Portcullis's own YAML step, where
    // `secrets: [${SESSION_SECRET}]` is legal even though `{` is flow syntax in plain YAML.
    const parsed = parseConfigText(readText(file), env);
    assert.deepEqual(parsed.issues, []);
    assert.deepEqual(issuesOf(parsed.value), []);
  });
}
