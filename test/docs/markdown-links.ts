// The docs link checker: every relative link in a Markdown file must name a file (or folder) that
// exists and, for `#anchor`s into Markdown, a heading that exists. Links are read with markdown-it,
// so a link inside a code block or code span is not a link (as on GitHub); heading anchors are made
// with github-slugger, GitHub's own rules (lower case, punctuation dropped, `-1` for repeats).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import GithubSlugger from 'github-slugger';
import MarkdownIt, { type Token } from 'markdown-it';

const md = new MarkdownIt();

/** A link as written: its target and the line it starts on (1-based). */
export interface Link { href: string; line: number }

function* inlineTokens(tokens: Token[]): Generator<{ inline: Token; line: number; heading: boolean }> {
  let line = 1; // table cells' inline tokens carry no line of their own: their row's is used
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.map) line = t.map[0] + 1;
    if (t.type === 'inline') yield { inline: t, line, heading: tokens[i - 1]?.type === 'heading_open' };
  }
}

/** Every link and image target in a Markdown text (not those inside code). */
export function linksOf(text: string): Link[] {
  const out: Link[] = [];
  for (const { inline, line } of inlineTokens(md.parse(text, {}))) {
    for (const c of inline.children ?? []) {
      const href = c.type === 'link_open' ? c.attrGet('href') : c.type === 'image' ? c.attrGet('src') : null;
      if (href !== null) out.push({ href: String(href), line });
    }
  }
  return out;
}

/** The anchors GitHub gives a Markdown text's headings, in order. */
export function headingAnchorsOf(text: string): string[] {
  const slugger = new GithubSlugger();
  const out: string[] = [];
  for (const { inline, heading } of inlineTokens(md.parse(text, {}))) {
    if (!heading) continue;
    // The heading's text as rendered: code spans keep their content, markup characters go.
    const rendered = (inline.children ?? []).filter((c) => c.type === 'text' || c.type === 'code_inline').map((c) => c.content).join('');
    out.push(slugger.slug(rendered));
  }
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A link that leaves the repository's files: a URL scheme (`https:`, `mailto:`) or `//host`. */
function isExternal(href: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('//');
}

/**
 * The problems of one Markdown file's relative links, as `file:line: message` (empty when all
 * resolve). `root` is the repository: a link starting with `/` is read from there, as GitHub does.
 */
export function brokenLinks(file: string, root: string): string[] {
  const text = readFileSync(file, 'utf8');
  const where = (line: number) => `${relative(root, file)}:${line}`;
  const problems: string[] = [];
  for (const { href, line } of linksOf(text)) {
    if (isExternal(href)) continue;
    const hash = href.indexOf('#');
    const pathPart = hash === -1 ? href : href.slice(0, hash);
    const anchor = hash === -1 ? undefined : href.slice(hash + 1);
    let pathDecoded: string;
    try {
      pathDecoded = decodeURIComponent(pathPart);
    } catch {
      problems.push(`${where(line)}: ${href} is not a valid URL path`);
      continue;
    }
    const target = pathDecoded === '' ? file : pathDecoded.startsWith('/') ? join(root, pathDecoded) : resolve(dirname(file), pathDecoded);
    if (!existsSync(target)) {
      problems.push(`${where(line)}: ${href} → ${relative(root, target)} does not exist`);
      continue;
    }
    if (anchor === undefined) continue;
    if (statSync(target).isFile() && target.endsWith('.md')) {
      if (!headingAnchorsOf(readFileSync(target, 'utf8')).includes(safeDecode(anchor))) {
        problems.push(`${where(line)}: ${href} → no heading #${anchor} in ${relative(root, target)}`);
      }
    } else if (!/^L\d+(-L\d+)?$/.test(anchor)) {
      // Into other files GitHub only knows line anchors (#L12, #L12-L20).
      problems.push(`${where(line)}: ${href} → #${anchor} is not a line anchor, and ${relative(root, target)} is not Markdown`);
    }
  }
  return problems;
}

/** The Markdown files reachable from `start` by following relative links (start included). */
export function reachableMarkdown(start: string): Set<string> {
  const seen = new Set<string>();
  const queue = [resolve(start)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const { href } of linksOf(readFileSync(file, 'utf8'))) {
      if (isExternal(href)) continue;
      const pathPart = href.split('#')[0]!;
      if (pathPart === '') continue;
      let target: string;
      try {
        target = resolve(dirname(file), decodeURIComponent(pathPart));
      } catch {
        continue;
      }
      if (target.endsWith('.md') && existsSync(target) && statSync(target).isFile()) queue.push(target);
    }
  }
  return seen;
}

/** Markdown files under a folder, at any depth. */
export function markdownFilesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((p) => p.endsWith('.md')).map((p) => join(dir, p)).sort();
}
