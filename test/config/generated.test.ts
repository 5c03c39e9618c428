// What `npm run gen:config` writes from src/config/schema.ts must be committed fresh: the Helm
// chart's values.schema.json (config subtree) and docs/configuration.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { CONFIG_DOC, configurationDoc, HELM_SCHEMA, helmSchemaText, repoRoot } from '../../scripts/gen-config.js';
import { ConfigSchema, PATTERN_MESSAGES } from '../../src/config/schema.js';

/** First differing line, so a stale file says where without printing both files whole. */
function firstDifference(a: string, b: string): string {
  const x = a.split('\n');
  const y = b.split('\n');
  const i = x.findIndex((line, n) => line !== y[n]);
  const at = i === -1 ? Math.min(x.length, y.length) : i;
  return `line ${at + 1}:\n  committed: ${x[at] ?? '(end of file)'}\n  generated: ${y[at] ?? '(end of file)'}`;
}

for (const [file, generate] of [[HELM_SCHEMA, helmSchemaText], [CONFIG_DOC, configurationDoc]] as const) {
  test(`${relative(repoRoot, file)} is what the schema generates`, () => {
    const committed = readFileSync(file, 'utf8');
    const generated = generate();
    assert.ok(committed === generated, `stale — run npm run gen:config and commit the result\n${firstDifference(committed, generated)}`);
  });
}

test('every pattern in the schema has a plain-words message', () => {
  const patterns = new Set<string>();
  const walk = (n: unknown): void => {
    if (!n || typeof n !== 'object') return;
    const p = (n as { pattern?: unknown }).pattern;
    if (typeof p === 'string') patterns.add(p);
    Object.values(n).forEach(walk);
  };
  walk(JSON.parse(JSON.stringify(ConfigSchema)));
  assert.ok(patterns.size > 3);
  assert.deepEqual([...patterns].filter((p) => !(p in PATTERN_MESSAGES)), []);
});
