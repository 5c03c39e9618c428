// Structure: no test waits on the clock. A fixed sleep longer than MAX_SLEEP_MS makes the suite slow
// and still flaky (it guesses how long something takes); wait for the condition instead (helpers/wait.ts
// `until`, an event), or move the injected clock (`now` in RuntimeOptions). A timer that ends a wait
// which did not come true (rejects, kills, destroys, or loses a Promise.race) is a deadline, not a sleep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const MAX_SLEEP_MS = 200;
const ROOT = join(import.meta.dirname, '..');

/** Timers longer than MAX_SLEEP_MS that stay, each with why it is not a sleep. File and call text. */
const ALLOWED: Array<{ file: string; call: string; why: string }> = [
  {
    file: 'security/doorways.test.ts',
    call: 'setTimeout(sendBody, 1000)',
    why: 'the Expect: 100-continue client fallback (send the body if the server says nothing for 1 s, as curl does): a 100 or a final answer clears it, so it only runs against a doorway that stays silent',
  },
];

interface Timer { file: string; line: number; call: string; ms: number; kind: 'sleep' | 'deadline' }

/** The argument list of the call whose '(' is at `open`, split at top-level commas, and where it ends. */
function callArgs(src: string, open: number): { args: string[]; end: number } {
  const args: string[] = [];
  let depth = 0;
  let start = open + 1;
  for (let i = open; i < src.length; i++) {
    const c = src[i]!;
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      depth--;
      if (depth === 0) { args.push(src.slice(start, i).trim()); return { args: args.filter(Boolean), end: i + 1 }; }
    } else if (c === ',' && depth === 1) { args.push(src.slice(start, i).trim()); start = i + 1; }
  }
  return { args, end: src.length };
}

const DEADLINE_WORDS = /\b(reject|kill|destroy|terminate|abort|throw|Error|finish|cancel|SIGKILL|SIGTERM)\b|\.end\(\)/;

/** Every timer with a literal duration in a source text: `setTimeout(cb, N)`, and `sleep(N)`/`delay(N)`/`setTimeout(N)` (timers/promises). */
function timersIn(src: string, file = '(inline)'): Timer[] {
  const found: Timer[] = [];
  for (const m of src.matchAll(/\b(setTimeout|sleep|delay)\s*\(/g)) {
    if (src[m.index - 1] === '.' && !src.slice(m.index - 7, m.index).endsWith('timers.')) continue; // socket.setTimeout(ms, cb): an idle timeout
    const { args, end } = callArgs(src, m.index + m[0].length - 1);
    const literal = (s: string | undefined) => (s !== undefined && /^\d[\d_]*$/.test(s) ? Number(s.replaceAll('_', '')) : undefined);
    const line = src.slice(0, m.index).split('\n').length;
    const call = src.slice(m.index, end).replace(/\s+/g, ' ');
    if (args.length === 1 || m[1] !== 'setTimeout') {
      const ms = literal(args[0]);
      if (ms !== undefined) found.push({ file, line, call, ms, kind: 'sleep' });
      continue;
    }
    const [cb, n] = args;
    const ms = literal(n);
    if (ms === undefined) continue;
    // A bare function (a Promise's resolve) or a callback that only moves on is a sleep; one that fails
    // the wait, or that races what is awaited, is a deadline.
    const inRace = /Promise\.race\(\s*\[[^\]]*$/.test(src.slice(Math.max(0, m.index - 200), m.index));
    const kind = !/^[\w$.]+$/.test(cb!) && (DEADLINE_WORDS.test(cb!) || inRace) ? 'deadline' : 'sleep';
    found.push({ file, line, call, ms, kind });
  }
  return found;
}

function testFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) testFiles(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

test('the detector tells sleeps from deadlines', () => {
  const kinds = (src: string) => timersIn(src).map((t) => `${t.kind} ${t.ms}`);
  assert.deepEqual(kinds('await new Promise((r) => setTimeout(r, 10_500));'), ['sleep 10500']);
  assert.deepEqual(kinds('await new Promise((resolve) => setTimeout(resolve, 500));'), ['sleep 500']);
  assert.deepEqual(kinds("import { setTimeout as sleep } from 'node:timers/promises';\nawait sleep(1000);"), ['sleep 1000']);
  assert.deepEqual(kinds('await setTimeout(2_000);'), ['sleep 2000']);
  assert.deepEqual(kinds('setTimeout(() => { moveOn(); }, 300);'), ['sleep 300']);
  assert.deepEqual(kinds('for (;;) await new Promise((r) => setTimeout(r, 50));'), ['sleep 50']);
  assert.deepEqual(kinds("const timer = setTimeout(() => reject(new Error('no banner')), 5000);"), ['deadline 5000']);
  assert.deepEqual(kinds("setTimeout(() => { process.kill(pid, 'SIGKILL'); }, 3_000);"), ['deadline 3000']);
  assert.deepEqual(kinds('setTimeout(() => socket.destroy(), 1000);'), ['deadline 1000']);
  assert.deepEqual(kinds("setTimeout(() => signalGroup('SIGKILL'), 3_000);"), ['deadline 3000']);
  assert.deepEqual(kinds('await Promise.race([closed, new Promise((r) => setTimeout(() => r(undefined), 10_000))]);'), ['deadline 10000']);
  assert.deepEqual(kinds('socket.setTimeout(1000, () => done(false)); setTimeout(r, everyMs);'), [], 'idle timeouts and computed durations are not counted');
});

test(`no test sleeps longer than ${MAX_SLEEP_MS} ms (wait for the condition, or move the injected clock)`, () => {
  const self = import.meta.filename;
  const timers = testFiles(ROOT).filter((p) => p !== self).flatMap((p) => timersIn(readFileSync(p, 'utf8'), relative(ROOT, p)));
  assert.ok(timers.length > 10, `the scan sees the suite's timers (${timers.length})`);
  const allowed = (t: Timer) => ALLOWED.some((a) => a.file === t.file && t.call.startsWith(a.call));
  const sleeps = timers.filter((t) => t.kind === 'sleep' && t.ms > MAX_SLEEP_MS && !allowed(t));
  assert.deepEqual(sleeps.map((t) => `${t.file}:${t.line} ${t.call}`), []);
  for (const a of ALLOWED) assert.ok(timers.some((t) => t.file === a.file && t.call.startsWith(a.call)), `allowlist entry still needed: ${a.file} ${a.call}`);
});
