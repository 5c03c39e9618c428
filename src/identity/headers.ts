// Identity stage, request half: "tell the upstream who this is". Removes every identity header a
// client sent (any case, `_` for `-`), then adds the ones Portcullis vouches for. The header plan
// is compiled once at boot; per request it only renders values.
import type { RouteConfig } from '../config/index.js';
import { headerSafe, readClaimPath, type Claims } from './templates.js';

/** The identity headers every route gets, from standard claims. */
export const DEFAULT_IDENTITY_HEADERS: ReadonlyArray<{ name: string; claim: string[] }> = [
  { name: 'x-forwarded-user', claim: ['sub'] },
  { name: 'x-forwarded-email', claim: ['email'] },
  { name: 'x-forwarded-preferred-username', claim: ['preferred_username'] },
  { name: 'x-forwarded-groups', claim: ['groups'] },
];

/** Headers only Portcullis may set, whatever the route (reserved for later features too). */
const RESERVED = ['x-portcullis-assertion', 'x-forwarded-access-token', 'x-forwarded-groups-truncated', 'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-preferred-username', 'x-auth-request-groups'];

export type HeaderBag = Record<string, string | string[] | undefined>;

/** Canonical form for comparison: lower case, `_` read as `-` (CGI/WSGI/PHP map both to HTTP_X_…). */
function canonical(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

export class IdentityHeaderPlan {
  /** Canonical names of every identity header configured anywhere. */
  private readonly protectedNames: Set<string>;
  private readonly perRoute: Map<string, ReadonlyArray<{ name: string; render: (c: Claims) => string | undefined }>>;

  constructor(routes: readonly RouteConfig[]) {
    this.protectedNames = new Set([...DEFAULT_IDENTITY_HEADERS.map((h) => h.name), ...RESERVED]);
    this.perRoute = new Map();
    for (const r of routes) {
      const list: Array<{ name: string; render: (c: Claims) => string | undefined }> = DEFAULT_IDENTITY_HEADERS.map((h) => ({
        name: h.name,
        render: (c: Claims) => headerSafe(readClaimPath(c, h.claim)),
      }));
      for (const h of r.headers) {
        this.protectedNames.add(canonical(h.name));
        const name = h.name.toLowerCase();
        const at = list.findIndex((x) => x.name === name);
        const entry = { name, render: h.template };
        if (at >= 0) list[at] = entry; else list.push(entry);
      }
      this.perRoute.set(r.name, list);
    }
  }

  /** Deletes, in place, every header a client must not be able to set. Applies to every route. */
  strip(headers: HeaderBag): void {
    for (const key in headers) {
      if (this.protectedNames.has(key) || (key.includes('_') || key !== key.toLowerCase() ? this.protectedNames.has(canonical(key)) : false)) {
        delete headers[key];
      }
    }
  }

  /** Adds the route's identity headers for these claims (after strip). */
  inject(routeName: string, claims: Claims, headers: HeaderBag): void {
    const list = this.perRoute.get(routeName);
    if (!list) return;
    for (const h of list) {
      const v = h.render(claims);
      if (v !== undefined && v !== '') headers[h.name] = v;
    }
  }
}
