// Test support: renders the Helm chart for real with main.go (Go's text/template + sprig, what Helm
// renders with), built once per content hash into os.tmpdir() from Debian's Go packages.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { findTool } from '../../helpers/chromium.js';
import { chartDir, isPlainObject, RELEASE_NAME, type Values } from '../chart.js';

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(here, 'main.go');
/** Debian installs Go libraries as GOPATH sources here (no module proxy needed, none reachable in CI). */
const GOPATH = '/usr/share/gocode';
const GO_LIBRARIES = ['github.com/Masterminds/sprig', 'sigs.k8s.io/yaml'];
export const GO_PACKAGES = 'golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev';

/** A Kubernetes object as the renderer and the tests see it. */
export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };

export interface RenderRequest {
  /** -f files, in order, coalesced over values.yaml. */
  valueFiles?: string[];
  /** Like --set, applied after the files. */
  values?: Values;
  release?: { name?: string; namespace?: string; revision?: number; isUpgrade?: boolean };
  /**
   * What `lookup` sees: null is no cluster connection (helm template, --dry-run=client, Argo CD);
   * otherwise the objects the cluster holds.
   */
  cluster: null | { objects: K8sObject[] };
}

export type RenderResult =
  | { ok: true; manifests: Record<string, string>; objects: K8sObject[]; notes: string }
  | { ok: false; error: string };

export const NAMESPACE = 'auth';

/** Why the renderer cannot be built here, or undefined; with CI=true a missing toolchain throws. */
export function missingGoReason(): string | undefined {
  const missing = [
    ...(findTool('go') ? [] : ['go']),
    ...GO_LIBRARIES.filter((lib) => !existsSync(join(GOPATH, 'src', lib))).map((lib) => `${GOPATH}/src/${lib}`),
  ];
  if (missing.length === 0) return undefined;
  const message = `the chart renderer needs ${missing.join(', ')} (apt-get install ${GO_PACKAGES}; see .ci/run)`;
  // The same rule as test/helpers/chromium.ts: CI must not go green by skipping.
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  return message;
}

const goEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  GO111MODULE: 'off',
  GOPATH,
  GOFLAGS: '',
  // A cache the build can always write, whatever HOME is.
  GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'portcullis-go-cache'),
});

let built: string | undefined;

/**
 * The renderer binary: built once, reused while main.go and the Go version are the same (the build
 * takes seconds, a render milliseconds). Built under a temporary name and renamed, so test files
 * building at the same time never run a half-written binary.
 */
export function rendererBinary(): string {
  if (built) return built;
  const version = spawnSync('go', ['version'], { encoding: 'utf8', env: goEnv() });
  if (version.status !== 0) throw new Error(`go version failed: ${version.stderr}`);
  const hash = createHash('sha256').update(readFileSync(SOURCE)).update(version.stdout).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `portcullis-chart-render-${hash}`);
  const binary = join(dir, 'render');
  if (!existsSync(binary)) {
    mkdirSync(dir, { recursive: true });
    const partial = `${binary}.${process.pid}.partial`;
    const r = spawnSync('go', ['build', '-o', partial, SOURCE], { encoding: 'utf8', env: goEnv() });
    if (r.status !== 0) throw new Error(`building ${SOURCE} failed:\n${r.stderr}`);
    renameSync(partial, binary);
  }
  built = binary;
  return binary;
}

/** Renders the chart; a template failure (required, fail) is a result, anything else throws. */
export function renderChart(req: RenderRequest): RenderResult {
  const input = JSON.stringify({
    chart: chartDir,
    valueFiles: req.valueFiles ?? [],
    values: req.values ?? null,
    release: { name: RELEASE_NAME, namespace: NAMESPACE, ...req.release },
    cluster: req.cluster,
  });
  const r = spawnSync(rendererBinary(), [], { input, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`renderer exited ${r.status}: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { manifests?: Record<string, string>; error?: string };
  if (out.error !== undefined) return { ok: false, error: out.error };
  const manifests = out.manifests ?? {};
  const objects: K8sObject[] = [];
  let notes = '';
  for (const [name, text] of Object.entries(manifests).sort(([a], [b]) => a.localeCompare(b))) {
    if (name.endsWith('/NOTES.txt')) {
      notes = text;
      continue;
    }
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw new Error(`${name} is not valid YAML: ${doc.errors.map((e) => e.message).join('; ')}\n${text}`);
      const obj: unknown = doc.toJS();
      if (obj === null || obj === undefined) continue;
      if (!isPlainObject(obj) || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string'
        || !isPlainObject(obj.metadata) || typeof obj.metadata.name !== 'string' || obj.metadata.name === '') {
        throw new Error(`${name} renders something that is not a Kubernetes object:\n${text}`);
      }
      objects.push(obj as K8sObject);
    }
  }
  return { ok: true, manifests, objects, notes };
}

/** The rendered objects of a kind. */
export function ofKind(result: RenderResult, kind: string): K8sObject[] {
  if (!result.ok) throw new Error(`the render failed: ${result.error}`);
  return result.objects.filter((o) => o.kind === kind);
}
