// Where the time goes in a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): self time by area
// (our dist/ files, each node_modules package, Node internals, GC, idle) and the hottest functions.
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

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '30' } }, allowPositionals: true });
if (positionals.length !== 1) {
  console.error('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top 30]');
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

const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)} %`;
const top = Number(values.top);
const busy = total - (areas.get('(idle)') ?? 0);
console.log(`${positionals[0]}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s not idle\n`);
console.log('self time by area');
for (const [a, us] of [...areas].sort((p, q) => q[1] - p[1]).slice(0, top)) console.log(`  ${pct(us)}  ${a}`);
console.log('\nhottest functions (self time)');
for (const [f, us] of [...fns].sort((p, q) => q[1] - p[1]).slice(0, top)) console.log(`  ${pct(us)}  ${f}`);
