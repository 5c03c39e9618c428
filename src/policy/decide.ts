// Policy stage, request time: "may they?" as a pure function — route + claims in, a Decision out.
// Turning a Decision into a redirect, 401 or 403 happens elsewhere, in one place.

import type { Claims, CompiledRule } from './rules.js';

/** Stable reason ids, for logs, metrics and the `explain` command. */
export type ReasonId =
  | 'public-route'
  | 'user-unauthenticated'
  | 'any-authenticated-user'
  | 'claim-authorized'
  | 'claim-unauthorized';

export interface Decision {
  readonly allowed: boolean;
  readonly reasons: readonly ReasonId[];
}

export interface AuthorizableRoute {
  auth: 'required' | 'public';
  /** Omitted: any signed-in user may pass. */
  allow?: CompiledRule;
}

// Decisions are shared frozen values: authorize() allocates nothing per request.
function decision(allowed: boolean, reason: ReasonId): Decision {
  return Object.freeze({ allowed, reasons: Object.freeze([reason]) });
}
const PUBLIC_ROUTE = decision(true, 'public-route');
const UNAUTHENTICATED = decision(false, 'user-unauthenticated');
const ANY_AUTHENTICATED = decision(true, 'any-authenticated-user');
const CLAIM_AUTHORIZED = decision(true, 'claim-authorized');
const CLAIM_UNAUTHORIZED = decision(false, 'claim-unauthorized');

/**
 * `claims` undefined means "no valid session". A public route is allowed whether or not
 * there is one; a required route denies anonymous callers before any rule runs. `provider`: the
 * `oidc` id the claims come from, for rules that test it (`{ provider: corp }`).
 */
export function authorize(route: AuthorizableRoute, claims: Claims | Record<string, unknown> | undefined, provider?: string): Decision {
  if (route.auth === 'public') return PUBLIC_ROUTE;
  if (claims === undefined || claims === null) return UNAUTHENTICATED;
  if (route.allow === undefined) return ANY_AUTHENTICATED;
  return route.allow.test(claims, provider) ? CLAIM_AUTHORIZED : CLAIM_UNAUTHORIZED;
}
