// Boot: config file → environment substitution (load.ts) → schema (schema.ts, validate.ts) →
// semantic checks (semantic.ts) → compile (compile.ts) → frozen runtime Config, or every issue
// found by all of them at once, each with its key path.
import { readFileSync } from 'node:fs';
import { parseConfigText } from './load.js';
import { checkSchema } from './validate.js';
import { checkSemantics } from './semantic.js';
import { compileConfig, type Config } from './compile.js';
import type { ConfigIssue } from './issues.js';

export type { Config, ProviderConfig, RouteConfig } from './compile.js';
export type { ConfigInput, ProviderInput, RouteInput } from './schema.js';
export type { ConfigIssue } from './issues.js';

export type ConfigResult = { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] };

export interface CheckOptions {
  /** Reads `*File` secrets; default fs.readFileSync. */
  readFile?: (path: string) => string;
}

/**
 * Checks a parsed (and substituted) config and compiles it. The later stages run even when an
 * earlier one found problems — on what passed — so `portcullis check` lists everything at once.
 */
export function validateConfig(raw: unknown, opts: CheckOptions = {}): ConfigResult {
  const schema = checkSchema(raw);
  const semantic = checkSemantics(schema.input, schema.failed);
  const failed = (path: string, within?: boolean) => schema.failed(path, within) || semantic.some((i) => i.path === path);
  const compiled = compileConfig(schema.input, { readFile: opts.readFile, failed });
  // In key-path order, so a section's problems are listed together (routes[2] after routes[1]).
  const issues = [...schema.issues, ...semantic, ...compiled.issues].sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
  return issues.length === 0 && compiled.config ? { ok: true, config: compiled.config } : { ok: false, issues };
}

/** Validates an already-parsed config object (used by tests, the Helm chart checks and hot reload). */
export function validateConfigObject(
  raw: unknown,
  env: Record<string, string | undefined> = process.env,
  opts: CheckOptions = {},
): ConfigResult {
  // Substitution is defined on text; an object's strings go through the same code path.
  const { value, issues } = parseConfigText(JSON.stringify(raw ?? {}), env);
  if (issues.length) return { ok: false, issues };
  return validateConfig(value, opts);
}

/** Reads, substitutes and validates a YAML config file. */
export function loadConfigFile(file: string, env: Record<string, string | undefined> = process.env): ConfigResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, issues: [{ path: '', message: `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}` }] };
  }
  const parsed = parseConfigText(text, env);
  const r = validateConfig(parsed.value);
  if (parsed.issues.length === 0) return r;
  return { ok: false, issues: [...parsed.issues, ...(r.ok ? [] : r.issues)] };
}

/** `path: message` lines, as `portcullis check` prints them. */
export function formatIssues(issues: ConfigIssue[]): string {
  return issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('\n');
}
