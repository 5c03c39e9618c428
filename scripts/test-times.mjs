// node:test reporter (scripts/test.mjs adds it): how long each test file's tests took — the sum of its
// top-level tests' durations (what runs in a file is sequential), or the file's own when it failed as a
// whole — merged into PORTCULLIS_TEST_TIMES, seconds per file; the next run starts the longest first.
// Writes nothing to its own destination. In a batch file, the top-level tests are the test files.
import { readFileSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';

const out = process.env.PORTCULLIS_TEST_TIMES;
const build = process.env.PORTCULLIS_TEST_BUILD;

/** The test's .ts, relative to the repository: events name the compiled file, or (source maps) the source. */
function sourceOf(file) {
  const inBuild = relative(build ?? '', file);
  return (inBuild.startsWith('..') ? relative(resolve(build ?? '', '../..'), file) : inBuild).replace(/\.js$/, '.ts');
}

export default async function* times(source) {
  const sums = new Map();
  for await (const event of source) {
    if ((event.type !== 'test:pass' && event.type !== 'test:fail') || event.data.nesting !== 0 || !event.data.file) continue;
    const { file, name } = event.data;
    const ms = event.data.details?.duration_ms ?? 0;
    // A batch (scripts/test.mjs) runs each test file under a describe() named after it.
    const key = relative(build ?? '', file).startsWith('test-batches') ? name : sourceOf(file);
    const entry = sums.get(key) ?? { tests: 0, self: 0 };
    if (name === file) entry.self = ms;
    else entry.tests += ms;
    sums.set(key, entry);
  }
  if (!out || !build) return;
  let times = {};
  try {
    times = JSON.parse(readFileSync(out, 'utf8'));
  } catch { /* the first run */ }
  for (const [file, { tests, self }] of sums) {
    times[file] = Math.round((tests || self) / 100) / 10;
  }
  writeFileSync(out, `${JSON.stringify(times, Object.keys(times).sort(), 2)}\n`);
}
