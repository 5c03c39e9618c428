// Policy stage, boot time: turns a route's `allow` rule into closures once; requests only run them.
//
// The language (see CONTRACT §2):
//   { all: [RULE, ...] }   every child passes (non-empty list)
//   { any: [RULE, ...] }   at least one child passes (non-empty list)
//   { not: RULE }          negates its child, nothing more
//   { claim: PATH, OP: VALUE }  with exactly one OP of
//       equals      claim === VALUE, type-strict ("true" is not true; an array never equals a scalar)
//       in          claim is a scalar and one of the listed scalars (type-strict)
//       contains    claim is an ARRAY holding VALUE (a string claim never matches)
//       startsWith  claim is a string starting with VALUE
//       endsWith    claim is a string ending with VALUE; if VALUE holds "@" the claim must hold
//                   exactly one "@" (so "a@evil.com@example.com" is not "@example.com")
//       matches     claim is a string of at most 4096 chars matching VALUE as a WHOLE: the regex
//                   is compiled as /^(?:VALUE)$/u, so "adm.*" does not match "superadmin"
//       exists      true: claim present and not null; false: claim absent or null
//   { provider: ID }  or  { provider: [ID, ...] }
//       the identity comes from that OpenID Provider (an `oidc` id; several providers). Not a
//       claim: the IdP cannot assert it — it is where the session signed in, or which configured
//       issuer verified the bearer token.
//
// Deny by default: a missing claim fails every leaf except `exists: false`. `not` does not
// special-case missing claims — `not: { claim: x, equals: 1 }` passes when x is absent. To
// require absence write `not: { claim: x, exists: true }` (same as `exists: false`).
//
// PATH: a string is a dotted path (`realm_access.roles` = claims.realm_access.roles); an array
// of strings is a list of literal keys, for keys holding dots or URLs
// (`claim: ["https://example.com/claims", "roles"]`). Only own properties of plain objects are
// walked (never arrays, never the prototype chain), and the segments `__proto__`, `constructor`
// and `prototype` never resolve to anything, so such a leaf simply never matches.

import safeRegex from 'safe-regex2';
import { childPath, suggest, type Issues } from '../config/issues.js';

export type { Claims } from './claims.js';
import { compileClaimGetter, isPlainObject, type Claims } from './claims.js';

export interface RuleTrace {
  label: string;
  passed: boolean;
  children?: RuleTrace[];
}

export interface CompiledRule {
  readonly kind: 'all' | 'any' | 'not' | 'leaf';
  /** Readable form for explanations: `all`, `groups contains "admin"`. Holds only the rule's own values. */
  readonly label: string;
  readonly children: readonly CompiledRule[];
  /**
   * The hot-path predicate: short-circuits and allocates nothing. `provider`: the `oidc` id the
   * claims come from (a `provider` rule fails without it).
   */
  readonly test: (claims: Claims, provider?: string) => boolean;
}

export const OPERATORS = ['equals', 'in', 'contains', 'startsWith', 'endsWith', 'matches', 'exists'] as const;
export type Operator = (typeof OPERATORS)[number];
const COMBINATORS = ['all', 'any', 'not'] as const;
const RULE_KEYS: readonly string[] = [...COMBINATORS, 'claim', 'provider', ...OPERATORS];
/** An `oidc` id, as the schema has it. */
const PROVIDER_ID = /^[A-Za-z0-9_-]{1,40}$/;

/** Longer claim strings are never fed to a regex: bounds the work an attacker-chosen claim can cause. */
export const MAX_MATCH_LENGTH = 4096;
/** Guards against YAML alias cycles and absurd nesting. */
const MAX_DEPTH = 32;
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

type Scalar = string | number | boolean;

function isScalar(x: unknown): x is Scalar {
  return typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x));
}

function show(value: Scalar): string {
  return JSON.stringify(value);
}

/**
 * Validates `raw` and compiles it. Every problem is pushed onto `issues` with its key path;
 * returns undefined if this rule (or any rule inside it) had a problem.
 */
export function compileRule(raw: unknown, path: string, issues: Issues): CompiledRule | undefined {
  return compileAt(raw, path, issues, 0);
}

function compileAt(raw: unknown, path: string, issues: Issues, depth: number): CompiledRule | undefined {
  const before = issues.length;
  if (depth > MAX_DEPTH) {
    issues.push({ path, message: `rule nested more than ${MAX_DEPTH} levels deep` });
    return undefined;
  }
  if (!isPlainObject(raw)) {
    issues.push({ path, message: 'a rule must be a mapping: all, any, not, or { claim, OPERATOR }' });
    return undefined;
  }

  const keys = Object.keys(raw);
  const combinators = keys.filter((k): k is (typeof COMBINATORS)[number] => (COMBINATORS as readonly string[]).includes(k));
  const operators = keys.filter((k): k is Operator => (OPERATORS as readonly string[]).includes(k));
  const isProvider = keys.includes('provider');
  const isLeaf = !isProvider && (keys.includes('claim') || operators.length > 0);
  let unknown = false;
  for (const k of keys) {
    if (RULE_KEYS.includes(k)) continue;
    unknown = true;
    issues.push(
      isLeaf
        ? { path: childPath(path, k), message: `unknown operator "${k}"${suggest(k, OPERATORS)}` }
        : { path: childPath(path, k), message: `unknown key "${k}"${suggest(k, RULE_KEYS)}` },
    );
  }

  if (keys.length === 0) {
    issues.push({ path, message: 'empty rule: use all, any, not, or { claim, OPERATOR }' });
    return undefined;
  }
  if (isProvider && keys.length > 1) {
    issues.push({ path, message: `a provider test stands alone ({ provider: corp }); found ${keys.join(', ')} — combine tests with all/any` });
    return undefined;
  }
  if (combinators.length + (isLeaf ? 1 : 0) > 1) {
    const found = [...combinators, ...(isLeaf ? ['claim'] : [])].join(', ');
    issues.push({ path, message: `a rule is exactly one of all, any, not or a claim test; found ${found} — nest them instead` });
  }

  // Compile every part that is present, even after a problem, so all issues surface at once.
  let compiled: CompiledRule | undefined;
  for (const c of combinators) {
    const r = compileCombinator(c, raw[c], childPath(path, c), issues, depth);
    compiled ??= r;
  }
  if (isProvider) {
    compiled = compileProvider(raw.provider, childPath(path, 'provider'), issues);
  } else if (isLeaf) {
    const r = compileLeaf(raw, operators, path, issues, unknown);
    compiled ??= r;
  } else if (combinators.length === 0 && !unknown) {
    issues.push({ path, message: 'a rule must be all, any, not, or { claim, OPERATOR }' });
  }

  return issues.length === before ? compiled : undefined;
}

function compileCombinator(
  kind: (typeof COMBINATORS)[number],
  value: unknown,
  path: string,
  issues: Issues,
  depth: number,
): CompiledRule | undefined {
  if (kind === 'not') {
    const child = compileAt(value, path, issues, depth + 1);
    if (!child) return undefined;
    const t = child.test;
    return Object.freeze({ kind, label: 'not', children: Object.freeze([child]), test: (c: Claims, p?: string) => !t(c, p) });
  }

  if (!Array.isArray(value)) {
    issues.push({ path, message: `${kind} takes a list of rules` });
    return undefined;
  }
  if (value.length === 0) {
    issues.push({ path, message: `empty ${kind} list: give at least one rule` });
    return undefined;
  }
  const children: CompiledRule[] = [];
  value.forEach((v, i) => {
    const child = compileAt(v, childPath(path, i), issues, depth + 1);
    if (child) children.push(child);
  });
  if (children.length !== value.length) return undefined;

  const tests = children.map((ch) => ch.test);
  const n = tests.length;
  const test =
    n === 1
      ? tests[0]!
      : kind === 'all'
        ? (c: Claims, p?: string) => {
            for (let i = 0; i < n; i++) if (!tests[i]!(c, p)) return false;
            return true;
          }
        : (c: Claims, p?: string) => {
            for (let i = 0; i < n; i++) if (tests[i]!(c, p)) return true;
            return false;
          };
  return Object.freeze({ kind, label: kind, children: Object.freeze(children), test });
}

// ---- leaves ---------------------------------------------------------------------------------

/** `{ provider: corp }` / `{ provider: [corp, partners] }`: the provider the identity comes from. (semantic.ts checks the ids exist.) */
function compileProvider(raw: unknown, path: string, issues: Issues): CompiledRule | undefined {
  const ids = Array.isArray(raw) ? raw : [raw];
  if (ids.length === 0) {
    issues.push({ path, message: 'empty list: provider [] would never match' });
    return undefined;
  }
  let ok = true;
  ids.forEach((id, i) => {
    if (typeof id !== 'string' || !PROVIDER_ID.test(id)) {
      issues.push({ path: Array.isArray(raw) ? childPath(path, i) : path, message: 'must be a provider id (an `oidc` id: letters, digits, _ and -)' });
      ok = false;
    }
  });
  if (!ok) return undefined;
  const set = new Set<string>(ids as string[]);
  const one = ids.length === 1 ? (ids[0] as string) : undefined;
  return Object.freeze({
    kind: 'leaf' as const,
    label: one !== undefined ? `provider is ${show(one)}` : `provider in [${(ids as string[]).map(show).join(', ')}]`,
    children: Object.freeze([]),
    test: one !== undefined ? (_c: Claims, p?: string) => p === one : (_c: Claims, p?: string) => p !== undefined && set.has(p),
  });
}

/** The provider ids a compiled rule tests (for the config check that they exist). */
export function providersTested(raw: unknown): string[] {
  if (!isPlainObject(raw)) return [];
  if (raw.provider !== undefined) return (Array.isArray(raw.provider) ? raw.provider : [raw.provider]).filter((x): x is string => typeof x === 'string');
  const kids = [raw.all, raw.any, raw.not].flatMap((v) => (Array.isArray(v) ? v : v === undefined ? [] : [v]));
  return kids.flatMap(providersTested);
}

interface ClaimPath {
  segments: string[];
  display: string;
}

function parseClaimPath(raw: unknown, path: string, issues: Issues): ClaimPath | undefined {
  if (typeof raw === 'string') {
    if (raw === '') {
      issues.push({ path, message: 'empty claim name' });
      return undefined;
    }
    const segments = raw.split('.');
    if (segments.includes('')) {
      issues.push({
        path,
        message: `claim path "${raw}" has an empty segment; for keys containing dots write a list of keys, e.g. ["https://example.com/claims", "roles"]`,
      });
      return undefined;
    }
    return { segments, display: raw };
  }
  if (Array.isArray(raw)) {
    if (raw.length === 0) {
      issues.push({ path, message: 'empty claim path list' });
      return undefined;
    }
    let ok = true;
    raw.forEach((s, i) => {
      if (typeof s !== 'string' || s === '') {
        issues.push({ path: childPath(path, i), message: 'each claim path key must be a non-empty string' });
        ok = false;
      }
    });
    if (!ok) return undefined;
    const segments = raw as string[];
    return { segments, display: segments.map((s) => (IDENTIFIER.test(s) ? s : JSON.stringify(s))).join('.') };
  }
  issues.push({ path, message: 'claim must be a dotted path string or a list of keys' });
  return undefined;
}

interface OperatorCheck {
  /** Predicate on the claim's value (undefined when the claim is missing). */
  pred: (value: unknown) => boolean;
  /** The label after the claim path, e.g. `contains "admin"`. */
  label: string;
}

function compileLeaf(
  raw: Record<string, unknown>,
  operators: Operator[],
  path: string,
  issues: Issues,
  hadUnknownKey: boolean,
): CompiledRule | undefined {
  const before = issues.length;
  let claim: ClaimPath | undefined;
  if (!Object.hasOwn(raw, 'claim')) issues.push({ path, message: 'missing "claim": which claim does this test look at?' });
  else claim = parseClaimPath(raw.claim, childPath(path, 'claim'), issues);

  if (operators.length === 0 && !hadUnknownKey) {
    issues.push({ path, message: `missing operator: one of ${OPERATORS.join(', ')}` });
  } else if (operators.length > 1) {
    issues.push({
      path,
      message: `one operator per claim test, found ${operators.map((o) => `"${o}"`).join(' and ')} — combine tests with all/any`,
    });
  }
  let check: OperatorCheck | undefined;
  for (const op of operators) {
    const c = compileOperator(op, raw[op], childPath(path, op), issues);
    check ??= c;
  }
  if (issues.length !== before || !claim || !check) return undefined;

  const get = compileClaimGetter(claim.segments);
  const pred = check.pred;
  return Object.freeze({
    kind: 'leaf' as const,
    label: `${claim.display} ${check.label}`,
    children: Object.freeze([]),
    test: (c: Claims) => pred(get(c)),
  });
}

function requireNonEmptyString(op: string, value: unknown, path: string, issues: Issues): value is string {
  if (typeof value !== 'string') {
    issues.push({ path, message: `${op} takes a string` });
    return false;
  }
  if (value === '') {
    issues.push({ path, message: `empty value: ${op} "" would be meaningless` });
    return false;
  }
  return true;
}

function requireScalar(op: string, value: unknown, path: string, issues: Issues): value is Scalar {
  if (!isScalar(value)) {
    issues.push({ path, message: `${op} takes a string, number or boolean` });
    return false;
  }
  if (value === '') {
    issues.push({ path, message: `empty value: ${op} "" would be meaningless` });
    return false;
  }
  return true;
}

function compileOperator(op: Operator, value: unknown, path: string, issues: Issues): OperatorCheck | undefined {
  switch (op) {
    case 'equals': {
      if (!requireScalar(op, value, path, issues)) return undefined;
      return { pred: (v) => v === value, label: `equals ${show(value)}` };
    }
    case 'contains': {
      if (!requireScalar(op, value, path, issues)) return undefined;
      return { pred: (v) => Array.isArray(v) && v.includes(value), label: `contains ${show(value)}` };
    }
    case 'in': {
      if (!Array.isArray(value)) {
        issues.push({ path, message: 'in takes a non-empty list of strings, numbers or booleans' });
        return undefined;
      }
      if (value.length === 0) {
        issues.push({ path, message: 'empty list: in [] would never match' });
        return undefined;
      }
      let ok = true;
      value.forEach((v, i) => {
        if (!requireScalar('in', v, childPath(path, i), issues)) ok = false;
      });
      if (!ok) return undefined;
      const set = new Set<unknown>(value);
      return {
        // A Set compares with SameValueZero: type-strict, and objects/arrays are never members.
        pred: (v) => set.has(v),
        label: `in [${(value as Scalar[]).map(show).join(', ')}]`,
      };
    }
    case 'startsWith': {
      if (!requireNonEmptyString(op, value, path, issues)) return undefined;
      return { pred: (v) => typeof v === 'string' && v.startsWith(value), label: `startsWith ${show(value)}` };
    }
    case 'endsWith': {
      if (!requireNonEmptyString(op, value, path, issues)) return undefined;
      // `endsWith: "@example.com"` is how people say "from our domain"; a claim with two "@"
      // (a@evil.com@example.com) is not an address in that domain, so it never passes.
      const guardAt = value.includes('@');
      return {
        pred: (v) => typeof v === 'string' && v.endsWith(value) && !(guardAt && v.indexOf('@') !== v.lastIndexOf('@')),
        label: `endsWith ${show(value)}`,
      };
    }
    case 'matches': {
      if (!requireNonEmptyString(op, value, path, issues)) return undefined;
      try {
        // Validate the pattern on its own first: `a)|(b` is invalid alone but "valid" once wrapped.
        new RegExp(value, 'u');
      } catch (err) {
        issues.push({ path, message: `invalid regular expression: ${(err as Error).message}` });
        return undefined;
      }
      if (!safeRegex(value)) {
        issues.push({
          path,
          message: `regular expression /${value}/ may backtrack catastrophically (nested or too many repetitions); simplify it`,
        });
        return undefined;
      }
      const re = new RegExp(`^(?:${value})$`, 'u');
      return {
        pred: (v) => typeof v === 'string' && v.length <= MAX_MATCH_LENGTH && re.test(v),
        label: `matches /${value}/`,
      };
    }
    case 'exists': {
      if (typeof value !== 'boolean') {
        issues.push({ path, message: 'exists takes true or false' });
        return undefined;
      }
      return value
        ? { pred: (v) => v !== undefined && v !== null, label: 'exists' }
        : { pred: (v) => v === undefined || v === null, label: 'is absent' };
    }
  }
}

// ---- explanation (CLI `explain`, debug logs): off the hot path, allocates freely -------------

/** Evaluates every node (no short-circuit) so the trace shows why each branch passed or failed. */
export function explainRule(rule: CompiledRule, claims: Claims, provider?: string): RuleTrace {
  if (rule.kind === 'leaf') return { label: rule.label, passed: rule.test(claims, provider) };
  const children = rule.children.map((c) => explainRule(c, claims, provider));
  const passed =
    rule.kind === 'all' ? children.every((c) => c.passed) : rule.kind === 'any' ? children.some((c) => c.passed) : !children[0]!.passed;
  return { label: rule.label, passed, children };
}

/** An indented tree, one node a line, `✓` passed / `✗` failed. */
export function formatTrace(trace: RuleTrace): string {
  const lines: string[] = [];
  const walk = (t: RuleTrace, indent: string): void => {
    lines.push(`${indent}${t.passed ? '✓' : '✗'} ${t.label}`);
    for (const c of t.children ?? []) walk(c, `${indent}  `);
  };
  walk(trace, '');
  return lines.join('\n');
}
