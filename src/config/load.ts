// Boot stage 1: read the YAML file and resolve `${VAR}` / `${VAR:-default}` from the environment.
//
// Substitution is done without letting a value change the YAML's structure: every `${...}` in the
// raw text is first swapped for an inert token, the YAML is parsed, and only then are tokens in
// string scalars replaced by the environment's values. So a secret containing `: ` or a newline
// stays one string, and `secrets: [${SESSION_SECRET}]` (a flow sequence, where `{` is syntax)
// parses as the contract shows it.
import { parseDocument } from 'yaml';
import { childPath, type Issues } from './issues.js';

const REF = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface EnvRef { name: string; fallback: string | undefined }

export interface ParsedYaml { value: unknown; issues: Issues }

/** Parses YAML text, then substitutes environment references in every string scalar. */
export function parseConfigText(text: string, env: Record<string, string | undefined>): ParsedYaml {
  const issues: Issues = [];
  const refs: EnvRef[] = [];
  const token = `__portcullis_env_${Math.random().toString(36).slice(2)}_`;
  const tokenized = text.replace(REF, (whole, name: string | undefined, fallback: string | undefined) => {
    if (whole === '$$') return '$$';
    refs.push({ name: name!, fallback });
    return `${token}${refs.length - 1}__`;
  });
  const doc = parseDocument(tokenized, { prettyErrors: false, uniqueKeys: true });
  for (const err of doc.errors) {
    const line = err.linePos?.[0];
    issues.push({ path: line ? `line ${line.line}:${line.col}` : '', message: `YAML: ${err.message.split('\n')[0]}` });
  }
  if (doc.errors.length > 0) return { value: undefined, issues };
  // One pass, so a `$$` inside an environment value is left as it is.
  const tokenRe = new RegExp(`\\$\\$|${token}(\\d+)__`, 'g');
  const resolve = (s: string, path: string): string =>
    s.replace(tokenRe, (whole, i: string | undefined) => {
      if (i === undefined) return '$';
      const ref = refs[Number(i)]!;
      const v = env[ref.name];
      if (v !== undefined && v !== '') return v;
      if (ref.fallback !== undefined) return ref.fallback;
      issues.push({ path, message: `environment variable ${ref.name} is not set (use \${${ref.name}:-default} for a default)` });
      return '';
    });
  const walk = (node: unknown, path: string): unknown => {
    if (typeof node === 'string') return resolve(node, path);
    if (Array.isArray(node)) return node.map((v, i) => walk(v, childPath(path, i)));
    if (node && typeof node === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(node)) out[k] = walk(v, childPath(path, k));
      return out;
    }
    return node;
  };
  return { value: walk(doc.toJS(), ''), issues };
}
