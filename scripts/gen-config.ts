// `npm run gen:config`: writes what follows from the ONE config schema (src/config/schema.ts):
//   - the `config` subtree (and the definitions it refers to) of helm/portcullis/values.schema.json;
//     the rest of that file — the chart's own values — stays hand-written and is kept as it is,
//     but for the provider id pattern of secrets.clientSecrets' keys;
//   - docs/configuration.md, the configuration reference.
// test/config/generated.test.ts regenerates both in memory and fails when a committed copy is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CONFIG_DEFINITIONS, CONFIG_GROUPS, ConfigSchema, DURATION_PATTERN, PROVIDER_ID_PATTERN } from '../src/config/schema.js';

type Json = Record<string, unknown>;

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const HELM_SCHEMA = join(repoRoot, 'helm', 'portcullis', 'values.schema.json');
export const CONFIG_DOC = join(repoRoot, 'docs', 'configuration.md');

/** The schema as plain JSON (TypeBox's symbol keys dropped). */
function plain<T>(v: T): Json {
  return JSON.parse(JSON.stringify(v)) as Json;
}

// ---------------------------------------------------------------------------------------------
// Helm

/**
 * Keys the chart sets itself (from its ports and its Secret): in values they are an error, so a
 * value written there cannot silently lose to the chart's.
 */
const CHART_OWNED: Record<string, string> = {
  listen: 'Set by the chart from containerPorts.http.',
  metrics: 'Set by the chart from containerPorts.metrics.',
  'oidc.clientSecret': 'Set secrets.clientSecret (config.oidc a mapping) or secrets.clientSecrets.<id> (a list), or secrets.existingSecret; the chart mounts it as a file.',
  'oidc.clientSecretFile': "Set by the chart: the mounted Secret's client-secret file (client-secret-<id> for each provider of a list).",
  'session.secrets': 'Set secrets.sessionSecrets or secrets.existingSecret; the chart mounts them as a file.',
  'session.secretsFile': "Set by the chart: the mounted Secret's session-secrets file.",
};

/** A `${VAR}` reference: Portcullis substitutes it at start, so values may hold one where a number or a boolean goes. */
const ENV_REF = {
  type: 'string',
  pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}',
  description: 'A ${VAR} or ${VAR:-default} reference, replaced by Portcullis from the environment at start.',
};

/** True for a value Helm would refuse as text although `${VAR}` could stand there. */
function constrained(s: Json): boolean {
  if (s.anyOf || s.const !== undefined || s.enum) return true;
  if (s.type === 'string') return s.pattern !== undefined;
  return s.type === 'boolean' || s.type === 'integer' || s.type === 'number';
}

/** The chart's view of one schema node: defaults do not make keys required; `${VAR}` allowed. */
function forHelm(s: Json, path: string, acceptRef = true): Json {
  if (CHART_OWNED[path] !== undefined) return { not: {}, description: CHART_OWNED[path] };
  if (s.$ref !== undefined) return s;
  // `oidc`, a mapping (one provider) or a list: the chart mounts a client secret for each provider
  // (secrets.clientSecret, or secrets.clientSecrets.<id>) and points its clientSecretFile at it, so
  // in both forms a provider's keys are checked as the mapping's, chart-owned ones refused (the
  // items' paths are `oidc.…` here, not `oidc[].…`). No `${VAR}` for the whole of it.
  if (path === 'oidc' && s.anyOf) {
    const anyOf = (s.anyOf as Json[]).map((b) => (b.type === 'array' ? { ...b, items: forHelm(b.items as Json, path) } : forHelm(b, path, false)));
    return { ...s, description: `${String(s.description)} With the chart, a mapping's client secret is secrets.clientSecret, each listed provider's secrets.clientSecrets.<id>.`, anyOf };
  }
  const out: Json = { ...s };
  if (s.type === 'object' && s.properties) {
    const props = s.properties as Record<string, Json>;
    out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, forHelm(v, path ? `${path}.${k}` : k)]));
    const required = ((s.required as string[] | undefined) ?? []).filter((k) => props[k]!.default === undefined && CHART_OWNED[path ? `${path}.${k}` : k] === undefined);
    if (required.length > 0) out.required = required; else delete out.required;
  }
  if (s.type === 'array' && s.items) out.items = forHelm(s.items as Json, `${path}[]`);
  if (s.anyOf) {
    out.anyOf = [...(s.anyOf as Json[]).map((b) => forHelm(b, path, false)), { $ref: '#/definitions/envRef' }];
    return out;
  }
  if (acceptRef && constrained(s)) {
    // Keep the annotations on the outside; the checks move into the first branch.
    const { description, default: def, ...check } = out;
    return { ...(description === undefined ? {} : { description }), ...(def === undefined ? {} : { default: def }), anyOf: [check, { $ref: '#/definitions/envRef' }] };
  }
  return out;
}

/** values.schema.json with its `config` subtree and generated definitions replaced. */
export function helmSchema(current: Json): Json {
  const schema = plain(ConfigSchema);
  delete schema.definitions;
  delete schema.title;
  const config = forHelm(schema, '');
  config.description = 'The Portcullis config file, generated from src/config/schema.ts by `npm run gen:config` (see docs/configuration.md). Keys the chart sets itself are refused here.';
  const properties: Json = { ...(current.properties as Json), config };
  // secrets.clientSecrets is the chart's own value, but its keys are provider ids: the schema's pattern.
  const secrets = properties.secrets as { properties: Record<string, Json> };
  secrets.properties.clientSecrets = { ...secrets.properties.clientSecrets, propertyNames: { pattern: PROVIDER_ID_PATTERN } };
  const definitions = { ...(current.definitions as Json), ...plain(CONFIG_DEFINITIONS), envRef: ENV_REF };
  return { ...current, definitions, properties };
}

// ---------------------------------------------------------------------------------------------
// docs/configuration.md

const INTRO = `<!-- Generated from src/config/schema.ts by \`npm run gen:config\`; do not edit by hand. -->

# Configuration reference

Portcullis reads one YAML file (\`--config FILE\`, \`$PORTCULLIS_CONFIG\`, default
\`config/portcullis.yaml\`); \`portcullis check --config FILE\` validates it and prints every problem
with its key path. A complete, commented example is \`config/portcullis.yaml\`.

- \`\${VAR}\` and \`\${VAR:-default}\` anywhere in a value are replaced from the environment (an unset
  variable without a default is an error naming it; \`$$\` is a literal \`$\`). Substitution never
  changes the YAML's structure: a value containing \`: \` or a newline stays one string. A whole
  number or \`true\`/\`false\` substituted into a key that takes one is read as one (\`port: \${PORT}\`).
- Durations are \`250ms\`, \`30s\`, \`15m\`, \`8h\`, \`7d\`, combinable (\`1h30m\`).
- **Unknown keys are errors**, with a did-you-mean suggestion. An empty value (\`key:\`) means the
  default — except inside a route, where it is an error (an empty \`allow:\` or \`match:\` must not
  let everyone in).
- Secrets can be read from files (\`oidc.clientSecretFile\`, \`session.secretsFile\`, \`admin.tokenFile\`), as Kubernetes mounts them.

How the settings work together is explained in [identity.md](identity.md) (claim rules, identity
headers, assertions, bearer tokens), [sessions.md](sessions.md) (cookies, Redis, key rotation,
revocation), [operations.md](operations.md) (workers, reload, metrics, admin endpoints) and
[security.md](security.md) (what each protection guards against).

This page is generated from the schema Portcullis validates with, as is the Helm chart's
\`values.schema.json\`: after changing \`src/config/schema.ts\`, run \`npm run gen:config\`.
`;

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function yamlish(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(yamlish).join(', ')}]`;
  if (v !== null && typeof v === 'object') return '{}';
  return String(v);
}

/** The type column: `duration`, `integer 0–65535`, `list of string`, `one of: a, b`. */
function typeOf(s: Json): string {
  if (s.$ref === '#/definitions/claimRule') return '[claim rule](#claim-rules)';
  if (s.anyOf) {
    const branches = s.anyOf as Json[];
    if (branches.every((b) => b.const !== undefined)) return `one of: ${branches.map((b) => `\`${String(b.const)}\``).join(', ')}`;
    return branches.map(typeOf).join(' or ');
  }
  if (s.const !== undefined) return `\`${String(s.const)}\``;
  if (s.type === 'string' && s.pattern === DURATION_PATTERN) return 'duration';
  if (s.type === 'integer') return s.minimum !== undefined && s.maximum !== undefined ? `integer ${String(s.minimum)}–${String(s.maximum)}` : 'integer';
  if (s.type === 'array') return `list of ${typeOf(s.items as Json)}`;
  if (s.type === 'object') return s.patternProperties ? 'mapping of name → template' : 'mapping';
  return String(s.type);
}

function defaultOf(s: Json, required: boolean): string {
  if (s.default !== undefined) {
    const d = yamlish(s.default);
    return d === '{}' ? '—' : `\`${d}\``;
  }
  return required ? '**required**' : '—';
}

/** One row per key, depth first; an object's keys (also a union's mapping branch) follow it. */
function rows(s: Json, path: string, required: boolean, out: string[]): void {
  out.push(`| \`${path}\` | ${cell(typeOf(s))} | ${defaultOf(s, required)} | ${cell(String(s.description ?? ''))} |`);
  const obj = s.type === 'object' ? s : (s.anyOf as Json[] | undefined)?.find((b) => b.type === 'object');
  const arr = s.type === 'array' ? s.items as Json : undefined;
  const target = obj ?? (arr?.type === 'object' ? arr : undefined);
  if (!target?.properties) return;
  const prefix = arr ? `${path}[]` : path;
  const req = new Set((target.required as string[] | undefined) ?? []);
  for (const [k, v] of Object.entries(target.properties as Record<string, Json>)) {
    rows(v, `${prefix}.${k}`, req.has(k) && (v.default === undefined), out);
  }
}

export function configurationDoc(): string {
  const parts = [INTRO];
  const rootRequired = new Set((plain(ConfigSchema).required as string[]) ?? []);
  for (const group of CONFIG_GROUPS) {
    parts.push(`## ${group.title}\n`);
    const out = ['| key | type | default | meaning |', '| --- | --- | --- | --- |'];
    for (const [key, schema] of Object.entries(plain(group.keys))) {
      const s = schema as Json;
      rows(s, key, rootRequired.has(key) && s.default === undefined, out);
    }
    parts.push(`${out.join('\n')}\n`);
  }
  const rule = plain(CONFIG_DEFINITIONS.claimRule);
  const leaf = (rule.anyOf as Json[]).find((b) => (b.properties as Json).claim) as Json;
  const ops = Object.entries(leaf.properties as Record<string, Json>);
  parts.push(`## Claim rules

\`routes[].allow\` and \`routes[].grafanaRoles.*\` take one claim rule. ${cell(String(rule.description))} The semantics — missing
claims, type-strict comparison, how \`matches\` anchors — are in [identity.md](identity.md).

| key | type | meaning |
| --- | --- | --- |
${(rule.anyOf as Json[]).filter((b) => b !== leaf).map((b) => {
    const [k, v] = Object.entries(b.properties as Record<string, Json>)[0]!;
    return `| \`${k}\` | ${v.type === 'array' ? 'list of rules' : 'rule'} | ${cell(String(b.description))} |`;
  }).join('\n')}
${ops.map(([k, v]) => `| \`${k}\` | ${cell(typeOf(v))} | ${cell(String(v.description ?? ''))} |`).join('\n')}
`);
  return `${parts.join('\n').trimEnd()}\n`;
}

export function helmSchemaText(): string {
  return `${JSON.stringify(helmSchema(JSON.parse(readFileSync(HELM_SCHEMA, 'utf8')) as Json), null, 2)}\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(HELM_SCHEMA, helmSchemaText());
  writeFileSync(CONFIG_DOC, configurationDoc());
  console.log('wrote helm/portcullis/values.schema.json (config subtree) and docs/configuration.md');
}
