// docs/errors.md is generated from the one error registry (src/errors.ts): the committed copy must be
// what `npm run gen:errors` writes today, and it documents every code with its status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS_DOC, errorsDoc } from '../../scripts/gen-errors.js';
import { ERROR_CODES, REGISTRY } from '../../src/errors.js';

test('docs/errors.md is fresh: run npm run gen:errors and commit it when this fails', () => {
  const committed = readFileSync(ERRORS_DOC, 'utf8');
  const generated = errorsDoc();
  if (committed !== generated) {
    const a = committed.split('\n');
    const b = generated.split('\n');
    const i = a.findIndex((line, n) => line !== b[n]);
    assert.fail(`docs/errors.md is stale — run npm run gen:errors and commit the result (first difference at line ${i + 1}:\n  committed: ${a[i]}\n  generated: ${b[i]})`);
  }
});

test('every registry code is documented with its status', () => {
  const doc = errorsDoc();
  for (const code of ERROR_CODES) {
    assert.ok(doc.includes(`### \`${code}\`\n\n**HTTP ${REGISTRY[code].status} `), code);
  }
});
