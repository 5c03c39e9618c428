// Boot: config file → environment substitution → validation → frozen Config (or every issue at once).
import { readFileSync } from 'node:fs';
import { parseConfigText } from './load.js';
import { validateConfig, type Config } from './validate.js';
import type { ConfigIssue } from './issues.js';

export type { Config, RouteConfig } from './validate.js';
export type { ConfigIssue } from './issues.js';

export type ConfigResult = { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] };

const readSecretFile = (path: string): string => readFileSync(path, 'utf8');

/** Validates an already-parsed config object (used by tests, the Helm chart checks and hot reload). */
export function validateConfigObject(
  raw: unknown,
  env: Record<string, string | undefined> = process.env,
  opts: { readFile?: (path: string) => string } = {},
): ConfigResult {
  // Substitution is defined on text; an object's strings go through the same code path.
  const { value, issues } = parseConfigText(JSON.stringify(raw ?? {}), env);
  if (issues.length) return { ok: false, issues };
  const r = validateConfig(value, { readFile: opts.readFile ?? readSecretFile });
  return r.config ? { ok: true, config: r.config } : { ok: false, issues: r.issues };
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
  const r = validateConfig(parsed.value, { readFile: readSecretFile });
  const issues = [...parsed.issues, ...r.issues];
  if (issues.length || !r.config) return { ok: false, issues };
  return { ok: true, config: r.config };
}

/** `path: message` lines, as `portcullis check` prints them. */
export function formatIssues(issues: ConfigIssue[]): string {
  return issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('\n');
}
