// node:test reporter (scripts/test.mjs adds it): how long each test file took, from the moment the runner
// started it to its last event, merged into PORTCULLIS_TEST_TIMES — the next run starts the longest
// files first. Writes nothing to its own destination.
import { readFileSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';

export default async function* times(source) {
  const started = new Map();
  const last = new Map();
  for await (const event of source) {
    const file = event.data?.file;
    if (!file) continue;
    if (event.type === 'test:dequeue' && event.data.nesting === 0 && event.data.name === file) started.set(file, Date.now());
    else last.set(file, Date.now());
  }
  const out = process.env.PORTCULLIS_TEST_TIMES;
  const build = process.env.PORTCULLIS_TEST_BUILD;
  if (!out || !build) return;
  let times = {};
  try {
    times = JSON.parse(readFileSync(out, 'utf8'));
  } catch { /* the first run */ }
  for (const [file, t0] of started) {
    const t1 = last.get(file);
    if (t1 !== undefined) times[relative(build, file).replace(/\.js$/, '.ts')] = Math.round((t1 - t0) / 100) / 10;
  }
  writeFileSync(out, `${JSON.stringify(times, Object.keys(times).sort(), 2)}\n`);
}
