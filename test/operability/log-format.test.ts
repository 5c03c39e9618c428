// Logs are JSON lines for collectors, and readable for a person at a terminal (pino-pretty), with
// PORTCULLIS_LOG_FORMAT=json|pretty to override the guess.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { jsonStdout, logDestination, pipeSizedChunks } from '../../src/logging.js';
import { freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { configFile, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor } from './support.js';
import { until } from '../helpers/wait.js';

test('the format follows the terminal, and PORTCULLIS_LOG_FORMAT overrides it', () => {
  assert.equal(logDestination({}, { isTTY: false }), undefined, 'not a terminal: JSON (pino\'s own stdout)');
  assert.equal(logDestination({}, {}), undefined);
  assert.ok(logDestination({}, { isTTY: true }), 'a terminal: pretty');
  assert.equal(logDestination({ PORTCULLIS_LOG_FORMAT: 'json' }, { isTTY: true }), undefined, 'json wins over the terminal');
  assert.ok(logDestination({ PORTCULLIS_LOG_FORMAT: 'pretty' }, { isTTY: false }), 'pretty without a terminal');
});

test('JSON on stdout: the lines of a turn are written together, whole and in order, and what is pending is written at process.exit', () => {
  // A child process, as stdout is the process's: lines in one turn, more in the next, two written
  // just before process.exit (still pending then: they would wait for the end of the turn).
  const logging = new URL('../../src/logging.js', import.meta.url).href;
  const script = `
    const { jsonStdout } = await import(${JSON.stringify(logging)});
    const out = jsonStdout();
    for (let i = 0; i < 3; i++) out.write(JSON.stringify({ n: i, s: 'é✓\\u2028' }) + '\\n');
    setImmediate(() => {
      out.write(JSON.stringify({ n: 3 }) + '\\n');
      setImmediate(() => { out.write(JSON.stringify({ n: 4 }) + '\\n'); out.write(JSON.stringify({ n: 5 }) + '\\n'); process.exit(0); });
    });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.equal(lines.pop(), '', 'ends with a newline');
  assert.deepEqual(lines.map((l) => (JSON.parse(l) as { n: number }).n), [0, 1, 2, 3, 4, 5]);
  assert.equal((JSON.parse(lines[0]!) as { s: string }).s, 'é✓\u2028', 'UTF-8 intact');
  assert.equal(jsonStdout(), jsonStdout(), 'one per process');
});

test('JSON on stdout: a full pipe never stalls the process, and every line still arrives, in order; a closed pipe does not end it', async (t) => {
  const logging = new URL('../../src/logging.js', import.meta.url).href;
  // 2,000 lines of ~1 KB (2 MB: thirty times a pipe's buffer), 100 per turn, to a reader that does
  // not read. The child says when stdout has started queueing (the pipe is full), then — its writes
  // done, the pipe still full — watches a 10 ms timer for 300 ms and says how late it fired at
  // worst. A write that blocked on the full pipe would never get that far: the reader only reads
  // once it has heard "lag".
  const writer = `
    const { jsonStdout } = await import(${JSON.stringify(logging)});
    const out = jsonStdout();
    let n = 0, full = false;
    const turn = () => {
      for (let i = 0; i < 100; i++, n++) out.write(JSON.stringify({ n, pad: 'x'.repeat(1000) }) + '\\n');
      if (!full && process.stdout.writableLength > 0) { full = true; process.stderr.write('full\\n'); }
      if (n < 2000) { setImmediate(turn); return; }
      let last = performance.now(), worst = 0;
      const timer = setInterval(() => { const now = performance.now(); worst = Math.max(worst, now - last - 10); last = now; }, 10);
      const WINDOW_MS = 300;
      setTimeout(() => { clearInterval(timer); process.stderr.write('lag ' + Math.round(worst) + '\\n'); }, WINDOW_MS);
    };
    turn();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', writer], { stdio: ['ignore', 'pipe', 'pipe'] });
  // A child stuck on its full pipe (the failure this test looks for) is ended with the test.
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let err = '';
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  child.stdout.pause();
  await until('the child\'s stdout queueing on the full pipe, then its timer report', 20_000, () => /lag \d+/.test(err) || child.exitCode !== null);
  assert.match(err, /^full\n/, 'the pipe was full while the child wrote');
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  child.stdout.resume();
  const code = await new Promise((r) => child.on('close', r));
  assert.equal(code, 0, err);
  const ns = Buffer.concat(chunks).toString().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n);
  assert.equal(ns.length, 2000, 'every line arrived');
  assert.ok(ns.every((v, i) => v === i), 'in order');
  const lag = Number(/lag (\d+)/.exec(err)?.[1] ?? NaN);
  assert.ok(lag < 150, `the event loop kept running while the pipe was full (worst timer lag ${lag} ms)`);

  // The reader goes away: the next writes fail with EPIPE, which is reported once, and the process goes on.
  const gone = spawn(process.execPath, ['--input-type=module', '-e', `
    const { jsonStdout } = await import(${JSON.stringify(logging)});
    const out = jsonStdout();
    let n = 0;
    const turn = () => { for (let i = 0; i < 50; i++) out.write(JSON.stringify({ n: n++ }) + '\\n'); if (n < 5000) setImmediate(turn); else setTimeout(() => process.stderr.write('still running\\n'), 50); };
    setTimeout(turn, 200);`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let goneErr = '';
  gone.stderr.on('data', (c: Buffer) => { goneErr += c.toString(); });
  gone.stdout.destroy();
  const goneCode = await new Promise((r) => gone.on('close', r));
  assert.equal(goneCode, 0, goneErr);
  assert.match(goneErr, /stdout failed \(EPIPE\); log lines are dropped from now on\n/);
  assert.equal(goneErr.match(/stdout failed/g)?.length, 1, 'said once');
  assert.match(goneErr, /still running/);
});

test('a turn\'s lines go out in writes of at most 4 KB cut at line ends (atomic on a pipe shared by workers); a longer line whole, alone', () => {
  const line = (n: number, size: number) => `${JSON.stringify({ n, pad: 'é'.repeat(Math.max(0, (size - 20) >> 1)) })}\n`;
  for (const sizes of [[100], [300, 300, 300], Array(40).fill(350), [4095], [4096], [4097], [200, 9000, 200, 200], [9000], Array(13).fill(333).concat([5000]).concat(Array(13).fill(333))]) {
    const text = sizes.map((size, n) => line(n, size)).join('');
    const bytes = Buffer.from(text);
    const chunks = pipeSizedChunks(bytes);
    assert.equal(Buffer.concat(chunks).toString(), text, 'nothing lost, nothing reordered');
    for (const c of chunks) {
      assert.equal(c.at(-1), 10, 'every write ends at a line end');
      const lines = c.toString().split('\n').slice(0, -1);
      assert.ok(c.length <= 4096 || lines.length === 1, `a write over 4 KB is one line (${c.length} bytes, ${lines.length} lines)`);
      for (const l of lines) JSON.parse(l);
    }
    if (bytes.length > 4096 && sizes.length > 1) assert.ok(chunks.length > 1, "over 4 KB of several lines: several writes");
  }
});

test('a process with PORTCULLIS_LOG_FORMAT=pretty writes readable lines, not JSON; secrets stay redacted', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const idp = await startTestIdp(t, { redirectUris: [`http://127.0.0.1:${port}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({ port, metricsPort, issuer: idp.issuer, routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }] }));
  const p = spawnPortcullis(t, file.path, { PORTCULLIS_LOG_FORMAT: 'pretty' });
  const listening = await p.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('portcullis listening'), PROCESS_START_MS);
  assert.match(String(listening.msg), /INFO/, 'level in words');
  assert.doesNotMatch(String(listening.msg), /^\{/, 'not a JSON line');
  // A request with credentials that the proxy logs at debug: the secret does not reach the terminal.
  await fetch(`http://127.0.0.1:${port}/x`, { headers: { cookie: 'portcullis=SECRET-COOKIE-VALUE', authorization: 'Bearer SECRET-TOKEN' } });
  await waitFor(() => p.logs.some((l) => String(l.msg).includes('/x') || String(l.msg).includes('unauthenticated')), 5_000, 'a line about the request');
  const all = p.logs.map((l) => String(l.msg)).join('\n');
  assert.doesNotMatch(all, /SECRET-COOKIE-VALUE|SECRET-TOKEN/);
  assert.ok(p.logs.every((l) => l.level === undefined), 'no line parsed as JSON');
  p.signal('SIGTERM');
  await p.exited;
});
