// The source tree's layering (issue 15): no import cycles in src/, and the stages import downward
// only. Imports are read with the TypeScript compiler's parser (static `import`/`export … from`,
// `import type` included — a type is a dependency too — and dynamic `import()`); every file under
// src/ must sit in one layer below, so a new file is placed on purpose.
//
// Layers, bottom → top (a file may import its own layer and any layer below):
//
//   base      what every stage may use: coded errors and their pages, logging, metrics, tracing,
//             the sign-in rate limiter, and the config primitives (issues, durations, YAML loading)
//   routing   the request as it arrived: target normalisation, route matching, peer trust, origin
//   policy    claims in, decision out (pure)
//   identity  what the upstream is told: header templates and plans, assertions
//   session   sessions: codec, cookies, stores, refresh, revocation
//   config    the schema and its compile step, which calls the stages' boot halves (rules, matchers,
//             header templates, the Redis URL parser), so it sits above them
//   signin    the OIDC flow with the IdP, and Portcullis's own /oauth2/ endpoints
//   proxy     the upstream request plan and the relay
//   runtime   the stages' state, assembled once per app instance (Runtime)
//   door      the doorways: route → session → policy → identity → forward, and their answers
//   wiring    app, server, cluster, main, cli
//
// Arrows that still run upward are listed in UPWARD with the reason each one stays for now; the
// test fails on any other, and on an entry that no longer exists (so the list only shrinks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Layers bottom → top; a file's layer is the first whose pattern matches its path under src/ (`dir/` = everything in it). */
const LAYERS: Array<[name: string, patterns: string[]]> = [
  ['base', ['errors.ts', 'pages.ts', 'logging.ts', 'metrics.ts', 'tracing.ts', 'ratelimit.ts', 'config/issues.ts', 'config/durations.ts', 'config/load.ts']],
  ['routing', ['routing/', 'request-id.ts']],
  ['policy', ['policy/']],
  ['identity', ['identity/']],
  ['session', ['session/']],
  ['config', ['config/']],
  ['signin', ['signin/']],
  ['proxy', ['proxy/']],
  ['runtime', ['runtime.ts']],
  ['door', ['door/']],
  ['wiring', ['app.ts', 'server.ts', 'cluster.ts', 'main.ts', 'cli/']],
];

/** Upward arrows that remain, `from -> to` (paths under src/), each with why it is still there. */
const UPWARD: Record<string, string> = {
  'identity/headers.ts -> config/index.ts':
    'type only: RouteConfig, the compiled route the header plan is built from. The compiled config\'s types are declared by the config stage\'s compile step; a types-only module at the bottom (config/types.ts) would end both config arrows.',
  'session/compact.ts -> config/index.ts':
    'type only: Config/RouteConfig, read to decide which claims a session keeps (same fix as identity/headers.ts).',
  'runtime.ts -> door/route-table.ts':
    'Runtime holds the compiled route table (hot reload swaps it); the table is routing + identity plans and belongs below the door — issue 15\'s "a hub class is a smell" (a stage owns its state).',
  'runtime.ts -> door/audit.ts':
    'Runtime holds the audit log; it belongs to the door, which records decisions, not to the hub (same follow-up as the route table).',
  'signin/endpoints.ts -> runtime.ts':
    "the /oauth2/ endpoints are the sign-in stage's HTTP side and reach sessions, transactions, the IdP client and revocation through Runtime; they move with the hub's split.",
};

function layerOf(file: string): number {
  const i = LAYERS.findIndex(([, patterns]) => patterns.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p)));
  return i;
}

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sourceFiles(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(relative(SRC, p).split('\\').join('/'));
  }
  return out;
}

/** Relative imports of one file (static, re-exports, dynamic `import('…')`), as paths under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const specs: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      specs.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      specs.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      specs.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return [...new Set(specs.filter((s) => s.startsWith('.')).map((s) => {
    const target = relative(SRC, resolve(dirname(join(SRC, file)), s)).split('\\').join('/');
    return target.replace(/\.js$/, '.ts');
  }))];
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('every file under src/ sits in a layer (place a new one in LAYERS on purpose)', () => {
  assert.deepEqual(files.filter((f) => layerOf(f) < 0), []);
});

test('every relative import names a file under src/', () => {
  const missing = [...graph].flatMap(([f, deps]) => deps.filter((d) => !graph.has(d)).map((d) => `${f} -> ${d}`));
  assert.deepEqual(missing, []);
});

test('no import cycles in src/', () => {
  // Tarjan's strongly connected components: any component of more than one file (or a file that
  // imports itself) is a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const connect = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) { connect(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(scc.sort());
    }
  };
  for (const f of files) if (!idx.has(f)) connect(f);
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.map((c) => c.join(' <-> ')).join('\n')}`);
});

test('the stages import downward only (remaining upward arrows are listed, with their reason)', () => {
  const upward: string[] = [];
  for (const [from, deps] of graph) {
    for (const to of deps) {
      if (graph.has(to) && layerOf(to) > layerOf(from)) upward.push(`${from} -> ${to}`);
    }
  }
  const unexplained = upward.filter((a) => !Object.hasOwn(UPWARD, a));
  const gone = Object.keys(UPWARD).filter((a) => !upward.includes(a));
  assert.deepEqual(unexplained, [], `imports running upward (${unexplained.map((a) => {
    const [f, t] = a.split(' -> ');
    return `${a}: ${LAYERS[layerOf(f!)]![0]} → ${LAYERS[layerOf(t!)]![0]}`;
  }).join('; ')}): import downward, or list the arrow in UPWARD with its reason`);
  assert.deepEqual(gone, [], 'listed in UPWARD but no longer there: remove the entry');
});

test('the layer check sees an upward import (self-test on a made-up graph)', () => {
  // policy importing the door would be upward; the door importing policy is not.
  assert.ok(layerOf('policy/rules.ts') < layerOf('door/evaluate.ts'));
  assert.ok(layerOf('errors.ts') < layerOf('routing/match.ts'));
  assert.equal(layerOf('nowhere/x.ts'), -1);
});
