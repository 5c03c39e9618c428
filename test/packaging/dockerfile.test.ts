// The container image, checked by reading the Dockerfile (no Docker engine here): multi-stage,
// production dependencies only, non-root, tini, healthcheck, ports, labels, and a tight build context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { at, chartDir, defaultValues, listFiles, readText, rel, repoRoot } from './chart.js';

interface Instruction { op: string; args: string }

/** Dockerfile instructions with line continuations joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!pending && (line === '' || line.startsWith('#'))) continue;
    if (pending && line.startsWith('#')) continue;
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) continue;
    const m = /^(\S+)\s*(.*)$/.exec(pending)!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]! });
    pending = '';
  }
  return out;
}

const all = instructions(readText(join(repoRoot, 'Dockerfile')));
const stages: Instruction[][] = [];
for (const ins of all) {
  if (ins.op === 'FROM') stages.push([]);
  stages[stages.length - 1]?.push(ins);
}
const final = stages[stages.length - 1]!;
const ops = (stage: Instruction[], op: string): string[] => stage.filter((i) => i.op === op).map((i) => i.args);

test('multi-stage: a build stage and a runtime stage, both on node:24-bookworm-slim', () => {
  assert.ok(stages.length >= 2, 'expected at least two FROM stages');
  for (const stage of stages) assert.match(stage[0]!.args, /^node:24-bookworm-slim(@sha256:[a-f0-9]{64})?( AS \w+)?$/i);
  assert.match(stages[0]![0]!.args, /\bAS build$/i);
});

test('the build stage compiles and then drops devDependencies', () => {
  const runs = ops(stages[0]!, 'RUN').join(' && ');
  const ci = runs.indexOf('npm ci');
  const build = runs.indexOf('npm run build');
  const prune = runs.indexOf('npm prune --omit=dev');
  assert.ok(ci >= 0 && build > ci && prune > build, 'expected npm ci, then npm run build, then npm prune --omit=dev');
});

test('the final stage installs no npm packages and copies only pruned node_modules, dist, bin, config', () => {
  const runs = ops(final, 'RUN').join('\n');
  assert.doesNotMatch(runs, /\bnpm\s+(install|i|ci|add)\b/, 'no npm install/ci in the runtime stage');
  assert.doesNotMatch(runs, /\b(yarn|pnpm|npx)\b/);
  const copies = ops(final, 'COPY');
  assert.ok(copies.some((c) => /^--from=build \/app\/node_modules /.test(c)), 'node_modules comes from the (pruned) build stage');
  assert.ok(copies.some((c) => /^--from=build \/app\/dist /.test(c)));
  const fromContext = copies.filter((c) => !c.startsWith('--from=')).map((c) => c.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1)).flat();
  assert.deepEqual(fromContext.sort(), ['bin', 'config', 'package.json'], 'only package.json, bin and config from the build context');
});

test('runs as a fixed non-root uid that matches the chart', () => {
  const users = ops(final, 'USER');
  assert.equal(users.length, 1);
  const uid = users[0]!.split(':')[0]!;
  assert.match(uid, /^\d+$/, 'numeric USER, so Kubernetes runAsNonRoot can verify it');
  assert.notEqual(Number(uid), 0);
  assert.equal(Number(uid), at(defaultValues(), 'securityContext.runAsUser'));
  // USER comes after every RUN: nothing later runs as root.
  assert.ok(final.findIndex((i) => i.op === 'USER') > final.map((i) => i.op).lastIndexOf('RUN'));
});

test('tini is PID 1 and the entrypoint is the Portcullis CLI', () => {
  assert.match(ops(final, 'RUN').join('\n'), /apt-get install -y --no-install-recommends tini/);
  assert.match(ops(final, 'RUN').join('\n'), /rm -rf \/var\/lib\/apt\/lists/);
  assert.deepEqual(JSON.parse(ops(final, 'ENTRYPOINT')[0]!), ['/usr/bin/tini', '--', 'node', 'bin/portcullis.mjs']);
  assert.deepEqual(JSON.parse(ops(final, 'CMD')[0]!), ['--config', '/etc/portcullis/portcullis.yaml']);
});

test('HEALTHCHECK asks /healthz with node (no curl in slim images)', () => {
  const hc = ops(final, 'HEALTHCHECK');
  assert.equal(hc.length, 1);
  assert.match(hc[0]!, /CMD \["node", "-e", .*http:\/\/127\.0\.0\.1:8080\/healthz/);
});

test('EXPOSE the proxy and metrics ports, the same as the chart', () => {
  const ports = ops(final, 'EXPOSE').join(' ').split(/\s+/);
  const v = defaultValues();
  for (const p of [8080, 9090]) assert.ok(ports.includes(String(p)), `EXPOSE ${p}`);
  assert.equal(at(v, 'containerPorts.http'), 8080);
  assert.equal(at(v, 'containerPorts.metrics'), 9090);
});

test('NODE_ENV=production and OCI labels', () => {
  assert.match(ops(final, 'ENV').join(' '), /\bNODE_ENV=production\b/);
  const labels = ops(final, 'LABEL').join(' ');
  for (const l of ['title', 'description', 'source', 'licenses', 'version', 'revision', 'created']) {
    assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${l}=`), `label org.opencontainers.image.${l}`);
  }
  const license = (JSON.parse(readText(join(repoRoot, 'package.json'))) as { license: string }).license;
  assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.licenses="${license}"`));
});

test('the runtime stage copies package.json (its "type": "module" makes dist ESM)', () => {
  assert.ok(ops(final, 'COPY').some((c) => /^package\.json \.\/?$/.test(c)));
});

/** .dockerignore semantics, simplified: last matching pattern wins; a pattern matches a path or any parent folder of it. */
function ignored(path: string, patterns: string[]): boolean {
  const toRegex = (p: string): RegExp => {
    const body = p.split(/(\*\*\/|\*\*|\*|\?)/).map((part) => {
      switch (part) {
        case '**/': return '(?:.*/)?';
        case '**': return '.*';
        case '*': return '[^/]*';
        case '?': return '[^/]';
        default: return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
    }).join('');
    return new RegExp(`^${body}$`);
  };
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let result = false;
  for (const raw of patterns) {
    const neg = raw.startsWith('!');
    const re = toRegex((neg ? raw.slice(1) : raw).replace(/^\//, '').replace(/\/$/, ''));
    if (prefixes.some((p) => re.test(p))) result = !neg;
  }
  return result;
}

const dockerignore = readText(join(repoRoot, '.dockerignore')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

test('.dockerignore keeps node_modules, dist, .git, tests, bench results and .env files out of the context', () => {
  for (const p of ['node_modules/fastify/package.json', 'dist/main.js', '.git/HEAD', 'test/packaging/x.test.ts',
    'bench/results/run.json', '.env', 'src/.env', 'helm/portcullis/values.yaml', 'examples/grafana/grafana.ini', 'npm-debug.log']) {
    assert.ok(ignored(p, dockerignore), `${p} must be ignored`);
  }
});

test('.dockerignore lets in everything the Dockerfile copies from the context', () => {
  for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'src/main.ts', 'src/config/index.ts', 'bin/portcullis.mjs', 'config/portcullis.yaml']) {
    assert.ok(!ignored(p, dockerignore), `${p} must reach the build`);
  }
});

// bin/ and config/ belong to the CLI and config work happening in parallel; until they land the
// image cannot build, which this test reports (as a todo, so it does not hide real failures).
const contextPaths = ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'bin/portcullis.mjs', 'config/portcullis.yaml'];
const absent = contextPaths.filter((p) => !existsSync(join(repoRoot, p)));
test('every path the Dockerfile copies exists in the repository', { todo: absent.length ? `not there yet: ${absent.join(', ')}` : false }, () => {
  assert.deepEqual(absent, []);
});

test('the chart and the image agree on where the config lives', () => {
  assert.match(readText(join(chartDir, 'templates', 'deployment.yaml')), /mountPath: \/etc\/portcullis\/portcullis\.yaml/);
});

test('every package src/ imports at run time is a production dependency (the image prunes devDependencies)', () => {
  // The demo and its embedded development IdP live under dev/ (not src/), so nothing the image
  // builds can reach oidc-provider or any other devDependency.
  const pkg = JSON.parse(readText(join(repoRoot, 'package.json'))) as { dependencies: Record<string, string> };
  const files = listFiles(join(repoRoot, 'src'), (n) => n.endsWith('.ts') && !n.endsWith('.d.ts'))
  const missing: string[] = [];
  for (const file of files) {
    const text = readText(file);
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      if (!Object.hasOwn(pkg.dependencies, name)) missing.push(`${rel(file)}: ${name}`);
    }
  }
  assert.deepEqual(missing, []);
});

test('the image ships only what runs in production: src/ holds no demo or dev IdP, and nothing in it imports dev/', () => {
  const offenders = listFiles(join(repoRoot, 'src'), (n) => n.endsWith('.ts'))
    // Module specifiers only (static and dynamic imports, re-exports): prose may name oidc-provider.
    .filter((f) => [...readText(f).matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)]
      .some((m) => /devidp|^oidc-provider\b|\bdemo\.js$|^(?:\.\.\/)+dev\//.test(m[1]!)))
    .map(rel);
  assert.deepEqual(offenders, []);
  const copies = stages.flatMap((s) => ops(s, 'COPY')).join('\n');
  assert.doesNotMatch(copies, /\bdev\b/, 'no COPY of dev/ into any image stage');
  const pkg = JSON.parse(readText(join(repoRoot, 'package.json'))) as { scripts: Record<string, string>; files: string[] };
  assert.equal(pkg.scripts.demo, 'node --import tsx dev/demo.ts', '`npm run demo` runs the demo from the sources');
  assert.ok(!pkg.files.includes('dev'), 'the npm package does not ship dev/');
});

test('src/ writes no files, so the read-only root filesystem holds (only /tmp is writable)', () => {
  // If Portcullis ever needs to write, write under os.tmpdir() (the chart's /tmp emptyDir) and
  // list the file here with the reason.
  const allowed: string[] = [];
  const offenders = listFiles(join(repoRoot, 'src'), (n) => n.endsWith('.ts'))
    .filter((f) => !allowed.includes(rel(f)))
    .filter((f) => /\b(writeFile|writeFileSync|appendFile|appendFileSync|createWriteStream|mkdir|mkdirSync|mkdtemp|rename|renameSync|copyFile)\s*\(/.test(readText(f)))
    .map(rel);
  assert.deepEqual(offenders, []);
});

test('no production dependency needs an install script (the image build runs npm ci --ignore-scripts)', () => {
  assert.match(ops(stages[0]!, 'RUN').join('\n'), /npm ci --ignore-scripts/);
  const lock = JSON.parse(readText(join(repoRoot, 'package-lock.json'))) as { packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }> };
  const scripted = Object.entries(lock.packages).filter(([p, v]) => p && v.hasInstallScript && !v.dev).map(([p]) => p);
  assert.deepEqual(scripted, []);
});
