// Boot step of the door: the routes compiled into one table — matcher and identity header plan —
// so a hot reload swaps routes, rules and headers in one assignment. A request keeps the table its
// route came from even when a reload lands while it is in flight.
import type { RouteConfig } from '../config/index.js';
import { compileMatcher, type RouteMatcher } from '../routing/match.js';
import { IdentityHeaderPlan } from '../identity/headers.js';
import type { HeaderEncoding } from '../identity/templates.js';

export interface RouteTable {
  readonly routes: readonly RouteConfig[];
  readonly matcher: RouteMatcher;
  readonly headers: IdentityHeaderPlan;
}

/** Which table each route object was compiled into. */
const TABLE_OF_ROUTE = new WeakMap<RouteConfig, RouteTable>();

export function compileRouteTable(routes: readonly RouteConfig[], budget = 8192, onTrim?: (route: string, sub: unknown) => void, encoding: HeaderEncoding = 'percent'): RouteTable {
  const table: RouteTable = Object.freeze({ routes, matcher: compileMatcher(routes.map((r) => r.match)), headers: new IdentityHeaderPlan(routes, budget, onTrim, encoding) });
  for (const r of routes) TABLE_OF_ROUTE.set(r, table);
  return table;
}

/** The table a route was compiled into (`fallback` for a route object never compiled). */
export function tableOf(route: RouteConfig, fallback: RouteTable): RouteTable {
  return TABLE_OF_ROUTE.get(route) ?? fallback;
}
