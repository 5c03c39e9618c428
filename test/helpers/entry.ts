// Test helper: the node arguments that start one of the repo's TypeScript entry points (src/main.ts)
// as a child process. Under scripts/test.mjs the suite runs compiled — this file is then .js in
// .tmp/test-build, beside every compiled source — and the child runs the compiled .js as well, without
// tsx's start-up (~2.5 s of CPU per process). Run under tsx (`node --import tsx --test FILE`), the
// child runs the source under tsx.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const COMPILED = import.meta.url.endsWith('.js');
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `script` relative to the repository, e.g. 'src/main.ts'; the result is absolute, whatever the child's cwd. */
export function entryArgs(script: string): string[] {
  const file = join(ROOT, script);
  return COMPILED ? [file.replace(/\.ts$/, '.js')] : ['--import', 'tsx', file];
}
