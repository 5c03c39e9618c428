// Config validation vocabulary: every problem found at boot is one ConfigIssue with its key path.
// Validation never stops at the first problem; callers collect issues and print them together.

export interface ConfigIssue {
  /** Key path in the YAML, e.g. `routes[2].allow.any[0]`. Empty string for the document root. */
  path: string;
  /** Plain-words description, e.g. `unknown operator "contain" — did you mean "contains"?` */
  message: string;
}

export type Issues = ConfigIssue[];

/** Joins a parent key path and a child key or index into a display path. */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  const safe = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key);
  return parent ? `${parent}.${safe}` : safe;
}

/** Levenshtein distance, for "did you mean" suggestions on typos. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** ` — did you mean "x"?` when a known word is close to the typo, else ''. */
export function suggest(word: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) { bestD = d; best = k; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? ` — did you mean "${best}"?` : '';
}
