// Structure: no test waits on the clock. A fixed sleep longer than MAX_SLEEP_MS makes the suite slow
// and still flaky (it guesses how long something takes); wait for the condition instead (helpers/wait.ts
// `until`, an event), or move the injected clock (`now` in RuntimeOptions). A timer that ends a wait
// which did not come true (rejects, kills, destroys, or loses a Promise.race) is a deadline, not a sleep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const MAX_SLEEP_MS = 200;
const ROOT = join(import.meta.dirname, '..');

/** Timers longer than MAX_SLEEP_MS that stay, each with why it is not a sleep. File and call text. */
const ALLOWED: Array<{ file: string; call: string; why: string }> = [
  {
    file: 'helpers/raw-http.ts',
    call: 'setTimeout(sendBody, 1000)',
    why: 'the Expect: 100-continue client fallback (send the body if the server says nothing for 1 s, as curl does): a 100 or a final answer clears it, so it only runs against a doorway that stays silent',
  },
];

interface Timer { file: string; line: number; call: string; ms: number; kind: 'sleep' | 'deadline' }

const DEADLINE_WORDS = /\b(reject|kill|destroy|terminate|abort|throw|Error|finish|cancel|SIGKILL|SIGTERM)\b|\.end\(\)/;

/** A numeric literal's value (10_000 included); undefined for anything computed. */
function literalMs(node: ts.Node | undefined): number | undefined {
  return node && ts.isNumericLiteral(node) ? Number(node.text) : undefined;
}

/**
 * Every timer with a literal duration in a source text, read with the TypeScript parser:
 * `setTimeout(cb, N)` (global or `timers.`), and `sleep(N)`, `delay(N)`, `setTimeout(N)` (timers/promises).
 * `socket.setTimeout(ms, cb)` is an idle timeout, not a timer, and is not counted.
 */
function timersIn(src: string, file = '(inline)'): Timer[] {
  const sf = ts.createSourceFile(file, src, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: Timer[] = [];
  const visit = (node: ts.Node, inRace: boolean): void => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const name = ts.isIdentifier(callee) ? callee.text
        : ts.isPropertyAccessExpression(callee) && ts.isIdentifier(callee.expression) && callee.expression.text === 'timers' ? callee.name.text
          : undefined;
      const race = ts.isPropertyAccessExpression(callee) && callee.name.text === 'race' && callee.expression.getText(sf) === 'Promise';
      if (name === 'setTimeout' || name === 'sleep' || name === 'delay') {
        const [first, second] = node.arguments;
        const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
        const call = node.getText(sf).replace(/\s+/g, ' ');
        if (name !== 'setTimeout' || node.arguments.length === 1) {
          const ms = literalMs(first);
          if (ms !== undefined) found.push({ file, line, call, ms, kind: 'sleep' });
        } else {
          const ms = literalMs(second);
          // A bare function (a Promise's resolve) or a callback that only moves on is a sleep; one that
          // fails the wait, or that races what is awaited, is a deadline.
          const bare = ts.isIdentifier(first!) || ts.isPropertyAccessExpression(first!);
          const kind = inRace || (!bare && DEADLINE_WORDS.test(first!.getText(sf))) ? 'deadline' : 'sleep';
          if (ms !== undefined) found.push({ file, line, call, ms, kind });
        }
      }
      ts.forEachChild(node, (child) => visit(child, inRace || race));
      return;
    }
    ts.forEachChild(node, (child) => visit(child, inRace));
  };
  visit(sf, false);
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
  assert.deepEqual(kinds('await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);'), ['deadline 10000']);
  assert.deepEqual(kinds('socket.setTimeout(1000, () => done(false)); setTimeout(r, everyMs);'), [], 'idle timeouts and computed durations are not counted');
});

test(`no test sleeps longer than ${MAX_SLEEP_MS} ms (wait for the condition, or move the injected clock)`, () => {
  const self = import.meta.filename.replace(/\.js$/, '.ts'); // compiled by scripts/test.mjs: the scan reads the .ts beside it
  const timers = testFiles(ROOT).filter((p) => p !== self).flatMap((p) => timersIn(readFileSync(p, 'utf8'), relative(ROOT, p)));
  assert.ok(timers.length > 10, `the scan sees the suite's timers (${timers.length})`);
  const allowed = (t: Timer) => ALLOWED.some((a) => a.file === t.file && t.call.startsWith(a.call));
  const sleeps = timers.filter((t) => t.kind === 'sleep' && t.ms > MAX_SLEEP_MS && !allowed(t));
  assert.deepEqual(sleeps.map((t) => `${t.file}:${t.line} ${t.call}`), []);
  for (const a of ALLOWED) assert.ok(timers.some((t) => t.file === a.file && t.call.startsWith(a.call)), `allowlist entry still needed: ${a.file} ${a.call}`);
});
