// One schema, three readers: Portcullis's validator, the Helm chart's values.schema.json and the
// configuration reference all come from src/config/schema.ts. These tests walk the schema's key
// paths and check that each reader knows exactly those keys — a key added to the schema alone
// reaches all three (after `npm run gen:config`), and none of them can know a key the schema does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigSchema, CONFIG_DEFINITIONS, keyPaths } from '../../src/config/schema.js';
import { validateConfigObject } from '../../src/config/index.js';

type Node = Record<string, unknown>;

const schema = JSON.parse(JSON.stringify(ConfigSchema)) as Node;
const paths = keyPaths(schema);
const helm = JSON.parse(readFileSync('helm/portcullis/values.schema.json', 'utf8')) as { properties: { config: Node } };
/** A section's keys: an object's, or (a mapping-or-list union such as `oidc`) its mapping's. */
const propsOf = (v: Node): Record<string, Node> => ((v.type === 'object' ? v : (v.anyOf as Node[] | undefined)?.find((b) => b.type === 'object'))?.properties ?? {}) as Record<string, Node>;
/** Keys the chart sets itself: refused in values (`not: {}`), so their children are not listed there. */
const chartOwned = Object.entries((helm.properties.config.properties as Record<string, Node>))
  .flatMap(([k, v]) => ('not' in v ? [k] : Object.entries(propsOf(v)).filter(([, s]) => 'not' in s).map(([c]) => `${k}.${c}`)));

test('the schema describes every section the validator reads', () => {
  assert.ok(paths.length > 60, `only ${paths.length} key paths`);
  for (const p of ['publicUrl', 'oidc.clientSecretFile', 'session.redis.url', 'routes[].match.methods', 'routes[].assertion.ttl', 'metrics.port']) {
    assert.ok(paths.includes(p), p);
  }
});

test('the chart schema knows exactly the schema\'s keys (none added, none missing)', () => {
  const expected = paths.filter((p) => !chartOwned.some((o) => p.startsWith(`${o}.`)));
  assert.deepEqual(keyPaths(helm.properties.config).sort(), expected.sort());
  assert.deepEqual(chartOwned.sort(), ['listen', 'metrics', 'oidc.clientSecret', 'oidc.clientSecretFile', 'session.secrets', 'session.secretsFile']);
});

test('the chart schema takes config.oidc as a mapping or a list, whose items are the mapping\'s keys, chart-owned ones refused', () => {
  const oidc = (helm.properties.config.properties as Record<string, Node>).oidc!;
  const branches = oidc.anyOf as Node[];
  assert.deepEqual(branches.map((b) => b.type), ['object', 'array']);
  const mapping = branches[0]!;
  const items = branches[1]!.items as Node;
  assert.deepEqual(keyPaths(items), keyPaths(mapping));
  for (const key of ['clientSecret', 'clientSecretFile']) {
    assert.ok('not' in (items.properties as Record<string, Node>)[key]!, `oidc[].${key} is not refused`);
    assert.ok('not' in (mapping.properties as Record<string, Node>)[key]!, `oidc.${key} is not refused`);
  }
  // In the list form every provider names its id.
  assert.ok((items.required as string[]).includes('id'));
  assert.ok(!((mapping.required as string[] | undefined) ?? []).includes('id'));
});

test('docs/configuration.md documents every key, and every rule key and operator', () => {
  const doc = readFileSync('docs/configuration.md', 'utf8');
  const rule = CONFIG_DEFINITIONS.claimRule.anyOf.flatMap((b) => Object.keys(b.properties));
  const missing = [...paths, ...rule].filter((p) => !doc.includes(`| \`${p}\` |`));
  assert.deepEqual(missing, []);
  // …and documents nothing else: every key row names a schema key.
  const rows = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
  assert.deepEqual(rows.filter((r) => !paths.includes(r) && !rule.includes(r)), []);
});

test('the validator accepts every key of the schema with its default, and knows no other', () => {
  const base = () => ({
    publicUrl: 'https://apps.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    session: { secrets: ['x'.repeat(40)] },
    routes: [{ name: 'app', upstream: 'http://127.0.0.1:3000' }] as Array<Record<string, unknown>>,
  });
  const set = (doc: Node, path: string, value: unknown) => {
    const segs = path.replace(/\[\]/g, '.0').split('.');
    let n: Node = doc;
    for (const s of segs.slice(0, -1)) n = (n[s] ??= {}) as Node;
    n[segs[segs.length - 1]!] = value;
  };
  const get = (path: string): Node => path.replace(/\[\]/g, '.items').split('.').reduce<Node>((n, s) => {
    const obj = n.type === 'object' || n.type === 'array' ? n : (n.anyOf as Node[]).find((b) => b.type === 'object')!;
    return s === 'items' ? obj.items as Node : (obj.properties as Record<string, Node>)[s]!;
  }, schema);
  for (const path of paths) {
    const d = get(path).default;
    if (d === undefined || (typeof d === 'object' && d !== null && !Array.isArray(d))) continue;
    const doc = base();
    set(doc, path, d);
    const r = validateConfigObject(doc, {});
    assert.ok(r.ok, `${path}: ${JSON.stringify(!r.ok && r.issues)}`);
    // The same key misspelt is refused, with the real one suggested.
    const typo = base();
    set(typo, `${path}X`, d);
    const bad = validateConfigObject(typo, {});
    assert.ok(!bad.ok && bad.issues.some((i) => i.message.startsWith('unknown key') && i.message.includes(`did you mean "${path.split('.').pop()}"`)), `${path}X: ${JSON.stringify(!bad.ok && bad.issues)}`);
  }
});

test('the schema\'s claim-rule language is the rule compiler\'s: the same combinators and operators', async () => {
  const { OPERATORS } = await import('../../src/policy/rules.js');
  const branches = CONFIG_DEFINITIONS.claimRule.anyOf.map((b) => Object.keys(b.properties));
  assert.deepEqual(branches.slice(0, 3), [['all'], ['any'], ['not']]);
  assert.deepEqual(branches[3], ['claim', ...OPERATORS]);
  assert.deepEqual(branches[4], ['provider']);
});
