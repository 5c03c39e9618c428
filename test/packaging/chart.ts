// Packaging test support: reads the Helm chart's values the way Helm would, without a helm binary.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const chartDir = join(repoRoot, 'helm', 'portcullis');
export const examplesDir = join(repoRoot, 'examples');

export type Values = Record<string, unknown>;

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

export function readYaml(path: string): unknown {
  return parse(readText(path));
}

/** Repository-relative path, for test names and messages. */
export function rel(path: string): string {
  return relative(repoRoot, path);
}

/** Every file under dir whose name passes the filter, sorted, depth-first. */
export function listFiles(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p, keep));
    else if (keep(name)) out.push(p);
  }
  return out;
}

/**
 * Helm's coalescing of a user values file over the chart's values.yaml: maps merge key by key,
 * anything else (lists included) replaces, and an explicit null deletes the chart's default.
 */
export function coalesce(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override === undefined ? base : override;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(override)) {
    if (v === null) delete out[k];
    else out[k] = k in base ? coalesce(base[k], v) : v;
  }
  return out;
}

export function defaultValues(): Values {
  return readYaml(join(chartDir, 'values.yaml')) as Values;
}

/** The values Helm would render with: values.yaml, with the given file (if any) coalesced over it. */
export function chartValues(file?: string): Values {
  const defaults = defaultValues();
  return file ? (coalesce(defaults, readYaml(file) ?? {}) as Values) : defaults;
}

/** The chart's value files: values.yaml, every ci/*-values.yaml, and the examples' Helm values. */
export function valueFiles(): Array<{ name: string; file: string | undefined }> {
  const ci = listFiles(join(chartDir, 'ci'), (n) => n.endsWith('-values.yaml'));
  const examples = listFiles(examplesDir, (n) => n === 'helm-values.yaml');
  return [
    { name: 'values.yaml', file: undefined },
    ...[...ci, ...examples].map((f) => ({ name: rel(f), file: f })),
  ];
}

/** Where the chart mounts its Secret's keys; must match templates/_helpers.tpl "portcullis.secretsDir". */
export const SECRETS_DIR = '/etc/portcullis/secrets';

/** The release name the tests render with (`helm install release ./helm/portcullis`). */
export const RELEASE_NAME = 'release';

/**
 * The config file the chart renders into its ConfigMap: a mirror of "portcullis.config" in
 * templates/_helpers.tpl, for release RELEASE_NAME. render/chart-render.test.ts compares it with the
 * real render of every values file; chart-templates.test.ts checks the template's text where Go is missing.
 */
export function renderedConfig(values: Values): Record<string, unknown> {
  const config = structuredClone(values.config) as Record<string, unknown>;
  const ports = values.containerPorts as { http: number; metrics: number };
  const redis = values.redis as { enabled: boolean };
  config.listen = { host: '0.0.0.0', port: ports.http };
  config.metrics = { host: '0.0.0.0', port: ports.metrics };
  // A provider reads a client secret unless it uses private_key_jwt; with several (a list), each its own file.
  const withSecret = (p: Record<string, unknown>, file: string) => (p.tokenEndpointAuthMethod === 'private_key_jwt' ? { ...p } : { ...p, clientSecretFile: `${SECRETS_DIR}/${file}` });
  config.oidc = Array.isArray(config.oidc)
    ? (config.oidc as Array<Record<string, unknown>>).map((p) => withSecret(p, `client-secret-${String(p.id)}`))
    : withSecret(config.oidc as Record<string, unknown>, 'client-secret');
  const session: Record<string, unknown> = { ...(config.session as object), secretsFile: `${SECRETS_DIR}/session-secrets` };
  if (redis.enabled) {
    session.store = 'redis';
    session.redis = { url: `redis://:\${REDIS_PASSWORD}@${RELEASE_NAME}-portcullis-redis:6379` };
  }
  config.session = session;
  return config;
}

/** A value at a dotted path in the values tree, or undefined. */
export function at(values: unknown, path: string): unknown {
  let cur = values;
  for (const seg of path.split('.')) {
    if (!isPlainObject(cur) || !Object.hasOwn(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return cur;
}
