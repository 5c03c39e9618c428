// Policy and identity share one way to read a claim: a path of own properties, compiled once.
export type Claims = Readonly<Record<string, unknown>>;

/** Never resolved, even as real keys of parsed JSON: no walking into prototypes. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Own-property walk over plain objects (never arrays, never the prototype chain); undefined means "missing". */
export function compileClaimGetter(segments: readonly string[]): (claims: Claims) => unknown {
  if (segments.some((s) => FORBIDDEN_KEYS.has(s))) return () => undefined;
  if (segments.length === 1) {
    const key = segments[0]!;
    return (claims) => (Object.hasOwn(claims, key) ? claims[key] : undefined);
  }
  const n = segments.length;
  return (claims) => {
    let cur: unknown = claims;
    for (let i = 0; i < n; i++) {
      const key = segments[i]!;
      if (!isPlainObject(cur) || !Object.hasOwn(cur, key)) return undefined;
      cur = cur[key];
    }
    return cur;
  };
}
