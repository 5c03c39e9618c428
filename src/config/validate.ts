// Config, boot stage 2 of 3: the parsed YAML checked against the ONE schema (schema.ts) with ajv,
// every problem translated to a `{ path, message }` issue with its key path, a did-you-mean for
// typos, and plain words instead of ajv's ("must be true or false (got "yes")").
//
// The result is always a well-typed ConfigInput: a value that failed is dropped (its default takes
// its place) and a missing required value gets an empty placeholder, so the semantic checks and
// the compile step after this can still run and report THEIR problems in the same pass. They skip
// what already failed here (`failed(path)`), so nothing is reported twice. Claim rules are the
// exception: their schema errors (an anyOf over four shapes) are poor reading, so the rule compiler
// (policy/rules.ts) reports them instead, precisely.
import { Ajv, Value, type ErrorObject } from './typebox.js';
import { CONFIG_DEFINITIONS, ConfigSchema, keyPaths, PATTERN_MESSAGES, ProviderListItemSchema, ProviderSchema, type ConfigInput } from './schema.js';
import { childPath, suggest, type Issues } from './issues.js';

type Json = Record<string, unknown>;
type Schema = Json;

export interface SchemaCheck {
  /** The config with defaults applied; values that failed replaced by their defaults or placeholders. */
  input: ConfigInput;
  issues: Issues;
  /** True when the schema already reported a problem at this key path or above it (`within`: or below it). */
  failed(path: string, within?: boolean): boolean;
}

// Compiled once, on first use (a few ms at boot; none for commands that never validate).
let compiled: ReturnType<InstanceType<typeof Ajv>['compile']> | undefined;
function schemaValidator(): ReturnType<InstanceType<typeof Ajv>['compile']> {
  // strict: a misspelt keyword in schema.ts is an error at once, not a check that silently never runs.
  // verbose: errors carry the schema node and the data, for messages and for spotting rule errors.
  compiled ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true }).compile(ConfigSchema);
  return compiled;
}

/** Every node of the claim-rule definition: errors raised by these are left to the rule compiler. */
const RULE_NODES = new WeakSet<object>();
(function mark(node: unknown): void {
  if (!node || typeof node !== 'object' || RULE_NODES.has(node)) return;
  RULE_NODES.add(node);
  for (const v of Object.values(node)) mark(v);
})(CONFIG_DEFINITIONS.claimRule);

export function checkSchema(raw: unknown): SchemaCheck {
  const issues: Issues = [];
  const failedPaths: string[] = [];
  const fail = (path: string, message: string) => { issues.push({ path, message }); failedPaths.push(path); };

  let data: unknown = raw === undefined || raw === null ? {} : structuredClone(raw);
  if (!isObject(data)) {
    fail('', `the config must be a mapping of keys (got ${describe(data, false)})`);
    data = {};
  }
  const validate = schemaValidator();
  const inFailed = (path: string) => failedPaths.some((f) => f === '' || isAtOrUnder(path, f));
  const report = (e: ErrorObject): void => {
    const path = displayPath(e.instancePath);
    if (e.keyword === 'additionalProperties') {
      const key = String(e.params.additionalProperty);
      const known = Object.keys((e.parentSchema as Schema).properties ?? {});
      fail(childPath(path, key), `unknown key${elsewhere(key, path) || suggest(key, known)}`);
      remove(data, [...pointer(e.instancePath), key]);
    } else if (e.keyword === 'required') {
      const key = childPath(path, String(e.params.missingProperty));
      if (!inFailed(key)) fail(key, 'is required');
    } else if (!inFailed(path)) {
      fail(path, message(e));
      remove(data, pointer(e.instancePath));
    }
  };

  // Pass 1, before defaults: wrong values are reported and dropped. (Defaults are not merged into
  // a value of the wrong type — TypeBox would give `listen: [a, list]` a `port`.) Keys left out
  // wait for pass 2: most of them have a default.
  data = prepare(ConfigSchema, data);
  if (!validate(data)) errorsOf(validate.errors).filter((e) => e.keyword !== 'required').forEach(report);
  // Pass 2, defaults in place (`metrics: { prot: 1 }` has lost `prot` and gets the default host and
  // port): what is still missing was really left out.
  data = providerDefaults(Value.Default(ConfigSchema, data));
  if (!validate(data)) {
    errorsOf(validate.errors).forEach(report);
    data = fillRequired(ConfigSchema, providerDefaults(Value.Default(ConfigSchema, data)));
  }
  return {
    input: data as ConfigInput,
    issues,
    failed: (path, within = false) => failedPaths.some((f) => f === '' || isAtOrUnder(path, f) || (within && isAtOrUnder(f, path))),
  };
}

/** Every key path of the schema, for keys written in the wrong section. */
const KEY_PATHS = keyPaths(ConfigSchema);

/**
 * ` — it belongs at oidc.issuer` when the key exists in another section: a route's keys are looked
 * for in routes only, the file's sections in the sections only.
 */
function elsewhere(key: string, where: string): string {
  const here = where.replace(/\[\d+\]/g, '[]');
  const inRoute = (p: string) => p.startsWith('routes[]');
  const found = KEY_PATHS.filter((p) => p.split('.').pop() === key && inRoute(p) === inRoute(here) && p !== (here ? `${here}.${key}` : key));
  return found.length > 0 && found.length <= 2 ? ` — it belongs at ${found.join(' or ')}` : '';
}

// ---------------------------------------------------------------------------------------------
// Before validation: what the YAML and `${VAR}` substitution produce, read as the schema means it.

/**
 * Empty YAML values (`key:` = null) mean "not set" in the file's sections, as they always have
 * (not in a route or a rule: see below); text where the schema
 * wants a boolean or a whole number is read as one (`${VAR}` substitution yields text: `port:
 * ${PORT}`), and a YAML number or boolean where only text is allowed is that text (`clientId:
 * 12345`). Nothing else is converted: `port: true` stays an error. Claim rules are left alone:
 * their values are compared type-strictly.
 */
function prepare(schema: Schema, value: unknown, inList = false): unknown {
  if (schema.$ref !== undefined) return value;
  const branches = (schema.anyOf as Schema[] | undefined) ?? [schema];
  const types = new Set(branches.map((b) => b.type as string | undefined));
  if (typeof value === 'string' && !types.has('string')) {
    if (types.has('boolean') && (value === 'true' || value === 'false')) return value === 'true';
    if (types.has('integer') && /^\d+$/.test(value)) return Number(value);
    return value;
  }
  if ((typeof value === 'number' || typeof value === 'boolean') && types.size === 1 && types.has('string') && branches.every((b) => b.const === undefined)) {
    return String(value);
  }
  if (Array.isArray(value)) {
    const arr = branches.find((b) => b.type === 'array');
    return arr ? value.map((v) => prepare(arr.items as Schema, v, true)) : value;
  }
  if (isObject(value)) {
    const obj = branches.find((b) => b.type === 'object');
    if (!obj) return value;
    const props = obj.properties as Record<string, Schema> | undefined;
    const out: Json = {};
    for (const [k, v] of Object.entries(value)) {
      const sub = props?.[k] ?? (obj.patternProperties ? Object.values(obj.patternProperties as Record<string, Schema>)[0] : undefined);
      // Inside a route, and for a claim rule anywhere, an empty value is an error, not "unset": an
      // empty `allow:` must not mean "any signed-in user", nor an empty `match:` "every request".
      if (props && v === null && !inList && sub?.$ref === undefined) continue;
      out[k] = sub ? prepare(sub, v, inList) : v;
    }
    return out;
  }
  return value;
}

/**
 * `oidc` is a union (one provider's mapping, or a list of them). TypeBox fills a union's defaults
 * only into a value that passes with them, so a provider with a problem would reach the later
 * stages without its defaults: each provider gets them here.
 */
function providerDefaults(data: unknown): unknown {
  if (!isObject(data)) return data;
  const o = data.oidc;
  if (isObject(o)) data.oidc = Value.Default(ProviderSchema, o);
  else if (Array.isArray(o)) data.oidc = o.map((p: unknown) => (isObject(p) ? Value.Default(ProviderListItemSchema, p) : p));
  return data;
}

/**
 * Missing required values and dropped list items (already reported) get an empty placeholder of
 * their type, so the later stages read a complete ConfigInput.
 */
function fillRequired(schema: Schema, value: unknown): unknown {
  if (schema.anyOf && (value !== undefined || schema.default === undefined)) {
    // A union with a mapping or list branch (`oidc`): the branch the value has the shape of; missing, the mapping.
    const branch = (schema.anyOf as Schema[]).find((b) => (value === undefined ? b.type === 'object' : (b.type === 'object' || b.type === 'array') && fits(b, value)));
    if (branch) return fillRequired(branch, value);
  }
  if (value === undefined) value = placeholder(schema);
  if (Array.isArray(value) && schema.type === 'array') return value.map((v) => fillRequired(schema.items as Schema, v));
  if (!isObject(value) || schema.type !== 'object' || !schema.properties) return value;
  const props = schema.properties as Record<string, Schema>;
  for (const key of (schema.required as string[] | undefined) ?? []) value[key] ??= placeholder(props[key]!);
  for (const [k, v] of Object.entries(value)) if (props[k]) value[k] = fillRequired(props[k], v);
  return value;
}

function placeholder(schema: Schema): unknown {
  if (schema.default !== undefined) return structuredClone(schema.default);
  switch (schema.type) {
    case 'object': return Value.Default(schema as never, {});
    case 'array': return [];
    case 'string': return '';
    default: return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// ajv errors → issues

/** The errors worth reporting, children before parents (a failing value is dropped after what was inside it). */
function errorsOf(errors: ErrorObject[] | null | undefined): ErrorObject[] {
  return unionsResolved(errors ?? [])
    .filter((e) => !RULE_NODES.has(e.parentSchema as object))
    .sort((a, b) => b.instancePath.length - a.instancePath.length);
}

/**
 * A union (`anyOf`) that failed reports every branch's complaint. Keep only the branch the value
 * was clearly meant for (the one of its type: a mapping for `metrics: { port }`), else say once
 * what is accepted: `must be true or false, or a list (got 3)`.
 */
function unionsResolved(errors: ErrorObject[]): ErrorObject[] {
  let out = errors;
  const unions = errors.filter((e) => e.keyword === 'anyOf' && !RULE_NODES.has(e.parentSchema as object))
    .sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const u of unions) {
    if (!out.includes(u)) continue;
    const prefix = `${u.schemaPath}/`;
    const branches = (u.parentSchema as Schema).anyOf as Schema[];
    const fitting = branches.map((b, i) => [b, i] as const).filter(([b]) => b.const === undefined && fits(b, u.data));
    const inUnion = (e: ErrorObject) => e.instancePath.startsWith(u.instancePath) && e.schemaPath.startsWith(prefix);
    if (fitting.length === 1) {
      const keep = `${prefix}${fitting[0]![1]}/`;
      out = out.filter((e) => e !== u && (!inUnion(e) || e.schemaPath.startsWith(keep)));
    } else {
      out = out.filter((e) => !inUnion(e));
    }
  }
  return out;
}

function fits(schema: Schema, data: unknown): boolean {
  switch (schema.type) {
    case 'object': return isObject(data);
    case 'array': return Array.isArray(data);
    case 'string': return typeof data === 'string';
    case 'boolean': return typeof data === 'boolean';
    case 'integer': return typeof data === 'number';
    default: return false;
  }
}

/** What a schema accepts, in words: `true or false`, `a whole number from 1 to 64`, `"auto"`. */
function accepted(s: Schema): string {
  if (s.anyOf) {
    const branches = s.anyOf as Schema[];
    if (branches.every((b) => b.const !== undefined)) return `one of ${branches.map((b) => String(b.const)).join(', ')}`;
    return branches.map(accepted).join(', or ');
  }
  if (s.const !== undefined) return typeof s.const === 'string' ? `"${s.const}"` : String(s.const);
  switch (s.type) {
    case 'boolean': return 'true or false';
    case 'integer': return s.minimum !== undefined && s.maximum !== undefined ? `a whole number from ${String(s.minimum)} to ${String(s.maximum)}` : 'a whole number';
    case 'number': return 'a number';
    case 'string': return 'a string';
    case 'array': return 'a list';
    case 'object': return 'a mapping';
    default: return 'something else';
  }
}

function message(e: ErrorObject): string {
  const s = e.parentSchema as Schema;
  const got = ` (got ${describe(e.data, s.writeOnly === true)})`;
  switch (e.keyword) {
    case 'anyOf': {
      const words = accepted(s);
      const consts = (s.anyOf as Schema[]).map((b) => b.const).filter((c): c is string => typeof c === 'string');
      return `must be ${words}${got}${typeof e.data === 'string' && consts.length > 0 ? suggest(e.data, consts) : ''}`;
    }
    case 'const':
      return `must be ${accepted(s)}${got}${typeof e.data === 'string' && typeof s.const === 'string' ? suggest(e.data, [s.const]) : ''}`;
    case 'type': case 'minimum': case 'maximum':
      return `must be ${accepted(s)}${got}`;
    case 'minLength':
      return 'must not be empty';
    case 'minItems':
      return Number(e.params.limit) === 1 ? 'must list at least one entry' : `must list at least ${String(e.params.limit)} entries`;
    case 'pattern':
      return `${PATTERN_MESSAGES[String(e.params.pattern)] ?? `must match ${String(e.params.pattern)}`}${got}`;
    default:
      return `${e.message ?? 'is not valid'}${got}`;
  }
}

/** `/routes/0/match/host` → `routes[0].match.host`, as the issues show key paths. */
function displayPath(instancePath: string): string {
  return pointer(instancePath).reduce<string>((p, seg) => childPath(p, /^\d+$/.test(seg) ? Number(seg) : seg), '');
}

function pointer(instancePath: string): string[] {
  return instancePath === '' ? [] : instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Drops a failed value; in a list it becomes undefined, so later items keep their index. */
function remove(root: unknown, segments: string[]): void {
  if (segments.length === 0) return;
  let node: unknown = root;
  for (const seg of segments.slice(0, -1)) node = (node as Json | undefined)?.[seg];
  const last = segments[segments.length - 1]!;
  if (Array.isArray(node)) node[Number(last)] = undefined;
  else if (isObject(node)) delete node[last];
}

function isAtOrUnder(path: string, top: string): boolean {
  return path === top || path.startsWith(`${top}.`) || path.startsWith(`${top}[`);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as it may appear in a message: short, and never the value of a secret. */
function describe(v: unknown, secret = false): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (secret) return `a ${typeof v}`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}
