// Config, after the schema: the checks JSON Schema cannot express — URL parts, IP ranges, Redis
// URLs, durations compared with each other, and rules across keys (unique route names, a route's
// host under the cookie domain, bearer needs audiences). Pure: reads a ConfigInput, returns issues.
// Values the schema already refused are skipped (`failed`), so nothing is reported twice.
import { parseDuration } from './durations.js';
import { isAddressOrCidr } from '../routing/trust.js';
import { parseRedisUrl } from '../session/redis-store.js';
import { childPath, type Issues } from './issues.js';
import { providersTested } from '../policy/rules.js';
import type { ConfigInput, ProviderInput } from './schema.js';

/** An http(s) URL without credentials, query or fragment; `originOnly`: nothing after the host. */
export function readUrl(s: string, o: { originOnly?: boolean } = {}): { url: string } | { error: string } {
  let u: URL;
  try { u = new URL(s); } catch { return { error: `"${s}" is not an absolute URL` }; }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { error: 'must be an http(s) URL' };
  if (u.username || u.password || u.search || u.hash || /[?#]$/.test(s)) return { error: 'must not contain credentials, a query or a fragment' };
  if (o.originOnly) {
    if (u.pathname !== '/') return { error: 'must be an origin only (scheme://host[:port]); Portcullis serves its endpoints under /oauth2/ at the root' };
    return { url: u.origin };
  }
  return { url: s.replace(/\/+$/, '') };
}

/** `https://app.example.com[:port]`, no path and no wildcard: a browser's `Origin`. */
export function readOrigin(s: string): string | undefined {
  const r = s.includes('*') ? undefined : readUrl(s, { originOnly: true });
  return r && 'url' in r ? r.url : undefined;
}

/** The providers of a ConfigInput with their key paths: `oidc` (the mapping form) or `oidc[i]` (the list form). */
export function providerInputs(input: Pick<ConfigInput, 'oidc'>): Array<{ p: ProviderInput; path: string }> {
  return Array.isArray(input.oidc)
    ? input.oidc.map((p, i) => ({ p, path: childPath('oidc', i) }))
    : [{ p: input.oidc as ProviderInput, path: 'oidc' }];
}

export function checkSemantics(c: ConfigInput, failed: (path: string) => boolean): Issues {
  const issues: Issues = [];
  const issue = (path: string, message: string) => { if (!failed(path)) issues.push({ path, message }); };
  const url = (value: string | undefined, path: string, o: { originOnly?: boolean } = {}) => {
    if (value === undefined || failed(path)) return;
    const r = readUrl(value, o);
    if ('error' in r) issue(path, r.error);
  };

  url(c.publicUrl, 'publicUrl', { originOnly: true });
  const pubHost = hostOf(c.publicUrl);
  if (Array.isArray(c.trustProxy)) {
    c.trustProxy.forEach((s, i) => { if (!isAddressOrCidr(s)) issue(childPath('trustProxy', i), `"${s}" is not an IP address or CIDR range like 10.0.0.0/8`); });
  }
  c.websocketOrigins.forEach((o, i) => {
    if (!readOrigin(o)) issue(childPath('websocketOrigins', i), `"${o}" is not an origin like https://app.example.com (scheme, host and port only; no path, no wildcard)`);
  });
  if (c.metrics && c.metrics.port === c.listen.port && c.metrics.host === c.listen.host) {
    issue('metrics.port', 'must differ from listen.port: /metrics is never served on the public port');
  }
  if (c.admin.tokenFile !== undefined && c.metrics === false) {
    issue('admin.tokenFile', 'the admin endpoints are served on the metrics listener, which metrics: false turns off');
  }

  // oidc: each provider; ids and issuers unique (a session, a token and a logout token name their
  // provider by id or by issuer, so two providers must never share either).
  const providers = providerInputs(c);
  const ids = new Map<string, string>();
  const issuers = new Map<string, string>();
  for (const { p, path } of providers) {
    if (failed(path)) continue;
    url(p.issuer, `${path}.issuer`);
    if (p.tokenEndpointAuthMethod === 'private_key_jwt') {
      // No secret with a key: it would never be used, and a leftover secret is one more to leak.
      if (p.clientKeysFile === undefined) issue(`${path}.clientKeysFile`, 'is required with tokenEndpointAuthMethod: private_key_jwt (a JWK Set or PEM file of private keys; the first signs)');
      if (p.clientSecret !== undefined) issue(`${path}.clientSecret`, `must not be set with tokenEndpointAuthMethod: private_key_jwt (the client authenticates with ${path}.clientKeysFile)`);
      if (p.clientSecretFile !== undefined) issue(`${path}.clientSecretFile`, `must not be set with tokenEndpointAuthMethod: private_key_jwt (the client authenticates with ${path}.clientKeysFile)`);
    } else {
      if (p.clientKeysFile !== undefined) issue(`${path}.clientKeysFile`, `is only used with tokenEndpointAuthMethod: private_key_jwt (not ${p.tokenEndpointAuthMethod})`);
      if (p.clientSecret !== undefined && p.clientSecretFile !== undefined) issue(`${path}.clientSecret`, 'set clientSecret or clientSecretFile, not both');
      else if (p.clientSecret === undefined && p.clientSecretFile === undefined) issue(`${path}.clientSecret`, `is required (or ${path}.clientSecretFile, or tokenEndpointAuthMethod: private_key_jwt with ${path}.clientKeysFile)`);
    }
    const graph = p.groupOverage?.graphUrl;
    if (graph !== undefined && !failed(`${path}.groupOverage.graphUrl`)) {
      const r = readUrl(graph, { originOnly: true });
      if ('error' in r) issue(`${path}.groupOverage.graphUrl`, r.error);
      // The user's access token goes there: never in clear text over a network.
      else if (r.url.startsWith('http:') && !isLoopbackHost(hostOf(r.url) ?? '')) issue(`${path}.groupOverage.graphUrl`, 'must be https (the user\'s access token is sent to it); http: only for a loopback address');
    }
    if (p.id && !failed(`${path}.id`)) {
      const before = ids.get(p.id);
      if (before !== undefined) issue(`${path}.id`, `duplicate provider id "${p.id}" (also ${before})`);
      else ids.set(p.id, path);
    }
    const iss = p.issuer ? p.issuer.replace(/\/+$/, '') : '';
    if (iss && !failed(`${path}.issuer`)) {
      const before = issuers.get(iss);
      if (before !== undefined) issue(`${path}.issuer`, `the issuer of ${before} too: each provider needs its own issuer (tokens are told apart by their iss)`);
      else issuers.set(iss, path);
    }
  }
  const providerOf = new Map(providers.map(({ p, path }) => [p.id, { p, path }]));
  const known = [...ids.keys()].join(', ');

  // session
  const s = c.session;
  if (s.secrets !== undefined && s.secretsFile !== undefined) issue('session.secrets', 'set secrets or secretsFile, not both');
  else if (s.secrets === undefined && s.secretsFile === undefined) {
    issue('session.secrets', 'at least one secret of 32 bytes or more is required (e.g. `openssl rand -base64 48`)');
  }
  if (s.store === 'redis' && s.redis.url === undefined) issue('session.redis.url', 'required when session.store is redis');
  if (s.redis.url !== undefined && !failed('session.redis.url')) {
    try { parseRedisUrl(s.redis.url); } catch (err) { issue('session.redis.url', (err as Error).message); }
  }
  const idle = parseDuration(s.idleTimeout);
  const absolute = parseDuration(s.absoluteTimeout);
  if (idle !== undefined && absolute !== undefined && idle > absolute) issue('session.idleTimeout', 'must not be longer than session.absoluteTimeout');
  const domain = s.cookieDomain?.replace(/^\./, '').toLowerCase();
  if (domain !== undefined && pubHost !== undefined && !failed('session.cookieDomain') && pubHost !== domain && !pubHost.endsWith(`.${domain}`)) {
    issue('session.cookieDomain', `publicUrl's host ${pubHost} is not under ${s.cookieDomain}; browsers would refuse the cookie`);
  }

  // routes
  const names = new Set<string>();
  c.routes.forEach((r, i) => {
    const path = childPath('routes', i);
    if (failed(path)) return;
    if (names.has(r.name)) issue(`${path}.name`, `duplicate route name "${r.name}"`);
    names.add(r.name);
    url(r.upstream, `${path}.upstream`);
    if (r.auth === 'public' && r.allow !== undefined) issue(`${path}.allow`, 'a public route lets everyone through; remove allow or set auth: required');
    if (r.grafanaRoles !== undefined && r.preset !== 'grafana') issue(`${path}.grafanaRoles`, 'only with preset: grafana');
    if (typeof r.assertion === 'object') {
      const ttl = parseDuration(r.assertion.ttl);
      if (ttl !== undefined && (ttl < 10_000 || ttl > 600_000)) issue(`${path}.assertion.ttl`, 'must be between 10s and 10m (a short-lived assertion)');
    }
    if (r.tokenExchange !== undefined && !r.passAccessToken && !r.passAuthorization) {
      issue(`${path}.tokenExchange`, 'the exchanged token goes where the user\'s would: set passAuthorization (Authorization: Bearer) or passAccessToken (X-Forwarded-Access-Token)');
    }
    if (r.stepUp !== undefined) {
      if (r.auth === 'public') issue(`${path}.stepUp`, 'a public route lets everyone through; remove stepUp or set auth: required');
      const maxAge = r.stepUp.maxAge === undefined ? undefined : parseDuration(r.stepUp.maxAge);
      // Shorter, and a sign-in would be stale again by the time the browser is back (clock skew, a slow login): a loop.
      if (maxAge !== undefined && maxAge < 60_000) issue(`${path}.stepUp.maxAge`, 'must be at least 1m');
    }
    for (const [key, rule] of [['allow', r.allow], ...Object.entries(r.grafanaRoles ?? {}).map(([k, v]) => [`grafanaRoles.${k}`, v])] as const) {
      for (const id of providersTested(rule)) {
        if (!providerOf.has(id)) issue(`${path}.${key}`, `tests provider "${id}", which is not configured${known ? ` (configured: ${known})` : ''}`);
      }
    }
    (r.providers ?? []).forEach((id, j) => {
      if (!providerOf.has(id) && !failed(childPath(`${path}.providers`, j))) issue(childPath(`${path}.providers`, j), `unknown provider "${id}"${known ? ` (configured: ${known})` : ''}`);
    });
    const accepted = (r.providers ?? [...providerOf.keys()]).map((id) => providerOf.get(id)).filter((x) => x !== undefined);
    if (r.bearer && accepted.length > 0 && accepted.every(({ p }) => p.bearerAudiences.length === 0)) {
      issue(`${path}.bearer`, `bearer: true needs ${accepted.length === 1 ? `${accepted[0]!.path}.bearerAudiences` : 'bearerAudiences on one of the route\'s providers'} (the \`aud\` values API tokens must carry; never "any audience")`);
    }
    // An opaque token says nothing about who issued it: it is sent to exactly one provider's
    // introspection endpoint, never tried at several (that would hand one IdP's tokens to another).
    if ((r.bearer === 'introspect' || r.bearer === 'jwt-then-introspect') && accepted.length > 1) {
      issue(`${path}.providers`, `bearer: ${r.bearer} asks one provider's introspection endpoint about opaque tokens: name exactly one provider (providers: [${accepted[0]!.p.id}])`);
    }
    // A route on another host only works when the session cookie reaches it: same host as
    // publicUrl, or under session.cookieDomain. Otherwise every sign-in would loop.
    const h = r.match.host?.toLowerCase().replace(/\.$/, '').replace(/^\*\./, '');
    if (h && pubHost && h !== pubHost && (!domain || (h !== domain && !h.endsWith(`.${domain}`)))) {
      issue(`${path}.match.host`, `${r.match.host} is not publicUrl's host (${pubHost}); set session.cookieDomain to a parent domain of both so the session cookie reaches it`);
    }
  });
  return issues;
}

/** 127.0.0.0/8, ::1 and localhost. */
function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

function hostOf(url: string): string | undefined {
  try { return new URL(url).hostname.toLowerCase(); } catch { return undefined; }
}
