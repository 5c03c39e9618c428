// Where the time goes in a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): self time by area
// (our dist/ files, each node_modules package, Node internals, GC, idle), the same rolled up into a few
// groups (ours / HTTP stack / logging / metrics / Node & native / GC), and the hottest functions.
// Percentages are of the *busy* (not idle) time, so runs with different idle shares compare.
//   node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top 30]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '30' }, inclusive: { type: 'string', default: '0' } }, allowPositionals: true });
if (positionals.length !== 1) {
  console.error('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top 30] [--inclusive 25]');
  process.exit(1);
}
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

function area(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  if (url.startsWith('node:')) return 'node: internals';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const ours = /\/dist\/(.*)$/.exec(url);
  if (ours) return `dist/${ours[1]}`;
  return url;
}

const areas = new Map<string, number>();
const fns = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id);
  if (!n) continue;
  const { functionName, url, lineNumber } = n.callFrame;
  const a = area(url, functionName);
  areas.set(a, (areas.get(a) ?? 0) + us);
  const key = `${functionName || '(anonymous)'}  ${a}:${lineNumber + 1}`;
  fns.set(key, (fns.get(key) ?? 0) + us);
}

const top = Number(values.top);
const busy = total - (areas.get('(idle)') ?? 0);
const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)} %`;
areas.delete('(idle)');
fns.delete('(idle)  (idle):0');
console.log(`${positionals[0]}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s not idle; % of the busy time\n`);

function group(a: string): string {
  if (a.startsWith('dist/')) return 'Portcullis (dist/)';
  if (/^(fastify|@fastify\/|find-my-way|undici|toad-cache|fast-querystring|fast-json-stringify|light-my-request|avvio|fast-decode-uri-component|content-type|secure-json-parse|cookie|fast-content-type-parse)/.test(a)) return 'HTTP stack (fastify, @fastify/*, undici, find-my-way, cookie …)';
  if (/^(pino|@pinojs\/|sonic-boom|thread-stream|fast-redact)/.test(a)) return 'logging (pino, redaction)';
  if (a === 'prom-client' || a === 'tdigest' || a === 'bintrees') return 'metrics (prom-client)';
  if (a === 'lru-cache') return 'session cache (lru-cache)';
  if (a === 'node: internals') return 'Node internals (JS: streams, http, net …)';
  if (a === '(native)') return 'native (socket writes, string encoding, crypto …)';
  if (a === '(garbage collector)') return 'GC';
  return 'other';
}
const groups = new Map<string, number>();
for (const [a, us] of areas) groups.set(group(a), (groups.get(group(a)) ?? 0) + us);
console.log('self time by group');
for (const [g, us] of [...groups].sort((p, q) => q[1] - p[1])) console.log(`  ${pct(us)}  ${g}`);
console.log('\nself time by area');
for (const [a, us] of [...areas].sort((p, q) => q[1] - p[1]).slice(0, top)) console.log(`  ${pct(us)}  ${a}`);
console.log('\nhottest functions (self time)');
for (const [f, us] of [...fns].sort((p, q) => q[1] - p[1]).slice(0, top)) console.log(`  ${pct(us)}  ${f}`);

// --inclusive N: the N functions with the most total time (self + everything they call), each function
// counted once per sample even when recursive: "how much of the busy time is spent under X".
const inclusiveTop = Number(values.inclusive);
if (inclusiveTop > 0) {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const leaf = byId.get(id);
    if (!leaf || leaf.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const { functionName, url, lineNumber } = byId.get(cur)!.callFrame;
      if (functionName === '(root)') continue;
      const key = `${functionName || '(anonymous)'}  ${area(url, functionName)}:${lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + us);
    }
  }
  console.log('\nhottest functions (total time: self + callees)');
  for (const [f, us] of [...incl].sort((p, q) => q[1] - p[1]).slice(0, inclusiveTop)) console.log(`  ${pct(us)}  ${f}`);
}
