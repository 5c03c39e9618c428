// Log redaction: no cookie value, token, authorization code or secret reaches a log line, at any
// level. These are pino `redact.paths` (censor '[redacted]'), used by the proxy's logger (src/app.ts)
// and the cluster primary's (src/cluster.ts). test/operability/log-secrets.test.ts checks the
// result field by field, decoded (byte arrays, base64, percent-encoding), after a full session, after
// requests Node's HTTP parser rejects, and on the error objects of the libraries below.
//
// What can carry a secret into a log line is mostly what Portcullis does not build itself: errors
// from Node, undici, openid-client/oauth4webapi and ioredis (logged under `err`, where pino's error
// serializer copies every enumerable property), and request/response objects. Our own log calls pass
// plain fields (route, sub, code, messages), never headers, cookies or tokens.
//
// Cost: pino tries a path that starts with `*` against every top-level field of every line —
// including the per-request audit line — while `err.…` paths cost only on lines with an `err`, and
// top-level names cost nothing unless that field is present. So the `*.` list stays short, the
// deeper error paths are rooted at `err`, and the generous list is the top-level one.

/** Paths tried one level below every top-level field (`err.X`, `req.X`, `res.X`, `anything.X`). */
const ONE_LEVEL_DOWN = [
  // The raw request bytes — request line, Cookie, Authorization and all — that Node's HTTP parser
  // attaches to a parse error; logged as {"type":"Buffer","data":[71,69,84,…]}. Fastify's default
  // clientError handler logs that error at trace for every 400 and 431 (`err.rawPacket`): the
  // cluster primary's /metrics server uses it (the proxy's own server has a handler of its own).
  'rawPacket',
  // A headers object anywhere (req.headers, res.headers, undici's err.headers …), whole: it carries
  // Cookie, Authorization, Proxy-Authorization, Set-Cookie, X-Forwarded-Access-Token and the
  // assertion we send upstream, and any credential header of an application's own (X-Api-Key…),
  // which no list of names could know.
  'headers',
  // Node's flat [name, value, name, value…] header list of an IncomingMessage: the same headers.
  'rawHeaders',
  // request.cookies (@fastify/cookie): every cookie of the request by name, the session's included.
  'cookies',
  // OAuth token endpoint responses and anything shaped like them (openid-client's token set).
  'id_token', 'access_token', 'refresh_token',
  // The session record's tokens (src/session/record.ts SessionRecord).
  'idToken', 'accessToken', 'refreshToken',
  // The OIDC client secret (config oidc.clientSecret).
  'clientSecret',
  // The session secrets (config session.secrets): whoever has them can forge session cookies.
  'secrets',
];

/** Paths under a logged error (`err`, after pino's error serializer), beyond ONE_LEVEL_DOWN. */
const UNDER_ERR = [
  // Named explicitly: the path Fastify's client-error log actually produces (also matched above).
  'err.rawPacket',
  // The same parse error inside an AggregateError (pino serializes `errors` as `aggregateErrors`).
  'err.aggregateErrors[*].rawPacket',
  // A cause that is not an Error (Error causes are folded into message and stack): oauth4webapi's
  // ResponseBodyError keeps the IdP's parsed response body here, AuthorizationResponseError the
  // callback's parameters. Their error/error_description stay visible as err.error and
  // err.error_description.
  'err.cause',
  // A response body kept on an error (undici ResponseError and the like): a token endpoint answer
  // or an application's page.
  'err.body',
  // A response or request object kept on an error: headers and body of either side.
  'err.response', 'err.request',
  // ioredis ReplyError: the failed command with its arguments — session keys and sealed bodies.
  'err.command',
  // Node's ERR_INVALID_URL: the string that did not parse — a callback URL holds the code and state.
  'err.input',
];

/** Top-level fields that are secret by name: these paths cost nothing on lines without them. */
const TOP_LEVEL = [
  // The same names as ONE_LEVEL_DOWN, logged as a field of their own.
  ...ONE_LEVEL_DOWN,
  // A Cookie header value, or one cookie's value.
  'cookie',
  // Set-Cookie lines as Portcullis builds them (src/door `setCookies`) or as a header value.
  'setCookies', '["set-cookie"]',
  // Credentials a client sends: Basic/Bearer values.
  'authorization', '["proxy-authorization"]',
  // What Portcullis sends upstream on behalf of the user: the access token and the signed assertion.
  '["x-forwarded-access-token"]', '["x-auth-request-access-token"]', '["x-portcullis-assertion"]',
  // Back-channel logout requests (form field logout_token), as a wire or a camel-case name.
  'logout_token', 'logoutToken',
  // The client secret as the token endpoint's form field.
  'client_secret',
  // A single session secret, a Redis or other password.
  'secret', 'password',
  // The PKCE verifier of a sign-in transaction (src/signin/transactions.ts) and its OAuth name:
  // with the authorization code it redeems tokens.
  'verifier', 'code_verifier',
  // A token set of any shape.
  'tokens',
];

export const REDACT: string[] = [
  ...TOP_LEVEL,
  ...ONE_LEVEL_DOWN.map((k) => `*.${k}`),
  ...UNDER_ERR,
];
