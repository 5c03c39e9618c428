// The docs hold together: every relative link in the README, docs/, the bench, chart and example
// READMEs resolves (file and heading), every docs/ page can be reached from the README, and the
// README stays short. The checker is tested on bad samples first, so a broken link cannot pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { brokenLinks, headingAnchorsOf, linksOf, markdownFilesUnder, reachableMarkdown } from './markdown-links.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DOCS = join(ROOT, 'docs');

/** A throwaway folder of Markdown files, removed after the test. */
function sample(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-docs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

test('checker: headings get GitHub anchors (lower case, punctuation and markup dropped, -1 for repeats)', () => {
  const text = [
    '# Rotate the session secret',
    '## `--compare REF`: the current build',
    '## One forwarder, not `@fastify/http-proxy`',
    '## Limits', '## Limits',
    '### Sign-out (RP-initiated) & back-channel',
    '```md', '# not a heading: inside a code block', '```',
  ].join('\n');
  assert.deepEqual(headingAnchorsOf(text), [
    'rotate-the-session-secret',
    '--compare-ref-the-current-build',
    'one-forwarder-not-fastifyhttp-proxy',
    'limits', 'limits-1',
    'sign-out-rp-initiated--back-channel',
  ]);
});

test('checker: links are what Markdown renders as links — not text inside code', () => {
  const text = 'See [a](a.md), ![img](pic.png) and [b](b.md#x).\n\n`[not](code.md)`\n\n```\n[nor](fence.md)\n```\n';
  assert.deepEqual(linksOf(text).map((l) => l.href), ['a.md', 'pic.png', 'b.md#x']);
});

test('checker: a missing file, a missing heading, a bad anchor into code are each reported', (t) => {
  const dir = sample(t, {
    'README.md': [
      '# Top',
      '[ok](docs/a.md) [ok anchor](docs/a.md#second-part) [ok self](#top) [ok folder](docs) [ok code](src/x.ts#L3)',
      '[https is not checked](https://example.com/nope.md) [mail](mailto:a@example.com)',
      '[gone](docs/missing.md)',
      '[no heading](docs/a.md#third-part)',
      '[no self heading](#bottom)',
      '[code anchor](src/x.ts#main)',
      '[escaped ok](docs/with%20space.md)',
    ].join('\n\n'),
    'docs/a.md': '# A\n## Second part\n[up](../README.md#top)\n',
    'docs/with space.md': '# Spaced\n',
    'src/x.ts': 'export {};\n',
  });
  const problems = brokenLinks(join(dir, 'README.md'), dir);
  assert.equal(problems.length, 4, problems.join('\n'));
  assert.match(problems[0]!, /^README\.md:7: docs\/missing\.md .* does not exist/);
  assert.match(problems[1]!, /^README\.md:9: .*no heading #third-part in docs\/a\.md/);
  assert.match(problems[2]!, /^README\.md:11: .*no heading #bottom in README\.md/);
  assert.match(problems[3]!, /^README\.md:13: .*#main is not a line anchor/);
  assert.deepEqual(brokenLinks(join(dir, 'docs', 'a.md'), dir), []);
});

test('checker: reachability follows links from page to page, and misses an orphan', (t) => {
  const dir = sample(t, {
    'README.md': '[a](docs/a.md)\n',
    'docs/a.md': '[b](b.md#x) [back](../README.md)\n',
    'docs/b.md': '# x\n',
    'docs/orphan.md': '# alone\n',
  });
  const seen = [...reachableMarkdown(join(dir, 'README.md'))].map((f) => relative(dir, f)).sort();
  assert.deepEqual(seen, ['README.md', 'docs/a.md', 'docs/b.md']);
});

/** The Markdown that ships with the repository and must hold together. */
function checkedFiles(): string[] {
  return [
    join(ROOT, 'README.md'),
    ...markdownFilesUnder(DOCS),
    join(ROOT, 'bench', 'README.md'),
    join(ROOT, 'helm', 'portcullis', 'README.md'),
    ...markdownFilesUnder(join(ROOT, 'examples')),
  ];
}

test('every relative link in the README, docs/, bench, chart and examples resolves (file and heading)', () => {
  const files = checkedFiles();
  assert.ok(files.length >= 15, `expected the docs pages and example READMEs, found ${files.length}`);
  const problems = files.flatMap((f) => brokenLinks(f, ROOT));
  assert.deepEqual(problems, [], `broken links:\n${problems.join('\n')}`);
});

test('the docs/ pages the README promises exist, and every docs/ page is reachable from the README', () => {
  // The generated pages (configuration, errors) are written by their generators; a missing one is
  // a failure here, not a skip.
  const expected = ['configuration', 'design', 'errors', 'forward-auth', 'identity', 'kubernetes', 'operations', 'security', 'sessions'];
  const pages = markdownFilesUnder(DOCS);
  for (const name of expected) assert.ok(pages.includes(join(DOCS, `${name}.md`)), `docs/${name}.md is missing`);
  const reachable = reachableMarkdown(join(ROOT, 'README.md'));
  const orphans = pages.filter((f) => !reachable.has(f)).map((f) => relative(ROOT, f));
  assert.deepEqual(orphans, [], 'docs/ pages no link path from README.md reaches');
  for (const f of ['bench/README.md', 'helm/portcullis/README.md', 'examples/README.md']) {
    assert.ok(reachable.has(join(ROOT, f)), `${f} is not reachable from README.md`);
  }
});

test('every error code the docs name is in the generated error reference (docs/errors.md)', () => {
  assert.ok(existsSync(join(DOCS, 'errors.md')), 'docs/errors.md is missing');
  const reference = readFileSync(join(DOCS, 'errors.md'), 'utf8');
  const named = new Set<string>();
  for (const f of [join(ROOT, 'README.md'), ...markdownFilesUnder(DOCS).filter((f) => f !== join(DOCS, 'errors.md'))]) {
    // `ERR_IDP_*` names a family: some code must start with it.
    for (const m of readFileSync(f, 'utf8').matchAll(/\bERR_[A-Z0-9_]+\*?/g)) named.add(m[0]);
  }
  assert.ok(named.size >= 5, `expected the docs to name error codes, found ${[...named].join(', ')}`);
  const known = new Set(reference.match(/\bERR_[A-Z0-9_]+\b/g) ?? []);
  const unknown = [...named].filter((code) => (code.endsWith('*') ? ![...known].some((k) => k.startsWith(code.slice(0, -1))) : !known.has(code))).sort();
  assert.deepEqual(unknown, [], 'codes named in the docs but not in docs/errors.md (renamed or removed?)');
});

test('the README stays an overview: under 200 lines', () => {
  const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length;
  assert.ok(lines < 200, `README.md has ${lines} lines; move detail into docs/`);
});
