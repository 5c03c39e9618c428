// Config, boot stage 2 of 3: the ONE description of the configuration file. Portcullis validates
// against it at start (validate.ts), `portcullis check` reports from it, and `npm run gen:config`
// generates from it the `config` subtree of helm/portcullis/values.schema.json and
// docs/configuration.md. Adding a key means writing it here once (type, default, description,
// limits) plus its behaviour.
//
// Names, decided to keep churn low: `ConfigInput` is the plain data this schema describes (what the
// YAML says, defaults applied). `Config` / `RouteConfig` — the names the rest of src/ already uses —
// stay the RUNTIME form that compile.ts builds from a ConfigInput at boot (compiled rules, matchers,
// header templates, durations in ms, secrets read from their files).
//
// What JSON Schema cannot say (durations beyond their shape, CIDRs, URL parts, regex safety, claim
// rules and header templates compiled, secret files, cross-field rules such as unique route names)
// is checked in code after the schema (semantic.ts, compile.ts), with the same `{ path, message }`.
import { Type, type Static, type TSchema } from './typebox.js';
import { HTTP_METHODS } from '../routing/match.js';
import type { Operator } from '../policy/rules.js';

/** Portcullis durations: `250ms`, `30s`, `15m`, `8h`, `7d`, combinable (`1h30m`). durations.ts parses them. */
export const DURATION_PATTERN = '^(\\d+(ms|s|m|h|d))+$';

/** A provider id: letters, digits, _ and - (it is a metrics label and a URL parameter). */
export const PROVIDER_ID_PATTERN = '^[A-Za-z0-9_-]{1,40}$';
/** An origin: scheme, host, port (the trailing slash is allowed). semantic.ts checks the rest. */
const ORIGIN_PATTERN = '^https?://[^/?#@*\\s]+/?$';
/** An `acr` value: printable ASCII without space, `"` or `\` (sent space-separated in `acr_values`, quoted in a challenge). */
const ACR_PATTERN = '^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$';
/** An http(s) URL without credentials, query or fragment; a base path is allowed. */
const UPSTREAM_PATTERN = '^https?://[^/?#@\\s]+(/[^?#\\s]*)?$';
/** Microsoft Graph's origin (oidc.groupOverage.graphUrl): like ORIGIN_PATTERN, its own message. */
const GRAPH_PATTERN = '^https?://[^/?#@*\\s]+(/)?$';

/**
 * Plain words for the schema's patterns, used by validate.ts instead of ajv's "must match pattern".
 * Every pattern the schema uses has an entry (a test checks it).
 */
export const PATTERN_MESSAGES: Readonly<Record<string, string>> = {
  [DURATION_PATTERN]: 'must be a duration like 30s, 15m, 8h or 7d',
  [ORIGIN_PATTERN]: 'must be an origin only, like https://apps.example.com (scheme://host[:port], no path, query or credentials; Portcullis serves its endpoints under /oauth2/ at the root)',
  [UPSTREAM_PATTERN]: 'must be an http(s) URL like http://app.internal:8080 or http://app.internal:8080/base (no credentials, query or fragment)',
  '^[A-Za-z0-9_.-]{1,64}$': 'letters, digits, _ . - only, at most 64 (it is a metrics label)',
  '^[A-Za-z0-9_-]{1,40}$': 'letters, digits, _ and - only (at most 40)',
  '^\\.?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$': 'is not a domain like .example.com',
  '^\\.?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*$': 'is not a host name (use .example.com for a domain and its subdomains)',
  "^[!#$%&'+.^_`|~0-9A-Za-z-]+\\*?$": 'is not a cookie name (a trailing * matches names beginning with the rest)',
  '^rediss?://': 'must start with redis:// or rediss://',
  [GRAPH_PATTERN]: 'must be an origin only, like https://graph.microsoft.com (scheme://host[:port]; Portcullis adds /v1.0/me/getMemberObjects)',
  [ACR_PATTERN]: 'printable ASCII without spaces, quotes or backslashes (acr values are sent space-separated, and quoted in WWW-Authenticate)',
};

const duration = (def: string | undefined, description: string) =>
  Type.String({ pattern: DURATION_PATTERN, description, ...(def === undefined ? {} : { default: def }) });
const port = (def: number, description: string) => Type.Integer({ minimum: 0, maximum: 65535, default: def, description });
const text = (description: string, extra: Record<string, unknown> = {}) => Type.String({ minLength: 1, description, ...extra });
const flag = (def: boolean, description: string) => Type.Boolean({ default: def, description });
const list = <T extends TSchema>(items: T, description: string, extra: Record<string, unknown> = {}) =>
  Type.Array(items, { description, ...extra });
const section = <P extends Parameters<typeof Type.Object>[0]>(props: P, description: string, extra: Record<string, unknown> = {}) =>
  Type.Object(props, { additionalProperties: false, description, ...extra });

// ---------------------------------------------------------------------------------------------
// Claim rules (`allow`, `grafanaRoles.*`). The full language, as policy/rules.ts compiles it; the
// schema gives editors, Helm and the docs its shape, the compiler gives the precise messages.

/** A claim rule as written in the config. */
export type ClaimRuleInput =
  | { all: ClaimRuleInput[] }
  | { any: ClaimRuleInput[] }
  | { not: ClaimRuleInput }
  | { provider: string | string[] }
  | ({ claim: string | string[] } & { [op in Operator]?: unknown });

const RULE_REF = '#/definitions/claimRule';
const scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);
const ruleRef = (description: string) => Type.Unsafe<ClaimRuleInput>({ $ref: RULE_REF, description });

/** Definitions the config schema refers to by `$ref` (the rule language is recursive). */
export const CONFIG_DEFINITIONS = {
  claimRule: {
    description: 'Exactly one of `all`, `any`, `not`, a claim test `{ claim, OPERATOR: VALUE }`, or a provider test `{ provider: ID }`.',
    anyOf: [
      section({ all: Type.Array(Type.Unsafe({ $ref: RULE_REF }), { minItems: 1 }) }, 'every rule in the list passes', { required: ['all'] }),
      section({ any: Type.Array(Type.Unsafe({ $ref: RULE_REF }), { minItems: 1 }) }, 'at least one rule in the list passes', { required: ['any'] }),
      section({ not: Type.Unsafe({ $ref: RULE_REF }) }, 'the rule does not pass', { required: ['not'] }),
      Type.Object({
        claim: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String(), { minItems: 1 })], {
          description: 'a dotted claim path (realm_access.roles), or a list of literal keys for keys holding dots',
        }),
        equals: Type.Optional(Type.Unsafe({ ...scalar, description: 'the claim is exactly this value, same type' })),
        in: Type.Optional(Type.Array(scalar, { minItems: 1, description: 'the claim is a scalar equal to one of these' })),
        contains: Type.Optional(Type.Unsafe({ ...scalar, description: 'the claim is a list holding this value (a string claim never matches)' })),
        startsWith: Type.Optional(Type.String({ minLength: 1, description: 'the claim is a string starting with this' })),
        endsWith: Type.Optional(Type.String({ minLength: 1, description: 'the claim is a string ending with this' })),
        matches: Type.Optional(Type.String({ minLength: 1, description: 'the whole claim string matches this regular expression' })),
        exists: Type.Optional(Type.Boolean({ description: 'true: the claim is present and not null; false: absent or null' })),
      }, { additionalProperties: false, required: ['claim'], minProperties: 2, maxProperties: 2, description: 'a claim test with exactly one operator' }),
      section({
        provider: Type.Union([Type.String({ pattern: PROVIDER_ID_PATTERN }), Type.Array(Type.String({ pattern: PROVIDER_ID_PATTERN }), { minItems: 1 })]),
      }, 'the identity comes from this OpenID Provider (an `oidc` id), or one of these', { required: ['provider'] }),
    ],
  },
} as const;

// ---------------------------------------------------------------------------------------------
// Routes


/** `assertion: true` means this object with its defaults. */
export const AssertionSchema = section({
  audience: Type.Optional(text('`aud` of the assertion. Default: the upstream\'s origin.')),
  ttl: duration('2m', 'Lifetime of each assertion, 10s to 10m.'),
}, 'Assertion settings.');

export const RouteSchema = section({
  name: text('Stable name: used in logs, metrics labels and the 403 page. Unique among routes.', { pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
  match: section({
    host: Type.Optional(text('Exact host (case-insensitive, the port is ignored) or `*.example.com` (exactly one extra label). Omitted: any host.')),
    path: text('Path prefix at a segment boundary: `/admin` matches `/admin` and `/admin/x`, never `/administrator`. Case-sensitive; must be written normalised (requests are matched after normalisation).', { default: '/' }),
    methods: Type.Optional(list(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m))), 'Methods this route serves, e.g. `[GET, POST]`; `GET` also allows `HEAD`. Omitted: every method.', { minItems: 1 })),
  }, 'Which requests the route takes: host, path prefix, methods. First match wins, in config order; no match is a 404.', { default: {} }),
  upstream: text('Where requests go: `http(s)://host:port[/base]` (no credentials, query or fragment).', { pattern: UPSTREAM_PATTERN }),
  providers: Type.Optional(list(Type.String({ pattern: PROVIDER_ID_PATTERN }), 'Which OpenID Providers\' sessions and tokens this route accepts (their `oidc` ids). A session from another provider counts as no session here (sign in with one of these); a bearer token must be issued by one of these. Omitted: every provider.', { minItems: 1 })),
  auth: Type.Union([Type.Literal('required'), Type.Literal('public')], {
    default: 'required',
    description: '`required`: a session is needed. `public`: proxied to anyone, with identity headers only if a valid session happens to exist.',
  }),
  allow: Type.Optional(ruleRef('Who may pass, as a claim rule (see identity.md). Omitted: any signed-in user. Not with `auth: public`.')),
  headers: Type.Optional(Type.Record(Type.String(), Type.String(), {
    description: 'Extra identity headers from claim templates, e.g. `X-WEBAUTH-USER: "{preferred_username}"` (see identity.md). Every configured name is removed from incoming requests on every route.',
  })),
  websocket: flag(false, 'Proxy WebSocket upgrades (same sign-in and rules; a browser\'s `Origin` must be this site\'s, see `websocketOrigins`). Off: upgrades get 404.'),
  stripPrefix: flag(false, 'Remove `match.path` before forwarding (`/app/x` → `/x`).'),
  timeout: duration('30s', 'Upstream response timeout; past it the client gets a 504.'),
  bearer: Type.Union([Type.Boolean(), Type.Literal('jwt'), Type.Literal('introspect'), Type.Literal('jwt-then-introspect')], {
    default: false,
    description: 'Also accept `Authorization: Bearer <token>` from API clients (needs `oidc.bearerAudiences`). `true`/`jwt`: a JWT access token verified here (fast; valid until its `exp` even if revoked at the IdP). `introspect`: asked about at the IdP\'s introspection endpoint (RFC 7662: opaque tokens, revocation within `oidc.introspection.cacheTtl`). `jwt-then-introspect`: JWTs verified here, other tokens introspected. See identity.md.',
  }),
  assertion: Type.Union([Type.Boolean(), AssertionSchema], {
    default: false,
    description: '`true` or `{ audience, ttl }`: send `X-Portcullis-Assertion`, a short-lived signed JWT (keys at `/oauth2/jwks.json`; see identity.md).',
  }),
  preset: Type.Optional(Type.Literal('grafana', { description: '`grafana`: Grafana auth.proxy headers (X-WEBAUTH-USER, -EMAIL, -NAME, -ROLE).' })),
  grafanaRoles: Type.Optional(section({
    Admin: Type.Optional(ruleRef('Who is a Grafana Admin.')),
    Editor: Type.Optional(ruleRef('Who is a Grafana Editor.')),
    Viewer: Type.Optional(ruleRef('Who is a Grafana Viewer.')),
  }, 'With `preset: grafana`: Grafana role → claim rule; the first passing of Admin, Editor, Viewer is sent as `X-WEBAUTH-ROLE`.')),
  passAccessToken: flag(false, 'Send the session\'s access token as `X-Forwarded-Access-Token`.'),
  passAuthorization: flag(false, 'Send the session\'s access token as `Authorization: Bearer …` (replacing the client\'s).'),
  stepUp: Type.Optional(section({
    acr: Type.Optional(list(Type.String({ minLength: 1, pattern: ACR_PATTERN }), 'The session\'s `acr` (Authentication Context Class Reference) must be one of these, e.g. `[phr, mfa]`; otherwise a browser is sent to the IdP with `acr_values` (config order), and an API client gets 401 `insufficient_user_authentication` (RFC 9470).', { minItems: 1 })),
    maxAge: Type.Optional(duration(undefined, 'The sign-in must be at most this old (the ID token\'s `auth_time`, plus `oidc.clockTolerance`); otherwise a browser is sent to sign in again with `max_age` and `prompt=login`. At least 1m.')),
  }, 'Step-up per route: a stronger (`acr`) and/or more recent (`maxAge`) sign-in than other routes need — at least one of them. Met by upgrading the session in place (same session, other routes unaffected); see identity.md. Not with `auth: public`.', { minProperties: 1 })),
  tokenExchange: Type.Optional(section({
    audience: text('The audience the IdP issues the upstream\'s token for (RFC 8693 `audience`), e.g. the upstream API\'s identifier.', { minLength: 1 }),
    scope: Type.Optional(text('Scopes to ask for (space-separated; at most the user\'s own). Omitted: the IdP\'s choice.', { minLength: 1 })),
  }, 'Pass the upstream a token the IdP issued for `audience` (RFC 8693 token exchange) instead of the user\'s own, in the headers `passAccessToken`/`passAuthorization` choose (one of them is needed). Cached per session until shortly before it expires; the IdP refusing is a 502 page that says so.')),
}, 'One route.');

// ---------------------------------------------------------------------------------------------
// OpenID Providers (`oidc`): one mapping (one provider, id `default`) or a list of them.

/** Every key of one provider; `id` differs between the two forms (defaulted alone, required in a list). */
const providerKeys = {
  displayName: Type.Optional(text('What the sign-in chooser shows for this provider (several providers only). Default: its id.', { maxLength: 100 })),
  domainHint: Type.Optional(text('Shown under the name in the chooser and sent as `domain_hint` on the authorization request (Entra ID and Google skip their account picker for it), e.g. `example.com`.', { maxLength: 253 })),
  issuer: text('Discovery at `issuer + /.well-known/openid-configuration`; the discovered `issuer` must equal it exactly.'),
  clientId: text('Client id registered at the IdP.'),
  clientSecret: Type.Optional(text('The client secret. Set this or `clientSecretFile`, not both (neither with `private_key_jwt`).', { writeOnly: true })),
  clientSecretFile: Type.Optional(text('A file whose first line is the client secret (Kubernetes secret mounts). Set this or `clientSecret`, not both.')),
  tokenEndpointAuthMethod: Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post'), Type.Literal('private_key_jwt')], {
    default: 'client_secret_basic',
    description: 'How the client authenticates at the token endpoint (and for refresh, revocation, introspection and token exchange). `client_secret_basic` form-encodes the secret (RFC 6749 §2.3.1); some IdPs (Glewlwyd, older ADFS) do not decode it, so a secret with characters outside `A-Z a-z 0-9 -._~` fails there with `ERR_CALLBACK_CLIENT_AUTH` — use `client_secret_post`. `private_key_jwt` (RFC 7523, OIDC Core §9): no secret; each request carries a fresh assertion signed with the first key of `clientKeysFile`, whose public keys the IdP fetches from `/oauth2/client-jwks.json` (see security.md).',
  }),
  clientKeysFile: Type.Optional(text('With `private_key_jwt`: a file of private keys — a JWK Set, or PEM (PKCS#8, e.g. `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`). RSA of 2048 bits or more (RS256, or PS256 by the key\'s `alg`) or EC P-256 (ES256); `kid` from the file or the RFC 7638 thumbprint. The first key signs; all are published (public parts only) at `/oauth2/client-jwks.json`, so a new key can be added second, fetched by the IdP, then moved first. A key may have its X.509 certificate (PEM: a `CERTIFICATE` block in the same file; JWK: `x5c`): its assertions then carry `x5t` and `x5t#S256`, as Entra ID\'s certificate credentials want, and the JWKS publishes `x5c`; a certificate that is not one of the keys\' is refused. Read at start.')),
  clientAssertionAudience: Type.Union([Type.Literal('issuer'), Type.Literal('token_endpoint')], {
    default: 'issuer',
    description: 'With `private_key_jwt`: the `aud` of the client assertion. `issuer` (RFC 7523bis, the safer choice: an assertion is only good at this IdP) or `token_endpoint` (the IdP\'s token endpoint URL, for every request) for IdPs that only accept that (Entra ID and Okta document it, not tested).',
  }),
  scopes: list(Type.String({ minLength: 1 }), 'Scopes requested at sign-in; `openid` is always added.', { default: ['openid', 'email', 'profile'] }),
  clockTolerance: duration('30s', 'Clock skew allowed for `exp`/`iat`/`nbf`; an `iat` further in the future is refused.'),
  userinfo: flag(false, 'Also fetch userinfo at sign-in and merge its claims (ID-token claims win); refused when its `sub` differs from the ID token\'s.'),
  idTokenSigningAlgs: list(
    Type.Union((['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const).map((a) => Type.Literal(a))),
    'Accepted ID-token signature algorithms. `none` and HMAC are never accepted.',
    { default: ['RS256', 'PS256', 'ES256', 'EdDSA'], minItems: 1 },
  ),
  timeout: duration('10s', 'Timeout of each request to the IdP.'),
  bearerAudiences: list(Type.String({ minLength: 1 }), 'The `aud` values a bearer token must carry (one of; for an introspected token without `aud`, its `client_id`); required when a route has `bearer` — there is no "any audience".', { default: [] }),
  introspection: section({
    cacheTtl: duration('30s', 'How long an answer that lets a token in is reused (never past the token\'s `exp`): the longest a token revoked at the IdP keeps working on this replica.'),
    negativeCacheTtl: duration('5s', 'How long an answer that refuses a token is reused (a client retrying a bad token does not reach the IdP each time).'),
    cacheMaxEntries: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 10_000, description: 'Most introspection answers kept (least recently used go first).' }),
  }, 'Bearer tokens asked about at the IdP (routes with `bearer: introspect` or `jwt-then-introspect`), with the client authentication of `tokenEndpointAuthMethod`.', { default: {} }),
  bearerTokenType: Type.Union([Type.Literal('any'), Type.Literal('at+jwt')], {
    default: 'any',
    description: '`at+jwt`: a bearer JWT must be typed `at+jwt` (RFC 9068) — set it when the IdP types its access tokens (Auth0\'s RFC 9068 profile, Glewlwyd, the development IdP of `npm run demo`), so no other token it signs can pass. `any`: `JWT`, `at+jwt` or no `typ`, with the claim checks that refuse ID and logout tokens.',
  }),
  groupOverage: Type.Optional(section({
    graphUrl: text('Microsoft Graph\'s origin: `https://graph.microsoft.com`, or a national cloud\'s (`https://graph.microsoft.us`, `https://dod-graph.microsoft.us`, `https://microsoftgraph.chinacloudapi.cn`). The only place the user\'s access token is ever sent for groups; `http:` only for a loopback address (tests).', { default: 'https://graph.microsoft.com', pattern: GRAPH_PATTERN }),
    securityEnabledOnly: flag(false, '`true`: only security groups (`getMemberObjects` with `securityEnabledOnly: true`, as a *Security groups* groups claim). `false`: every group, directory role and administrative unit the user is in, transitively.'),
    maxGroups: Type.Integer({ minimum: 1, maximum: 11_000, default: 5000, description: 'More memberships than this (Graph answers at most 11,000) and the user is signed in **without** `groups` (fail closed, never a cut list). Keep sessions in mind: the cookie store holds a few hundred group ids (see identity.md).' }),
  }, 'Entra ID group overage: when an ID token names its `groups` in `_claim_names` instead of carrying them (more than 200 groups), fetch them from Microsoft Graph with the user\'s access token (`POST /v1.0/me/getMemberObjects`; scope `User.Read`) at sign-in and every refresh. The token\'s `_claim_sources` URL is never called. If they cannot be fetched the user has no `groups` (fail closed; the 403 page says why). Omitted: off — no Graph call is ever made. See identity.md.')),
};

export const ProviderSchema = section({
  id: Type.String({ pattern: PROVIDER_ID_PATTERN, default: 'default', description: 'This provider\'s id: routes name it in `providers`, rules test it (`{ provider: corp }`), metrics and audit lines carry it as `provider`. Letters, digits, `_` and `-`. Required in the list form.' }),
  ...providerKeys,
}, 'One OpenID Provider and this client (see providers.md).', { required: ['issuer', 'clientId'] });

export const ProviderListItemSchema = section({
  id: Type.String({ pattern: PROVIDER_ID_PATTERN, description: 'This provider\'s id (unique).' }),
  ...providerKeys,
}, 'One OpenID Provider of several.', { required: ['id', 'issuer', 'clientId'] });

/**
 * `oidc`: one provider as a mapping (as it always was; its id is `default`), or a list of providers
 * with ids. compile.ts turns both into `config.providers`, always a list.
 */
export const OidcSchema = Type.Union([
  ProviderSchema,
  list(ProviderListItemSchema, 'Several providers, each with an `id`.', { minItems: 1 }),
], {
  description: 'The OpenID Provider and this client: a mapping (one provider), or a list of providers each with an `id` — routes choose among them with `providers`, and a browser that may use several picks one on a chooser page (see providers.md). Every key below is per provider; in the list form write them in each item (`oidc[1].issuer`).',
});

export type ProviderInput = Static<typeof ProviderListItemSchema>;

// ---------------------------------------------------------------------------------------------
// The file, by topic. docs/configuration.md has one section per group, in this order; a new
// top-level key goes into the group it belongs to, and that is all the docs need.

export const CONFIG_GROUPS = [
  {
    title: 'Listener and proxy',
    keys: {
      publicUrl: text('External origin, e.g. `https://apps.example.com` (no path). The callback is `publicUrl + /oauth2/callback`, whatever the request\'s Host says. `http:` works for local development only (startup warning; no `Secure`/`__Host-` cookie).', { pattern: ORIGIN_PATTERN }),
      listen: section({
        host: text('Address of the public listener.', { default: '0.0.0.0' }),
        port: port(8080, 'Port of the public listener.'),
      }, 'The public listener.', { default: {} }),
      trustProxy: Type.Union([Type.Boolean(), list(Type.String({ minLength: 1 }), 'trusted peers')], {
        default: false,
        description: '`true`: believe `X-Forwarded-For/-Proto/-Host`, `X-Request-Id` and forward-auth\'s `X-Forwarded-Uri` from any peer; a list of IPs/CIDRs (`[10.0.0.0/8]`): only from those. Leave `false` when clients reach Portcullis directly — they could forge them.',
      }),
      workers: Type.Union([Type.Integer({ minimum: 1, maximum: 64 }), Type.Literal('auto')], {
        default: 1,
        description: 'Processes serving the port; `auto` = one per CPU core (see operations.md).',
      }),
      shutdownGracePeriod: duration('25s', 'On SIGTERM: stop accepting, let in-flight requests finish for up to this long, exit 0.'),
      logLevel: Type.Union((['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const).map((l) => Type.Literal(l)), { default: 'info', description: 'Log level.' }),
      auditLog: Type.Union([Type.Literal('all'), Type.Literal('denials'), Type.Literal('off')], {
        default: 'all',
        description: 'One audit line (info) per authorization decision: `all`, only `denials` (deny and unauthenticated), or `off`.',
      }),
      websocketOrigins: list(Type.String({ pattern: ORIGIN_PATTERN }), 'Origins (`https://app.example.com`: scheme, host, port; no path or wildcard) whose pages may open WebSockets here besides the request\'s own origin and publicUrl\'s; a browser upgrade from any other `Origin` gets 403. Needs a restart.', { default: [] }),
      stripCookies: list(Type.String({ pattern: "^[!#$%&'+.^_`|~0-9A-Za-z-]+\\*?$" }), 'Cookies never passed to upstreams besides Portcullis\'s own: exact names, a trailing `*` matches a prefix. For an IdP served on the same host name as the apps, its session cookies (Glewlwyd, tested: `[GLEWLWYD2_*]`; Keycloak, not tested: `[KEYCLOAK_*, AUTH_SESSION_ID*, KC_RESTART]`) — an app could otherwise act as the user at the IdP.', { default: [] }),
    },
  },
  {
    title: 'OpenID Connect',
    keys: {
      oidc: OidcSchema,
    },
  },
  {
    title: 'Sessions and redirects',
    keys: {
      session: section({
        secrets: Type.Optional(list(Type.String({ writeOnly: true }), 'Session secrets, each at least 32 bytes (e.g. `openssl rand -base64 48`); the **first seals, all open** (rotation, see sessions.md). Set this or `secretsFile`.', { minItems: 1, writeOnly: true })),
        secretsFile: Type.Optional(text('A file with one session secret a line (`#` comments allowed), as Kubernetes mounts a secret. Set this or `secrets`.')),
        store: Type.Union([Type.Literal('cookie'), Type.Literal('redis')], { default: 'cookie', description: '`cookie` (stateless, encrypted) or `redis`.' }),
        redis: section({
          url: Type.Optional(text('`redis[s]://[user:pass@]host[:port][/db]`; Sentinel: `redis://s1:26379,s2:26379?sentinel=mymaster[&sentinelPassword=…]`; Cluster: `redis://n1:7000,n2:7001?cluster=true`. Required with `store: redis`. Given with `store: cookie`, Redis only shares back-channel revocations and logout-token ids between replicas.', { pattern: '^rediss?://' })),
          keyPrefix: text('Prefix of every Redis key Portcullis writes.', { default: 'portcullis:' }),
        }, 'Redis, for `store: redis` or to share revocations between replicas.', { default: {} }),
        idleTimeout: duration('8h', 'No request for this long → sign in again. At most `absoluteTimeout`.'),
        absoluteTimeout: duration('24h', 'At most this long after sign-in, however active.'),
        cookieDomain: Type.Optional(Type.String({
          pattern: '^\\.?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$',
          description: 'Share the sign-in across hosts under a domain (`.example.com`); the cookie prefix is then `__Secure-`, not `__Host-`. Routes on hosts other than publicUrl\'s need it (config error otherwise: every sign-in would loop).',
        })),
        cookieName: Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$', default: 'portcullis', description: 'Base cookie name; `__Host-`/`__Secure-` prefixed on https.' }),
        cacheMaxEntries: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 100_000, description: 'Verified sessions kept in memory (LRU), so most requests neither decrypt nor call Redis.' }),
      }, 'Sessions: secrets, store, lifetimes, cookie. See sessions.md.'),
      redirects: section({
        allowedDomains: list(Type.String({ pattern: '^\\.?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*$' }), 'Where `?rd=` may send people after sign-in/out besides publicUrl\'s origin. `.example.com` = that domain and its subdomains (never `evilexample.com`); `app.example.com` = that host.', { default: [] }),
      }, 'Where people may be sent after sign-in and sign-out.', { default: {} }),
    },
  },
  {
    title: 'Routes',
    keys: {
      routes: list(RouteSchema, 'Routes, first match wins; no match → 404. At least one.', { minItems: 1 }),
    },
  },
  {
    title: 'Identity headers and assertions',
    keys: {
      identityHeaderEncoding: Type.Union([Type.Literal('percent'), Type.Literal('rfc2047')], {
        default: 'percent',
        description: 'Non-ASCII in identity header values: `percent` (UTF-8 percent-encoding, `Zoë` → `Zo%C3%AB`) or `rfc2047` (`=?UTF-8?B?Wm/Dqw==?=`); ASCII values are never changed.',
      }),
      identityHeaderBudget: Type.Integer({
        minimum: 1024, maximum: 65536, default: 8192,
        description: 'Bytes for all identity headers of one request together; over it, `X-Forwarded-Groups` is trimmed at a group boundary and `X-Forwarded-Groups-Truncated: true` added (one log warning per user, route and hour).',
      }),
      assertionSigning: section({
        keysFile: Type.Optional(text('A JWKS file of **private** keys for `X-Portcullis-Assertion`; the first signs, all are published at `/oauth2/jwks.json`. Without it a key is generated at start (a warning: it changes on restart and differs between replicas).')),
        algorithm: Type.Union([Type.Literal('ES256'), Type.Literal('RS256'), Type.Literal('EdDSA')], { default: 'ES256', description: 'Algorithm of a generated key.' }),
      }, 'Signing of `X-Portcullis-Assertion` (routes with `assertion`).', { default: {} }),
    },
  },
  {
    title: 'Metrics and admin',
    keys: {
      metrics: Type.Union([
        Type.Literal(false),
        section({
          host: text('Address of the metrics listener.', { default: '0.0.0.0' }),
          port: port(9090, 'Port of the metrics listener; never the public port.'),
        }, 'The metrics listener.'),
      ], { default: {}, description: 'Prometheus `/metrics` (and `/healthz`, `/readyz`, the admin endpoints) on its own listener, never on the public port. `metrics: false` disables it.' }),
      admin: section({
        tokenFile: Type.Optional(text('A file whose first line is the bearer token (at least 16 characters) of the admin endpoints `/admin/sessions` on the metrics listener; read at start. Without it those endpoints answer 404. Needs `metrics` on.')),
      }, 'Admin endpoints on the metrics listener (see operations.md).', { default: {} }),
    },
  },
  {
    title: 'Limits',
    keys: {
      rateLimit: section({
        signIn: Type.Integer({ minimum: 0, maximum: 100_000, default: 30, description: 'Requests a minute per client IP to each of `/oauth2/start` and `/oauth2/callback` (429 past it); `0` = off.' }),
      }, 'Rate limits (see security.md).', { default: {} }),
    },
  },
] as const;

type Groups = typeof CONFIG_GROUPS;
type Merge<T extends readonly { keys: object }[]> = T extends readonly [infer H extends { keys: object }, ...infer R extends readonly { keys: object }[]] ? H['keys'] & Merge<R> : unknown;
const allKeys = Object.assign({}, ...CONFIG_GROUPS.map((g) => g.keys)) as Merge<Groups>;

/** The whole configuration file. */
export const ConfigSchema = Type.Object(allKeys, {
  additionalProperties: false,
  title: 'Portcullis configuration',
  definitions: CONFIG_DEFINITIONS,
});

/** The configuration as plain data: what the file says, with every default applied. */
export type ConfigInput = Static<typeof ConfigSchema>;
export type RouteInput = Static<typeof RouteSchema>;

/**
 * Every key path a schema describes — `oidc.issuer`, `routes[].match.host` — following lists and
 * the mapping branch of a union (`metrics.port`). Keys refused outright (`not: {}`, as the Helm
 * chart marks the keys it sets itself) have none below them.
 */
export function keyPaths(schema: unknown, prefix = ''): string[] {
  const node = schema as Record<string, unknown>;
  if ('not' in node) return [];
  if (node.type === 'array') return keyPaths(node.items, `${prefix}[]`);
  const obj = node.type === 'object' ? node : (node.anyOf as Array<Record<string, unknown>> | undefined)?.find((b) => b.type === 'object');
  return Object.entries((obj?.properties ?? {}) as Record<string, unknown>).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return [path, ...keyPaths(v, path)];
  });
}
