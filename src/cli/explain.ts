// Operator tool: `portcullis explain` — which route a URL meets (after normalisation), and whether
// given claims pass its rule, leaf by leaf. Pure: no IdP, no network.
import type { Config } from '../config/index.js';
import { normalizeTarget } from '../routing/normalize.js';
import { compileMatcher } from '../routing/match.js';
import { authorize } from '../policy/decide.js';
import { explainRule, formatTrace } from '../policy/rules.js';
import { describeStepUp, stepUpShortfall } from '../policy/step-up.js';

export interface ExplainResult { exitCode: 0 | 1 | 3; text: string }

/**
 * `provider`: the `oidc` id the claims come from (`--provider`; default the first provider). A
 * route that does not accept it treats the claims as signed out, as the door does.
 */
export function explain(config: Config, url: string, method: string, claims: Record<string, unknown> | undefined, provider?: string): ExplainResult {
  const ids = config.providers.map((p) => p.id);
  if (provider !== undefined && !ids.includes(provider)) {
    return { exitCode: 1, text: `--provider ${JSON.stringify(provider)} is not a configured provider (${ids.join(', ')})` };
  }
  const from = provider ?? ids[0]!;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { exitCode: 1, text: `--url must be an absolute URL like https://apps.example.com/admin (got ${JSON.stringify(url)})` };
  }
  // Keep the path exactly as typed (URL() already resolves dot segments; we want to show ours).
  const rawPath = url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '') || '/';
  const n = normalizeTarget(rawPath.replace(/#.*$/, ''));
  const lines: string[] = [`request:    ${method.toUpperCase()} ${u.host}${rawPath}`];
  if (!n.ok) {
    lines.push(`normalised: rejected with 400 (${n.reason})`, 'decision:   DENY (bad request)');
    return { exitCode: 3, text: lines.join('\n') };
  }
  lines.push(`normalised: ${n.path}${n.query ? `  (query ${n.query} is not used for matching)` : ''}`);
  const idx = compileMatcher(config.routes.map((r) => r.match))(u.host, n.path, method.toUpperCase());
  if (idx < 0) {
    lines.push('route:      none matches → 404', 'decision:   DENY (no matching route)');
    return { exitCode: 3, text: lines.join('\n') };
  }
  const route = config.routes[idx]!;
  const m = route.match;
  lines.push(`route:      #${idx} "${route.name}" (host ${m.host ?? '*'}, path ${m.path}${m.methods ? `, methods ${m.methods.join(',')}` : ''}) → ${route.upstream}`);
  lines.push(`auth:       ${route.auth}`);
  const accepted = route.providers.has(from);
  if (ids.length > 1) lines.push(`providers:  ${[...route.providers].join(', ')}${claims ? ` — claims from ${from}${accepted ? '' : ', which this route does not accept: treated as signed out'}` : ''}`);
  const who = accepted ? claims : undefined;
  const d = authorize(route, who, from);
  if (route.allow) {
    lines.push('rule:');
    const trace = explainRule(route.allow, who ?? {}, from);
    lines.push(...formatTrace(trace).split('\n').map((l) => `  ${l}`));
  } else if (route.auth === 'required') {
    lines.push('rule:       (none: any signed-in user)');
  }
  if (!claims && route.auth === 'required') lines.push('claims:     none given (--claims FILE.json) → treated as signed out');
  // The door's step-up check, on the given claims' acr and auth_time, now.
  const shortfall = route.stepUp && claims && d.allowed ? stepUpShortfall(route.stepUp, claims, Date.now()) : undefined;
  if (route.stepUp) lines.push(`step-up:    ${describeStepUp(route.stepUp)}${claims && d.allowed ? ` — ${shortfall ? `not met (${shortfall === 'acr' ? `acr ${JSON.stringify(claims.acr ?? null)}` : `auth_time ${JSON.stringify(claims.auth_time ?? null)}`})` : 'met'}` : ''}`);
  if (shortfall) {
    lines.push(`decision:   STEP UP (step-up-${shortfall}: a browser is sent to sign in again, other clients get 401 insufficient_user_authentication)`);
    return { exitCode: 3, text: lines.join('\n') };
  }
  lines.push(`decision:   ${d.allowed ? 'ALLOW' : 'DENY'} (${d.reasons.join(', ')})`);
  return { exitCode: d.allowed ? 0 : 3, text: lines.join('\n') };
}
