// Identity stage, request half: "tell the upstream who this is". Knows which headers only
// Portcullis may set (the upstream plan, proxy/plan.ts, drops a client's in any case, `_` for `-`)
// and renders the ones Portcullis vouches for. Compiled once at boot; per request it only renders.
import type { RouteConfig } from '../config/index.js';
import { compileHeaderTemplate, encodeHeaderValue, headerSafe, type Claims, type HeaderEncoding } from './templates.js';
import { compileClaimGetter } from '../policy/claims.js';
import type { HeaderBag } from '../routing/origin.js';

/** Who the upstream is told about: a browser session or a verified bearer token. */
export interface Principal {
  readonly claims: Claims;
  /** The `oidc` id of the provider that signed the user in or issued the bearer token (the door always sets it; headers do not read it). */
  readonly provider?: string;
  readonly accessToken?: string | undefined;
  /** Portcullis session id (absent for bearer tokens). */
  readonly sid?: string | undefined;
}

/** The identity headers every route gets, from standard claims. */
export const DEFAULT_IDENTITY_HEADERS: ReadonlyArray<{ name: string; claim: string[] }> = [
  { name: 'x-forwarded-user', claim: ['sub'] },
  { name: 'x-forwarded-email', claim: ['email'] },
  { name: 'x-forwarded-preferred-username', claim: ['preferred_username'] },
  { name: 'x-forwarded-groups', claim: ['groups'] },
];

/** Visible ASCII only: every access token format (JWT, opaque b64token) fits. */
const TOKEN_VALUE = /^[\x21-\x7e]+$/;

const GROUPS = 'x-forwarded-groups';
const TRUNCATED = 'x-forwarded-groups-truncated';

/** Headers only Portcullis may set, whatever the route. */
const RESERVED = [
  'x-portcullis-assertion', 'x-forwarded-access-token', TRUNCATED,
  // Grafana auth.proxy (`headers = Groups:X-WEBAUTH-GROUPS` is a common addition).
  'x-webauth-user', 'x-webauth-email', 'x-webauth-name', 'x-webauth-role', 'x-webauth-groups',
  // oauth2-proxy's names, which apps moved from it still trust.
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-preferred-username', 'x-auth-request-groups', 'x-auth-request-access-token',
  // Kubernetes' and Apache-style front-proxy identity (the API server's requestheader authentication).
  'x-remote-user', 'x-remote-group',
];

/** Grafana auth.proxy (`[auth.proxy] header_name = X-WEBAUTH-USER`, `headers = Email:… Name:… Role:…`). */
const GRAFANA_PRESET: Record<string, string> = {
  'x-webauth-user': '{preferred_username|email|sub}',
  'x-webauth-email': '{email}',
  'x-webauth-name': '{name|preferred_username}',
};

/** Headers are routing's type (the request as it arrived); re-exported for the identity plan's users. */
export type { HeaderBag };

type Render = (c: Claims) => string | undefined;

interface RoutePlan {
  headers: ReadonlyArray<{ name: string; render: Render }>;
  passAccessToken: boolean;
  passAuthorization: boolean;
}

/** Canonical form for comparison: lower case, `_` read as `-` (CGI/WSGI/PHP map both to HTTP_X_…). */
function canonical(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

export class IdentityHeaderPlan {
  /** Canonical names of every identity header configured anywhere. */
  private readonly protectedNames: Set<string>;
  private readonly perRoute: Map<string, RoutePlan>;

  constructor(routes: readonly RouteConfig[], private readonly budget = 8192, private readonly onTrim: (route: string, sub: unknown) => void = () => {}, private readonly encoding: HeaderEncoding = 'percent') {
    this.protectedNames = new Set([...DEFAULT_IDENTITY_HEADERS.map((h) => h.name), ...RESERVED]);
    this.perRoute = new Map();
    for (const r of routes) {
      const list: Array<{ name: string; render: Render }> = DEFAULT_IDENTITY_HEADERS.map((h) => {
        const get = compileClaimGetter(h.claim);
        return { name: h.name, render: (c: Claims) => headerSafe(get(c)) };
      });
      const put = (name: string, render: Render) => {
        this.protectedNames.add(canonical(name));
        const lower = name.toLowerCase();
        const at = list.findIndex((x) => x.name === lower);
        if (at >= 0) list[at] = { name: lower, render }; else list.push({ name: lower, render });
      };
      if (r.preset === 'grafana') {
        for (const [name, t] of Object.entries(GRAFANA_PRESET)) put(name, compileHeaderTemplate(t, '', [])!);
        const roles = r.grafanaRoles;
        if (roles.length) put('x-webauth-role', (c) => headerSafe(roles.find((x) => x.rule.test(c))?.role));
      }
      for (const h of r.headers) put(h.name, h.template);
      this.perRoute.set(r.name, { headers: list, passAccessToken: r.passAccessToken, passAuthorization: r.passAuthorization });
    }
  }

  /** Whether a header (canonical: lower case, `_` read as `-`) is one only Portcullis may set. */
  isProtected(canonicalName: string): boolean {
    return this.protectedNames.has(canonicalName);
  }



  /**
   * Rendered headers per claims object and route. A cached session keeps one claims object until
   * it is refreshed (which makes a new one), so most requests copy ready strings instead of
   * rendering templates; the WeakMap lets them go with the session.
   */
  private readonly rendered = new WeakMap<Claims, Map<string, ReadonlyArray<readonly [string, string]>>>();

  /** Adds the route's identity headers for this principal, within the size budget (client-sent ones are never copied: proxy/plan.ts asks isProtected). */
  inject(routeName: string, who: Principal, headers: HeaderBag): void {
    const plan = this.perRoute.get(routeName);
    if (!plan) return;
    let byRoute = this.rendered.get(who.claims);
    if (!byRoute) this.rendered.set(who.claims, (byRoute = new Map()));
    let list = byRoute.get(routeName);
    if (!list) {
      const out: HeaderBag = {};
      let total = 0;
      for (const h of plan.headers) {
        const raw = h.render(who.claims);
        if (raw === undefined || raw === '') continue;
        // Always printable ASCII (cleaned, then encoded): Node accepts it, and length is bytes.
        const v = encodeHeaderValue(raw, this.encoding);
        if (v === '') continue;
        out[h.name] = v;
        total += h.name.length + v.length + 4;
      }
      if (total > this.budget) this.trim(routeName, plan, who, out, total);
      list = Object.entries(out) as Array<[string, string]>;
      byRoute.set(routeName, list);
    }
    for (const [k, v] of list) headers[k] = v;
    // A token Node would refuse as a header value (or one that is not a token at all) is not passed.
    if (who.accessToken && TOKEN_VALUE.test(who.accessToken)) {
      if (plan.passAccessToken) headers['x-forwarded-access-token'] = who.accessToken;
      if (plan.passAuthorization) headers.authorization = `Bearer ${who.accessToken}`;
    }
  }

  /**
   * Over budget (typically a user in hundreds of groups): trim the groups list at a comma and say
   * so in X-Forwarded-Groups-Truncated (counted in the budget), rather than let the upstream answer
   * 431. If that is not enough, drop the largest remaining identity headers. X-Forwarded-User is
   * never dropped or cut (a cut identifier could name someone else): a user id over the budget on
   * its own is sent as it is, alone.
   */
  private trim(routeName: string, plan: RoutePlan, who: Principal, headers: HeaderBag, total: number): void {
    this.onTrim(routeName, who.claims.sub);
    const groups = headers[GROUPS];
    if (typeof groups === 'string') {
      const marker = TRUNCATED.length + 'true'.length + 4;
      headers[TRUNCATED] = 'true';
      total += marker;
      const keep = groups.length - (total - this.budget);
      const cut = keep > 0 ? groups.lastIndexOf(',', keep) : -1;
      if (cut > 0) {
        headers[GROUPS] = groups.slice(0, cut);
        total -= groups.length - cut;
      } else {
        delete headers[GROUPS];
        total -= GROUPS.length + groups.length + 4;
      }
    }
    if (total <= this.budget) return;
    const sized = plan.headers.map((h) => h.name).filter((n) => n !== 'x-forwarded-user' && typeof headers[n] === 'string')
      .sort((a, b) => (headers[b] as string).length - (headers[a] as string).length);
    for (const n of sized) {
      if (total <= this.budget) break;
      total -= n.length + (headers[n] as string).length + 4;
      delete headers[n];
    }
  }
}
