// Session stage, boot half: which claims a session keeps. A user in 600 Active Directory groups
// brings kilobytes of claims the configuration never reads; the cookie store cannot carry them all.
// Computed once from the configuration; the session manager applies it to every record it writes
// (sign-in and refresh), whichever store keeps it, so rules and headers see the same claims on both.
import type { Config, RouteConfig } from '../config/index.js';
import type { CompiledRule } from '../policy/rules.js';
import { DEFAULT_IDENTITY_HEADERS } from '../identity/headers.js';
import type { Claims } from './record.js';

/**
 * What the session itself and Portcullis's own features read, whatever the routes say: identity
 * and session bookkeeping (refresh compares iss/sub/aud/azp; back-channel logout finds `sid`),
 * the sign-out page and audit log (email, preferred_username), and /oauth2/userinfo's answer.
 */
export const SESSION_CLAIMS: readonly string[] = [
  'sub', 'sid', 'iss', 'aud', 'azp', 'exp', 'iat', 'auth_time', 'acr', 'amr',
  'email', 'email_verified', 'name', 'preferred_username', 'groups',
  // Entra ID's group overage marker: a refresh without a new ID token still knows the groups come
  // from Microsoft Graph (signin/group-overage.ts), and fetches them again.
  '_claim_names',
];

/** Grafana auth.proxy preset (identity/headers.ts GRAFANA_PRESET): its templates' claims. */
const GRAFANA_CLAIMS = ['preferred_username', 'email', 'name', 'sub'];
/** X-Portcullis-Assertion (identity/assertion.ts) copies these into the JWT it signs. */
const ASSERTION_CLAIMS = ['sub', 'email', 'preferred_username', 'groups'];

/** The top-level claims a compiled rule or template reads; `all` when it looks at the whole object. */
interface Reads { names: Set<string>; all: boolean }

/**
 * Runs `read` against a claims object that has no properties and records every top-level name it
 * asks for. Rules and templates are compiled closures over claim paths (policy/claims.ts), so this
 * finds exactly the first segment of each path, whatever the operator or template text. Anything
 * that enumerates the claims (an "all claims" renderer) sets `all`: then nothing is dropped.
 */
function probe(read: (c: Claims) => unknown, into: Reads): void {
  const note = (key: string | symbol) => { if (typeof key === 'string') into.names.add(key); };
  const spy = new Proxy(Object.create(null) as Claims, {
    get: (_t, key) => { note(key); return undefined; },
    has: (_t, key) => { note(key); return false; },
    getOwnPropertyDescriptor: (_t, key) => { note(key); return undefined; },
    ownKeys: () => { into.all = true; return []; },
  });
  try {
    read(spy);
  } catch {
    into.all = true; // unknown reader: keep everything rather than guess
  }
}

/** Every leaf of a rule tree is probed on its own (all/any short-circuit would hide some). */
function probeRule(rule: CompiledRule, into: Reads): void {
  if (rule.kind === 'leaf') probe(rule.test, into);
  else for (const child of rule.children) probeRule(child, into);
}

function probeRoute(r: RouteConfig, into: Reads): void {
  if (r.allow) probeRule(r.allow, into);
  for (const g of r.grafanaRoles) probeRule(g.rule, into);
  for (const h of r.headers) probe(h.template, into);
  if (r.preset === 'grafana') for (const c of GRAFANA_CLAIMS) into.names.add(c);
  if (r.assertion) for (const c of ASSERTION_CLAIMS) into.names.add(c);
}

/**
 * The top-level claims a session keeps under this configuration, or undefined when every claim
 * must be kept (something reads the claims as a whole).
 */
export function claimsToKeep(config: Pick<Config, 'routes'>): ReadonlySet<string> | undefined {
  const reads: Reads = { names: new Set(SESSION_CLAIMS), all: false };
  for (const h of DEFAULT_IDENTITY_HEADERS) reads.names.add(h.claim[0]!);
  for (const r of config.routes) probeRoute(r, reads);
  return reads.all ? undefined : reads.names;
}

/** A claims compactor for the session manager: a copy with only the kept top-level claims. */
export function claimCompactor(keep: ReadonlySet<string> | undefined): (claims: Claims) => Claims {
  if (!keep) return (claims) => claims;
  return (claims) => {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(claims)) if (keep.has(key)) out[key] = claims[key];
    return out;
  };
}
