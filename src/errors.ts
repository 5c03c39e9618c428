// Beside the pipeline, at the bottom of it: every failure Portcullis answers with is a coded error
// from ONE registry (REGISTRY below): a stable `code`, its HTTP status, a plain-words message safe
// to show the user, and — for docs/errors.md, generated from this table by scripts/gen-errors.ts —
// when it happens and what the operator should check. The operator's detail rides in `cause`
// (logged, never shown). `expose` follows oidc-provider: status < 500 messages are for the user.
// `ErrorCode` is the registry's keys, so a misspelt code is a type error, and every code a client
// or a dashboard can meet is documented.
//
// Codes are `ERR_<AREA>_<WHAT>`, except the door's answers to "who are you / may you"
// (`unauthenticated`, `forbidden`, `invalid_token`, `insufficient_user_authentication`): API clients
// matched the first two before the registry existed, and the last two are RFC 6750's and RFC 9470's
// own names, also sent in WWW-Authenticate.

interface ErrorSpec {
  readonly status: number;
  /**
   * What the user sees (the error page's text and the JSON `message`). A function when the text
   * names the specific reason; `detail` then says what that reason is (for the docs).
   */
  readonly message: string | ((detail: string) => string);
  readonly detail?: string;
  /** Offer "sign in again" on the error page (callback and session failures). */
  readonly retrySignIn?: boolean;
  /** Seconds for a Retry-After header (429, 503s). */
  readonly retryAfter?: number;
  /** Docs: when it happens. */
  readonly when: string;
  /** Docs: what the operator should check (or that nothing needs doing). */
  readonly operator: string;
}

const CLIENT_ONLY = 'Nothing on the server side: the client sent it. A burst from one address in the logs (at debug level) is worth a look.';

/** The registry: one entry per code, in the order docs/errors.md lists them. */
export const REGISTRY = {
  // ── The request itself ────────────────────────────────────────────────────────────────────────
  ERR_REQUEST_BAD: {
    status: 400, message: (reason) => `This request cannot be served: ${reason}.`, detail: 'the reason',
    when: 'The request is well-formed HTTP but cannot be served as it is: more than one Host header, or Fastify refused it (e.g. an invalid URL component).',
    operator: CLIENT_ONLY,
  },
  ERR_REQUEST_BAD_PATH: {
    status: 400, message: (reason) => `This address cannot be served: ${reason}.`, detail: 'the reason',
    when: 'The request target does not normalise to a safe path (encoded slashes or dots that climb out, NUL, a target naming another host…); it is refused before any route is looked at.',
    operator: CLIENT_ONLY,
  },
  ERR_REQUEST_MALFORMED: {
    status: 400, message: 'The request is not valid HTTP/1.1.',
    when: "Node's HTTP parser refused the bytes (the request is answered on the socket and the connection closed).",
    operator: CLIENT_ONLY,
  },
  ERR_REQUEST_HEADERS_TOO_LARGE: {
    status: 431, message: 'The request headers are too large.',
    when: "The request's headers exceed Node's limit (16 KiB by default).",
    operator: 'A browser that hits this usually carries too many cookies for this domain; the proxy in front may also add large headers. Node\'s limit is `--max-http-header-size`.',
  },
  ERR_REQUEST_TIMEOUT: {
    status: 408, message: 'The request took too long to arrive.',
    when: "The client did not send the request's headers within Node's headers timeout (60 s).",
    operator: 'A slow or stalled client, or a load balancer holding connections open without sending.',
  },
  ERR_REQUEST_BODY_TOO_LARGE: {
    status: 413, message: 'The request body is too large for this endpoint.',
    when: 'A body sent to one of Portcullis\'s own endpoints is larger than it accepts (16 KiB for form posts such as the back-channel logout, 1 MiB otherwise). Proxied requests are streamed to the upstream and have no such limit here.',
    operator: CLIENT_ONLY,
  },
  ERR_REQUEST_BODY_MALFORMED: {
    status: 400, message: 'The request body cannot be read (it is not what its Content-Type says).',
    when: 'A body sent to one of Portcullis\'s own endpoints does not parse (e.g. invalid JSON with `Content-Type: application/json`), is empty where one is needed, or does not match its Content-Length.',
    operator: CLIENT_ONLY,
  },
  ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE: {
    status: 415, message: 'This endpoint does not accept a body of this Content-Type.',
    when: 'A body sent to one of Portcullis\'s own endpoints has a Content-Type it does not read (the back-channel logout takes `application/x-www-form-urlencoded`, the admin endpoints JSON).',
    operator: 'If an IdP\'s back-channel logout delivery gets this, its request is not what OpenID Back-Channel Logout 1.0 §2.5 prescribes.',
  },
  ERR_ROUTE_NOT_FOUND: {
    status: 404, message: 'Nothing is served at this address.',
    when: 'No route matches the host, path and method; or an unknown path under `/oauth2/` (Portcullis\'s own, never proxied); or an unknown path on the metrics/admin listener.',
    operator: 'Check `routes[].match` (`portcullis explain --url …` shows which route a URL matches, after normalisation).',
  },

  // ── Who are you / may you (the door's decision) ──────────────────────────────────────────────
  unauthenticated: {
    status: 401, message: 'Sign-in required. Browsers are sent to sign in; API clients must send a session cookie or (on bearer routes) a token.',
    when: 'A request that is not a browser navigation reaches a route with `auth: required` (or `/oauth2/userinfo`) without a valid session. Browser navigations are redirected to sign in instead; forward-auth answers this with `signInUrl` for the fronting proxy.',
    operator: 'Nothing, usually. Many at once for signed-in users: sessions are being refused — look for session store outages, a changed `session.secrets` (the first key must be kept as a later one to open older cookies), or revocations.',
  },
  forbidden: {
    status: 403, message: 'You are signed in but not allowed to use this route.',
    when: "The user is signed in, but the route's `allow` rule does not admit their claims. A browser gets the access-denied page with a sign-out link; the JSON body adds `route`.",
    operator: 'The audit log line of the decision names the rule that decided; `portcullis explain --url … --claims …` replays it.',
  },
  invalid_token: {
    status: 401, message: 'The bearer token is not valid here.',
    when: 'On a route with `bearer: true`, the `Authorization: Bearer` token failed verification: signature, issuer, audience (`oidc.bearerAudiences`), expiry, or it is not an access token (an ID or logout token; `oidc.bearerTokenType`). Answered with RFC 6750 `WWW-Authenticate: Bearer error="invalid_token"`, never a redirect.',
    operator: 'The debug log line carries the reason. Check the token\'s `aud` against `oidc.bearerAudiences` and its `typ` against `oidc.bearerTokenType`.',
  },

  insufficient_user_authentication: {
    status: 401,
    message: (needed) => `This address needs ${needed}; your current sign-in does not meet that. Sign in again to continue (you stay signed in everywhere else). API clients find what is needed in WWW-Authenticate (acr_values, max_age).`,
    detail: 'what the route asks for, e.g. "a sign-in with one of the authentication levels phr, mfa, at most 10 minutes old"',
    when: "The user passes the route's `allow` rule, but the route's `stepUp` asks for another `acr` or a more recent `auth_time` than the session (or bearer token) carries, and the request is not a browser navigation (those are sent to the IdP with `acr_values` / `max_age` instead). Answered with RFC 9470's `WWW-Authenticate: Bearer error=\"insufficient_user_authentication\"` (bearer tokens) or the `OIDC` challenge with a `sign_in_url` that steps up (sessions, forward-auth); the JSON body adds `route`, `acr_values` and `max_age`.",
    operator: 'Nothing, usually. If users keep arriving here after signing in, the IdP does not issue the `acr` the route lists (see `ERR_CALLBACK_ACR_NOT_REQUESTED`) or its clock is far off (`auth_time`).',
  },

  // ── Signing in (the callback from the IdP) ───────────────────────────────────────────────────
  ERR_CALLBACK_STATE_MISSING: {
    status: 400, retrySignIn: true,
    message: 'The sign-in response carries no state parameter, so it cannot be matched to a sign-in you started.',
    when: '`/oauth2/callback` was opened without `state` (a bookmarked or hand-made callback URL).',
    operator: CLIENT_ONLY,
  },
  ERR_CALLBACK_STATE_MISMATCH: {
    status: 400, retrySignIn: true,
    message: 'This sign-in response does not match a sign-in started in this browser, or it was already used or has expired (sign-ins must finish within 10 minutes).',
    when: "The callback's `state` matches no pending sign-in in this browser's transaction cookie: used twice (back button), older than 10 minutes, started in another browser, or a login-CSRF attempt.",
    operator: 'Many of these: check that `publicUrl` is the address browsers use (the transaction cookie is set for it), and that the proxy in front passes cookies through.',
  },
  ERR_PROVIDER_UNKNOWN: {
    status: 400,
    message: (id) => `There is no identity provider ${id} to sign in with here.`, detail: 'the id asked for, quoted (or "of that name" when it is not an id)',
    when: '`/oauth2/start?provider=ID` names no provider of the `oidc` list (a stale bookmark, a typo, a provider removed from the configuration).',
    operator: 'If a link of yours says `provider=`, check its id against `oidc[].id`.',
  },
  ERR_CALLBACK_IDP_ERROR: {
    status: 400, retrySignIn: true,
    message: (said) => `The identity provider reported an error: ${said}.`, detail: "the IdP's error (and description)",
    when: 'The IdP came back to the callback with an OAuth `error` other than `access_denied` (e.g. `invalid_scope`, `temporarily_unavailable`).',
    operator: 'The IdP\'s `error` and `error_description` are in the message; check the client\'s registration (scopes, redirect URI `publicUrl`/oauth2/callback).',
  },
  ERR_CALLBACK_ACCESS_DENIED: {
    status: 403, retrySignIn: true,
    message: 'The identity provider did not grant access (the sign-in was cancelled or refused).',
    when: 'The IdP came back with `error=access_denied`: the user cancelled, or the IdP refused them (consent, a policy of the IdP).',
    operator: 'Nothing, unless the user should have been admitted by the IdP.',
  },
  ERR_CALLBACK_CODE_REJECTED: {
    status: 400, retrySignIn: true,
    message: 'The identity provider refused the sign-in code (it may have been used already or expired).',
    when: 'The token endpoint answered `invalid_grant` (Glewlwyd: `invalid_code`, or a bare 400 with no OAuth error body) to the authorization code: used already, expired, or PKCE failed.',
    operator: 'Occasional ones are users going back; many: check clock skew between Portcullis and the IdP.',
  },
  ERR_CALLBACK_CLIENT_AUTH: {
    status: 502, retrySignIn: true,
    message: 'Portcullis could not authenticate to the identity provider (it answered invalid_client), so the sign-in could not be completed. Operator: check oidc.clientSecret (or, with private_key_jwt, oidc.clientKeysFile) and oidc.tokenEndpointAuthMethod against the client registered at the IdP.',
    when: 'The token endpoint answered `invalid_client` (HTTP 401): Portcullis\'s client credentials were refused.',
    operator: 'Check `oidc.clientSecret` and `oidc.tokenEndpointAuthMethod` against the client registered at the IdP (some IdPs do not decode a form-encoded secret: try `client_secret_post`). With `private_key_jwt`: the IdP must know the signing key (the first of `oidc.clientKeysFile`) — its `jwks_uri` set to `publicUrl/oauth2/client-jwks.json` and reachable from the IdP, or the public key registered — and accept the assertion\'s `aud` (`oidc.clientAssertionAudience`); the log line has the IdP\'s own words.',
  },
  ERR_CALLBACK_TOKEN_REQUEST_REFUSED: {
    status: 502, retrySignIn: true,
    message: (said) => `The identity provider refused Portcullis's token request (${said}), so the sign-in could not be completed. Operator: check the client's registration at the IdP (grant types, redirect URI, scopes) and its credentials (oidc.clientSecret, oidc.tokenEndpointAuthMethod).`,
    detail: "the IdP's error code",
    when: 'The token endpoint refused the request with another OAuth error (`unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `invalid_request`…).',
    operator: "Check the client's registration at the IdP: grant types (authorization_code, refresh_token), redirect URI, scopes — and its credentials: some IdPs (Glewlwyd) answer `unauthorized_client` for a wrong `oidc.clientSecret` or `oidc.tokenEndpointAuthMethod`.",
  },
  ERR_CALLBACK_ISSUER_MISMATCH: {
    status: 400, retrySignIn: true,
    message: 'This sign-in response did not come from the identity provider the sign-in was started with, so it was refused.',
    when: "RFC 9207: the callback's `iss` parameter is not the issuer of the provider this sign-in started at, or is missing although that provider's metadata says it sends one — a browser sent back by another IdP, or a mix-up attack between providers. Nothing was redeemed.",
    operator: 'With several providers, check that each provider\'s `issuer` is exactly what its IdP sends as `iss`; the error log line names the check.',
  },
  ERR_CALLBACK_ID_TOKEN_INVALID: {
    status: 401, retrySignIn: true,
    message: 'The identity provider\'s ID token failed verification, so you were not signed in.',
    when: 'The ID token failed a check: signature and algorithm (`oidc.idTokenSigningAlgs`), issuer, audience, nonce, expiry, or `iat` in the future.',
    operator: 'The error log line carries the check that failed. Check clocks (`oidc.clockTolerance`), the IdP\'s signing algorithm, and that `oidc.issuer` is exactly the IdP\'s issuer.',
  },
  ERR_CALLBACK_ACR_NOT_REQUESTED: {
    status: 401, retrySignIn: true,
    message: (said) => `This page needs a stronger sign-in, and the identity provider did not confirm one: ${said}. Sign in again and choose a stronger method (a security key or a one-time code, for example), or ask the application's owner which one is needed.`,
    detail: 'which `acr` came back and which were asked for',
    when: 'A sign-in for a route with `stepUp.acr` came back with an ID token whose `acr` is missing or not one of the values requested in `acr_values` (an IdP that ignored the request, or reused an earlier, weaker sign-in). The session is left as it was.',
    operator: 'Check that the IdP knows the route\'s `stepUp.acr` values (its `acr_values_supported`) and is configured to step up for them (Keycloak: ACR to level-of-authentication mapping; Entra: authentication context). The page names the `acr` that came back.',
  },
  ERR_CALLBACK_AUTH_TIME_INVALID: {
    status: 401, retrySignIn: true,
    message: (said) => `This page needs a recent sign-in, and the identity provider did not confirm one: ${said}. Sign in again.`,
    detail: 'what was wrong with `auth_time`',
    when: 'A sign-in for a route with `stepUp.maxAge` (sent as `max_age`) came back with an ID token whose `auth_time` is missing, older than `max_age` (plus `oidc.clockTolerance`) or in the future (OIDC Core §3.1.2.1 requires it whenever `max_age` is sent).',
    operator: 'An IdP that omits `auth_time` cannot serve `maxAge` routes; a stale one usually means the IdP reused its SSO session despite `prompt=login`, or clocks differ (check NTP on both).',
  },
  ERR_CALLBACK_USERINFO_MISMATCH: {
    status: 401, retrySignIn: true,
    message: 'The identity provider returned inconsistent user information, so you were not signed in.',
    when: "The userinfo response names another subject than the ID token's `sub`.",
    operator: 'An IdP bug or a misrouted userinfo endpoint: check the discovery document\'s `userinfo_endpoint`.',
  },
  ERR_RATE_LIMITED: {
    status: 429, retryAfter: 60,
    message: 'Too many sign-in attempts from your address. Please wait a minute and try again.',
    when: 'One client IP started or completed sign-ins faster than `rateLimit.signIn` allows (`Retry-After` says when the next one is let through).',
    operator: 'Behind a proxy, check `trustProxy` (otherwise every user shares the proxy\'s address); `portcullis_rate_limited_total` counts them.',
  },
  ERR_SIGN_OUT_CROSS_SITE: {
    status: 403, message: 'Sign-out must be confirmed from this site.',
    when: 'A sign-out POST came from a page of another site (its `Origin` or `Sec-Fetch-Site`): refused so no page can sign users out.',
    operator: 'If your own pages post to `/oauth2/sign_out` from another host, use a link to the sign-out page instead.',
  },

  // ── The identity provider ─────────────────────────────────────────────────────────────────────
  ERR_IDP_UNAVAILABLE: {
    status: 503, retryAfter: 10, retrySignIn: true,
    message: 'Sign-in is unavailable right now: the identity provider cannot be reached. Please try again in a moment.',
    when: 'Discovery or the IdP\'s keys are not loaded yet, or a connection to the IdP failed (refused, reset, DNS).',
    operator: 'Check that Portcullis can reach `oidc.issuer` (+ /.well-known/openid-configuration); `/readyz` says `idp: false` meanwhile.',
  },
  ERR_IDP_TIMEOUT: {
    status: 504, retrySignIn: true,
    message: 'The identity provider did not answer in time. Please try again.',
    when: 'A request to the IdP (token, userinfo, keys) took longer than `oidc.timeout`.',
    operator: "The IdP's health and latency from Portcullis's network.",
  },
  ERR_IDP_BAD_RESPONSE: {
    status: 502, retrySignIn: true,
    message: 'The identity provider gave an unexpected answer. Please try again.',
    when: 'The IdP answered 5xx, or something that is not the JSON OpenID Connect prescribes.',
    operator: "The error log line carries the IdP's answer; check the IdP's own logs.",
  },
  ERR_TOKEN_EXCHANGE_REFUSED: {
    status: 502,
    message: (said) => `The identity provider refused to issue a token for the application behind this address (${said}), so the request was not forwarded.`,
    detail: "the IdP's error code",
    when: 'A route with `tokenExchange` asked the IdP for a token for its audience (RFC 8693) and the IdP refused: the client may not exchange tokens, the audience or scope is not allowed, or the user\'s token is no longer valid.',
    operator: 'Allow the token-exchange grant for this client at the IdP, with the route\'s `tokenExchange.audience` (and `scope`); the error log line carries the IdP\'s answer.',
  },
  ERR_IDP_NO_INTROSPECTION: {
    status: 503, retryAfter: 10,
    message: 'API tokens cannot be checked right now.',
    when: 'A route with `bearer: introspect` (or `jwt-then-introspect` and an opaque token) got a token, but the IdP\'s discovery document names no `introspection_endpoint`.',
    operator: 'Enable token introspection at the IdP for this client (RFC 7662), or use `bearer: jwt` if its access tokens are JWTs.',
  },

  // ── Sessions ──────────────────────────────────────────────────────────────────────────────────
  ERR_REFRESH_INVALID_GRANT: {
    status: 401, retrySignIn: true,
    message: 'Your session has ended at the identity provider; please sign in again.',
    when: 'Renewing the tokens was refused with `invalid_grant` (or a bare 400 with no OAuth error body, Glewlwyd\'s answer): the refresh token was revoked, expired, or the user signed out at the IdP. The session is ended everywhere.',
    operator: 'Nothing, usually; many at once: the IdP\'s refresh token lifetime may be shorter than `session.idleTimeout`.',
  },
  ERR_REFRESH_CLAIMS_MISMATCH: {
    status: 401, retrySignIn: true,
    message: 'Your session could not be renewed; please sign in again.',
    when: 'A refresh returned an ID token for another issuer, subject, audience or authorized party than the session\'s (OpenID Connect Core §12.2): the session is ended.',
    operator: 'An IdP bug or a misconfigured client shared between apps; the log line names the claim that differed.',
  },
  ERR_SESSION_TOO_LARGE: {
    status: 500,
    message: 'Your account has too many group memberships (or other claims) to fit in a browser session cookie, so you could not be signed in. Signing in again will not help: the operator can switch to the Redis session store (session.store: redis) or have the identity provider send fewer groups or claims.',
    when: 'With the cookie store, the session (claims and tokens, compressed and sealed) would not fit in the cookies a browser keeps.',
    operator: 'Use `session.store: redis`, or have the IdP send fewer groups/claims; the log line names the user and the size.',
  },
  ERR_SESSION_STORE_UNAVAILABLE: {
    status: 503, retryAfter: 5,
    message: 'Your session cannot be checked right now (the session store is unreachable). Please try again in a moment.',
    when: 'Redis did not answer while a session was being read or written. Public routes keep serving (without identity).',
    operator: 'Check Redis (`session.redis`); `/readyz` reports `redis: false` meanwhile.',
  },

  // ── Back-channel logout (the IdP → Portcullis) ───────────────────────────────────────────────
  ERR_LOGOUT_TOKEN_MISSING: {
    status: 400, message: 'The back-channel logout request carries no logout_token.',
    when: 'A POST to `/oauth2/backchannel_logout` without a `logout_token` form field (or one over 16 KiB).',
    operator: "The IdP's back-channel logout configuration (the URI must be `publicUrl`/oauth2/backchannel_logout).",
  },
  ERR_LOGOUT_TOKEN_INVALID: {
    status: 400, message: 'The logout token failed verification.',
    when: 'The logout token failed a check of OpenID Back-Channel Logout 1.0 §2.6: signature, issuer, audience, age, the logout event, no nonce, `sid` or `sub`, `jti`.',
    operator: 'The info log line carries the failed check; the IdP\'s logs show which session it tried to end.',
  },
  ERR_LOGOUT_TOKEN_REPLAYED: {
    status: 400, message: 'The logout token was already used.',
    when: 'A logout token whose `jti` was already accepted (shared through Redis when configured) was sent again.',
    operator: 'An IdP retrying a delivery it thought failed is harmless; otherwise someone replays captured tokens.',
  },
  ERR_LOGOUT_STORE_UNAVAILABLE: {
    status: 503, retryAfter: 5,
    message: 'The logout could not be recorded right now (the session store is unreachable); it was not marked as used, so retrying the delivery will work.',
    when: 'The revocation a logout token asks for could not be stored (Redis down). The sessions have ended on this process; the IdP\'s retry is served.',
    operator: 'Check Redis; make sure the IdP retries failed back-channel deliveries.',
  },

  // ── Forwarding to the upstream ────────────────────────────────────────────────────────────────
  ERR_UPSTREAM_UNAVAILABLE: {
    status: 502, message: 'The application behind this address is not answering.',
    when: 'The route\'s upstream refused or reset the connection, or sent something that is not HTTP.',
    operator: 'Check `routes[].upstream` and the upstream itself; `portcullis_upstream_errors_total{route,kind}` counts these.',
  },
  ERR_UPSTREAM_TIMEOUT: {
    status: 504, message: 'The application behind this address took too long to answer.',
    when: "The upstream did not answer within the route's `timeout`.",
    operator: 'The upstream\'s latency, or raise `routes[].timeout` for slow endpoints.',
  },
  ERR_DRAINING: {
    status: 503, retryAfter: 1, message: 'This instance is shutting down; please try again.',
    when: 'A new request reached an instance that is draining (SIGTERM): in-flight requests finish, new ones are sent elsewhere.',
    operator: 'Nothing; if clients see many, the load balancer keeps sending to draining instances (it should follow `/readyz`).',
  },

  // ── WebSocket upgrades ────────────────────────────────────────────────────────────────────────
  ERR_UPGRADE_REFUSED: {
    status: 400, message: (reason) => reason, detail: 'the reason, e.g. "WebSocket upgrades are not enabled on this route."',
    when: 'An upgrade that is not a WebSocket GET on a route with `websocket: true` (other methods, other protocols, Portcullis\'s own paths).',
    operator: 'Set `websocket: true` on the route if it should accept WebSockets.',
  },
  ERR_UPGRADE_CROSS_ORIGIN: {
    status: 403, message: 'This WebSocket was opened by a page of another site; it is not accepted here.',
    when: "A browser's WebSocket upgrade came from a page whose `Origin` is neither the request's own, `publicUrl`'s, nor in `websocketOrigins` (cross-site WebSocket hijacking guard).",
    operator: 'Add the page\'s origin to `websocketOrigins` if it should be allowed.',
  },

  // ── Forward-auth (nginx auth_request, Traefik forwardAuth) ───────────────────────────────────
  ERR_FORWARD_AUTH_UNTRUSTED: {
    status: 400,
    message: 'Forward-auth answers only trusted proxies (trustProxy), since it must believe X-Forwarded-Uri; this peer is not trusted.',
    when: '`/oauth2/auth` was asked by a peer that `trustProxy` does not trust.',
    operator: 'Add the fronting proxy\'s address to `trustProxy`.',
  },
  ERR_FORWARD_AUTH_BAD_REQUEST: {
    status: 400, message: (reason) => reason, detail: 'what is missing or wrong',
    when: '`/oauth2/auth` was asked without `X-Forwarded-Uri` (Traefik) or an absolute `X-Original-URL` (nginx), or with an `X-Forwarded-Method` that is not a method Portcullis serves (names are case-sensitive: `get` is not `GET`).',
    operator: 'The fronting proxy\'s forward-auth configuration (nginx and Traefik: docs/forward-auth.md).',
  },
  ERR_FORWARD_AUTH_METHOD_MISSING: {
    status: 400,
    message: 'A route for this address allows only some methods: send the original method in X-Forwarded-Method (nginx: proxy_set_header X-Forwarded-Method $request_method;).',
    when: 'A route that could match lists `methods`, and the fronting proxy did not say which method the original request had (judging it as GET would let other methods through).',
    operator: 'nginx: `proxy_set_header X-Forwarded-Method $request_method;` in the auth location.',
  },

  // ── Admin endpoints (metrics/admin listener) ─────────────────────────────────────────────────
  ERR_ADMIN_UNAUTHORIZED: {
    status: 401, message: 'A valid admin bearer token is required (admin.tokenFile).',
    when: 'An `/admin/` request without `Authorization: Bearer <token>` or with another token than `admin.tokenFile`\'s.',
    operator: 'The warning log line names the caller\'s address; the token is in `admin.tokenFile`.',
  },
  ERR_ADMIN_BAD_REQUEST: {
    status: 400, message: (what) => `Give ${what}.`, detail: 'what the endpoint needs',
    when: '`GET /admin/sessions` without `?sub=`, or `POST /admin/sessions/revoke` without exactly one of `{"sub"}` / `{"sid"}`.',
    operator: 'The request, as docs/sessions.md ("List and end a user\'s sessions") describes it.',
  },
  ERR_ADMIN_LIST_UNSUPPORTED: {
    status: 501, message: "Sessions live in browsers' cookies: list is not possible; revoke by sub works through the revocation list.",
    when: '`GET /admin/sessions` with the cookie session store: there is nothing server-side to list.',
    operator: 'Use `session.store: redis` to list sessions; revoking works with either store.',
  },
  ERR_ADMIN_STORE_UNAVAILABLE: {
    status: 503, retryAfter: 2, message: (what) => `The session store (Redis) does not answer: ${what}.`, detail: 'what did not happen',
    when: 'Redis did not answer an admin list, or a revocation could not be stored there (it took effect in the process that ran it).',
    operator: 'Check Redis; retry the revocation once it answers.',
  },
  ERR_ADMIN_NO_WORKER: {
    status: 503, retryAfter: 2, message: (why) => `No worker answered the admin request (${why}); retry.`, detail: 'why',
    when: 'With `workers: N`, the primary found no live worker to run the admin operation, or none answered within 10 s.',
    operator: 'Worker crashes or restarts in the log; `portcullis_workers`.',
  },

  // ── Anything else ─────────────────────────────────────────────────────────────────────────────
  ERR_INTERNAL: {
    status: 500, message: 'Something went wrong inside the proxy.',
    when: "An unexpected failure inside Portcullis (a bug). The request is answered; the process keeps serving.",
    operator: 'The error log line with this request id carries the stack: please report it.',
  },
} as const satisfies Record<string, ErrorSpec>;

/** Every code Portcullis answers with. */
export type ErrorCode = keyof typeof REGISTRY;
type Registry = typeof REGISTRY;
/** Codes whose message names a specific reason (`detail` required). */
type DetailedCode = { [C in ErrorCode]: Registry[C]['message'] extends string ? never : C }[ErrorCode];

export const ERROR_CODES = Object.keys(REGISTRY) as ErrorCode[];

export function isErrorCode(s: string): s is ErrorCode {
  return Object.hasOwn(REGISTRY, s);
}

interface CodedOptions {
  cause?: unknown;
  /** Overrides the registry's Retry-After (a rate limiter knows when the next request is let through). */
  retryAfter?: number;
}

export class PortcullisError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly expose: boolean;
  /** Offer "sign in again" on the error page (callback and session failures). */
  readonly retrySignIn: boolean;
  /** Seconds for a Retry-After header (429, 503s). */
  readonly retryAfter: number | undefined;

  /** Status, message and hints come from the registry; use `coded()` (it checks `detail` per code). */
  constructor(code: ErrorCode, opts: CodedOptions & { detail?: string } = {}) {
    const spec: ErrorSpec = REGISTRY[code];
    const message = typeof spec.message === 'string' ? spec.message : spec.message(opts.detail ?? 'see the log');
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PortcullisError';
    this.code = code;
    this.statusCode = spec.status;
    this.expose = spec.status < 500;
    this.retrySignIn = spec.retrySignIn ?? false;
    this.retryAfter = opts.retryAfter ?? spec.retryAfter;
  }
}

/** A coded error from the registry; codes whose message names a reason need `detail`. */
export function coded<C extends Exclude<ErrorCode, DetailedCode>>(code: C, opts?: CodedOptions): PortcullisError;
export function coded<C extends DetailedCode>(code: C, opts: CodedOptions & { detail: string }): PortcullisError;
export function coded(code: ErrorCode, opts: CodedOptions & { detail?: string } = {}): PortcullisError {
  return new PortcullisError(code, opts);
}

/** Text an IdP chose, shown in a message: printable ASCII only, and short. */
const idpText = (s: string, max: number) => s.replace(/[^\x20-\x7e]/g, '').slice(0, max);

/** Named constructors for the failures the stages meet (each one registry code). */
export const errors = {
  badRequest: (reason: string) => coded('ERR_REQUEST_BAD', { detail: reason }),
  badPath: (reason: string) => coded('ERR_REQUEST_BAD_PATH', { detail: reason }),
  noRoute: (cause?: unknown) => coded('ERR_ROUTE_NOT_FOUND', { cause }),
  notOwnEndpoint: (cause?: unknown) => coded('ERR_ROUTE_NOT_FOUND', { cause }),

  callbackNoState: (cause?: unknown) => coded('ERR_CALLBACK_STATE_MISSING', { cause }),
  callbackUnknownState: (cause?: unknown) => coded('ERR_CALLBACK_STATE_MISMATCH', { cause }),
  callbackIdpError: (error: string, description: string | undefined) => error === 'access_denied'
    ? coded('ERR_CALLBACK_ACCESS_DENIED')
    : coded('ERR_CALLBACK_IDP_ERROR', { detail: `${error}${description ? ` — ${description}` : ''}` }),
  callbackCodeRejected: (cause?: unknown) => coded('ERR_CALLBACK_CODE_REJECTED', { cause }),
  callbackClientAuth: (cause?: unknown) => coded('ERR_CALLBACK_CLIENT_AUTH', { cause }),
  callbackTokenRefused: (error: string, cause?: unknown) => coded('ERR_CALLBACK_TOKEN_REQUEST_REFUSED', { detail: idpText(error, 60), cause }),
  idTokenInvalid: (cause?: unknown) => coded('ERR_CALLBACK_ID_TOKEN_INVALID', { cause }),
  userinfoMismatch: (cause?: unknown) => coded('ERR_CALLBACK_USERINFO_MISMATCH', { cause }),

  providerUnknown: (id: string) => coded('ERR_PROVIDER_UNKNOWN', { detail: /^[A-Za-z0-9_-]{1,40}$/.test(id) ? `"${id}"` : 'of that name' }),
  /** A session of a provider no longer configured: nothing can refresh it, so it ends as a refused refresh does. */
  providerGone: (id: string) => coded('ERR_REFRESH_INVALID_GRANT', { cause: new Error(`the session's provider "${id}" is no longer configured`) }),
  idpUnavailable: (cause?: unknown) => coded('ERR_IDP_UNAVAILABLE', { cause }),
  idpTimeout: (cause?: unknown) => coded('ERR_IDP_TIMEOUT', { cause }),
  idpBadResponse: (cause?: unknown) => coded('ERR_IDP_BAD_RESPONSE', { cause }),

  draining: (cause?: unknown) => coded('ERR_DRAINING', { cause }),
  logoutNotStored: (cause?: unknown) => coded('ERR_LOGOUT_STORE_UNAVAILABLE', { cause }),
  sessionTooLarge: (cause?: unknown) => coded('ERR_SESSION_TOO_LARGE', { cause }),
  storeUnavailable: (cause?: unknown) => coded('ERR_SESSION_STORE_UNAVAILABLE', { cause }),

  upstreamUnavailable: (cause?: unknown) => coded('ERR_UPSTREAM_UNAVAILABLE', { cause }),
  upstreamTimeout: (cause?: unknown) => coded('ERR_UPSTREAM_TIMEOUT', { cause }),

  signOutCrossSite: (cause?: unknown) => coded('ERR_SIGN_OUT_CROSS_SITE', { cause }),
  rateLimited: (retryAfter?: number) => coded('ERR_RATE_LIMITED', { retryAfter }),
} as const;

/**
 * Fastify's own 4xx errors (body parsing, URL decoding; FST_ERR_*) → the registry's codes. The
 * user-safe message is ours; Fastify's text goes to the log through `cause`.
 */
function fromFastify(code: string | undefined, status: number, err: unknown): PortcullisError {
  if (status === 413) return coded('ERR_REQUEST_BODY_TOO_LARGE', { cause: err });
  if (status === 415) return coded('ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE', { cause: err });
  if (status === 404) return coded('ERR_ROUTE_NOT_FOUND', { cause: err });
  if (code?.startsWith('FST_ERR_CTP_') || err instanceof SyntaxError) return coded('ERR_REQUEST_BODY_MALFORMED', { cause: err });
  return coded('ERR_REQUEST_BAD', { detail: 'it could not be understood', cause: err });
}

/** Any thrown value → a PortcullisError (unknown errors become an opaque 500, detail kept in cause). */
export function asPortcullisError(err: unknown): PortcullisError {
  if (err instanceof PortcullisError) return err;
  const status = (err as { statusCode?: number })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = (err as { code?: unknown }).code;
    return fromFastify(typeof code === 'string' ? code : undefined, status, err);
  }
  return coded('ERR_INTERNAL', { cause: err });
}
