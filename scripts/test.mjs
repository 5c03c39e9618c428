#!/usr/bin/env node
// Runs the suite: every test/**/*.test.ts under node:test, or the files and folders given.
// Usage: npm test [-- test/some/dir-or-file ...]    (docs/design.md, "The test suite")
//
// tsc compiles sources, tests and bench once (the typecheck is the same pass) into BUILD, a mirror of
// the repository: the emitted .js next to a symlink for every other file (the .ts sources themselves,
// fixtures, docs, the chart), so paths relative to a test's import.meta.url resolve as in the sources.
// Test processes then load plain JavaScript: tsx in every process cost ~2.5 s of CPU per process (its
// off-thread loader hooks and transforms) — about a third of the suite's CPU time.
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPair } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUILD = join(REPO, '.tmp', 'test-build');
/** The folders tsconfig.test.json compiles. */
const COMPILED = ['src', 'dev', 'test', 'bench', 'scripts'];
/** Top-level entries the mirror does not link. */
const UNLINKED = new Set(['.git', '.tmp', 'node_modules', 'dist', ...COMPILED]);
/** Per-file durations of the last run (a reporter writes them); the next run starts the longest first. */
const TIMES = join(REPO, '.tmp', 'test-times.json');
/**
 * When no earlier run's durations are known (a fresh clone, CI): these run alone and start first, longest
 * first, so that no long file begins at the end of the run (the files over 6 s in a full run on 2 cores,
 * 2026-11-28); the others are assumed short and batched.
 */
const KNOWN_SLOW = [
  'test/interop/glewlwyd.test.ts', 'test/interop/lemonldap.test.ts', 'test/identity/bearer-key-rotation.test.ts',
  'test/operability/cluster.test.ts', 'test/alerts/prometheus.test.ts', 'test/operability/log-secrets.test.ts',
  'test/alerts/promtool.test.ts', 'test/operability/shutdown.test.ts', 'test/signin/private-key-jwt.test.ts',
  'test/cli/sessions.test.ts', 'test/cli/doctor.test.ts', 'test/session/redis-cluster.test.ts',
  'test/operability/faults.test.ts', 'test/operability/reload-while-starting.test.ts', 'test/browser/signin.test.ts',
  'test/session/sign-out-everywhere.test.ts', 'test/session/store-contract.test.ts', 'test/security/step-up.test.ts',
  'test/security/upstream-failures.test.ts', 'test/browser/demo.test.ts', 'test/security/doorways.test.ts',
  'test/security/id-token.test.ts',
];
/** Pre-generated RSA keys for the dev IdPs the tests start (test/helpers/idp.ts); kept between runs. */
const RSA_KEYS = join(REPO, '.tmp', 'test-rsa-keys.json');
const RSA_POOL = 64;
/**
 * Files at a time. 3 on 2 cores: most files spend part of their time waiting (IdP round trips, Chromium,
 * Redis, process start-ups), which a third lane fills. TEST_CONCURRENCY=N overrides.
 */
const CONCURRENCY = Number(process.env.TEST_CONCURRENCY ?? 3);

function collect(p, out) {
  if (statSync(p).isDirectory()) {
    for (const name of readdirSync(p).sort()) collect(join(p, name), out);
  } else if (p.endsWith('.test.ts')) out.push(relative(REPO, resolve(p)));
  return out;
}

/** Every file below dir (relative to REPO), following no symlinks. */
function filesUnder(dir, out = []) {
  for (const e of readdirSync(join(REPO, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) filesUnder(rel, out);
    else out.push(rel);
  }
  return out;
}

function lexists(p) {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A relative symlink at BUILD/rel to REPO/rel, unless something is there already. */
function link(rel) {
  const at = join(BUILD, rel);
  if (lexists(at)) return;
  mkdirSync(dirname(at), { recursive: true });
  symlinkSync(relative(dirname(at), join(REPO, rel)), at);
}

/**
 * Completes the mirror after tsc emitted into it, and removes what the sources no longer have: links
 * to deleted files, and .js/.js.map files whose .ts is gone (a stale test must not run, a stale module
 * must not import).
 */
function mirror() {
  for (const name of readdirSync(REPO)) if (!UNLINKED.has(name)) link(name);
  for (const dir of COMPILED) for (const rel of filesUnder(dir)) link(rel);
  const prune = (dir) => {
    for (const e of readdirSync(join(BUILD, dir), { withFileTypes: true })) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) prune(rel);
      else if (e.isSymbolicLink()) {
        if (!existsSync(join(BUILD, rel))) unlinkSync(join(BUILD, rel));
      } else {
        const source = rel.replace(/\.js(\.map)?$/, '.ts').replace(/\.mjs(\.map)?$/, '.mts');
        if (source === rel || !existsSync(join(REPO, source))) rmSync(join(BUILD, rel));
      }
    }
  };
  for (const dir of COMPILED) if (existsSync(join(BUILD, dir))) prune(dir);
}

/**
 * Chosen files run without a typecheck, as under tsx: each .ts whose .js is missing or older is
 * transpiled alone (ts.transpileModule, what tsx did with esbuild) — after an edit, only what changed.
 */
async function transpileChanged() {
  const stale = COMPILED.flatMap((dir) => filesUnder(dir)).filter((rel) => {
    if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) return false;
    const out = join(BUILD, rel.replace(/\.ts$/, '.js'));
    return !existsSync(out) || lstatSync(out).isSymbolicLink() || statSync(out).mtimeMs < statSync(join(REPO, rel)).mtimeMs;
  });
  if (stale.length === 0) return;
  const { default: ts } = await import('typescript');
  const compilerOptions = {
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, esModuleInterop: true, resolveJsonModule: true, sourceMap: true,
  };
  for (const rel of stale) {
    const out = join(BUILD, rel.replace(/\.ts$/, '.js'));
    const r = ts.transpileModule(readFileSync(join(REPO, rel), 'utf8'), { compilerOptions, fileName: basename(rel) });
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(`${out}.map`, r.sourceMapText ?? '');
    writeFileSync(out, r.outputText);
  }
}

async function rsaKeyPool() {
  try {
    if (JSON.parse(readFileSync(RSA_KEYS, 'utf8')).length >= RSA_POOL) return;
  } catch { /* none yet */ }
  const generate = promisify(generateKeyPair);
  const keys = [];
  while (keys.length < RSA_POOL) { // one at a time: the other core is tsc's
    const { privateKey } = await generate('rsa', { modulusLength: 2048 });
    keys.push(privateKey.export({ format: 'jwk' }));
  }
  writeFileSync(`${RSA_KEYS}.${process.pid}`, JSON.stringify(keys));
  renameSync(`${RSA_KEYS}.${process.pid}`, RSA_KEYS);
}

/**
 * Files that keep a process of their own even when short. (None today: every file restores what it
 * changes in the process — Date.now, console, tracing — in t.after. Add one here, with its reason, when
 * a file cannot.)
 */
const OWN_PROCESS = new Set([]);
/** A file whose tests took at least this long (seconds) runs in a process of its own. */
const SOLO_SECONDS = 6;
/** Batches are filled up to about this many seconds of tests. */
const BATCH_SECONDS = 15;
/** Assumed for a file no earlier run timed (a fresh clone, CI), unless KNOWN_SLOW names it. */
const UNTIMED_SECONDS = 2;
/** Where the batch files are written; the reporter in scripts/test-times.mjs knows this name too. */
const BATCHES = join(BUILD, 'test-batches');

/**
 * What `node --test` runs, longest first: each slow file alone, and the others in batches — one process
 * imports several test files, each under a describe() named after it, and runs them one after another.
 * A process costs about 2 s of CPU before its first test (loading fastify, oidc-provider, undici…,
 * then warming the JIT); a batch pays that once. 20 short files took 54 s of CPU alone and 16 s in one
 * batch (2026-11-28).
 */
function plan(files) {
  let times = {};
  try {
    times = JSON.parse(readFileSync(TIMES, 'utf8'));
  } catch { /* first run: KNOWN_SLOW */ }
  const seconds = (f) => times[f] ?? (KNOWN_SLOW.includes(f) ? 1e6 - KNOWN_SLOW.indexOf(f) : UNTIMED_SECONDS);
  const compiled = (f) => join(BUILD, f.replace(/\.ts$/, '.js'));
  const units = []; // { seconds, path }
  const batchable = [];
  for (const f of [...files].sort((a, b) => seconds(b) - seconds(a))) {
    if (seconds(f) >= SOLO_SECONDS || OWN_PROCESS.has(f)) units.push({ seconds: seconds(f), path: compiled(f) });
    else batchable.push(f);
  }
  // First fit, longest first: few batches, each about BATCH_SECONDS.
  const bins = [];
  for (const f of batchable) {
    const bin = bins.find((b) => b.seconds + seconds(f) <= BATCH_SECONDS);
    if (bin) {
      bin.files.push(f);
      bin.seconds += seconds(f);
    } else bins.push({ seconds: seconds(f), files: [f] });
  }
  rmSync(BATCHES, { recursive: true, force: true });
  mkdirSync(BATCHES, { recursive: true });
  bins.forEach((bin, i) => {
    if (bin.files.length === 1) {
      units.push({ seconds: bin.seconds, path: compiled(bin.files[0]) });
      return;
    }
    const path = join(BATCHES, `batch-${String(i + 1).padStart(2, '0')}.test.js`);
    writeFileSync(path, [
      '// Written by scripts/test.mjs: these test files, one after another in this process.',
      "import { describe } from 'node:test';",
      ...bin.files.map((f) => `describe(${JSON.stringify(f)}, async () => { await import(${JSON.stringify(pathToFileURL(compiled(f)).href)}); });`),
      '',
    ].join('\n'));
    units.push({ seconds: bin.seconds, path });
  });
  return units.sort((a, b) => b.seconds - a.seconds).map((u) => u.path);
}

const roots = process.argv.slice(2);
const files = (roots.length ? roots : ['test']).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}

mkdirSync(BUILD, { recursive: true });
if (roots.length === 0) {
  // The whole suite: typecheck sources, tests, dev, bench and scripts, and emit them, in one tsc pass;
  // the RSA key pool is generated meanwhile on the other core, if an earlier run did not leave one.
  const tsc = spawn(process.execPath, [
    join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.test.json'), '--noEmit', 'false', '--outDir', BUILD,
  ], { stdio: 'inherit' });
  const [status] = await Promise.all([new Promise((done) => tsc.on('close', (code) => done(code))), rsaKeyPool()]);
  if (status !== 0) {
    console.error('typecheck failed');
    process.exit(status ?? 1);
  }
} else {
  await transpileChanged();
}
mirror();

const reporter = process.stdout.isTTY ? 'spec' : 'tap';
const r = spawnSync(process.execPath, [
  '--enable-source-maps', '--test', `--test-concurrency=${CONCURRENCY}`, '--test-timeout=240000',
  `--test-reporter=${reporter}`, '--test-reporter-destination=stdout',
  `--test-reporter=${join(REPO, 'scripts/test-times.mjs')}`, '--test-reporter-destination=stdout',
  ...plan(files),
], { stdio: 'inherit', cwd: REPO, env: {
    ...process.env, NODE_ENV: 'test', PORTCULLIS_TEST_BUILD: BUILD, PORTCULLIS_TEST_TIMES: TIMES,
    ...(existsSync(RSA_KEYS) ? { PORTCULLIS_TEST_RSA_KEYS: RSA_KEYS } : {}),
  } });
process.exit(r.status ?? 1);
