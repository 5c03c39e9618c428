// Every failure Portcullis answers with is a coded error: a stable `code` (ERR_<AREA>_<WHAT>), the
// HTTP status, a plain-words message safe to show the user, and the operator's detail in `cause`
// (logged, never shown). `expose` follows oidc-provider: status < 500 messages are for the user.

export class PortcullisError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly expose: boolean;
  /** Offer "sign in again" on the error page (callback and session failures). */
  readonly retrySignIn: boolean;
  /** Seconds for a Retry-After header (503s). */
  readonly retryAfter: number | undefined;

  constructor(code: string, statusCode: number, message: string, opts: { cause?: unknown; retrySignIn?: boolean; retryAfter?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PortcullisError';
    this.code = code;
    this.statusCode = statusCode;
    this.expose = statusCode < 500;
    this.retrySignIn = opts.retrySignIn ?? false;
    this.retryAfter = opts.retryAfter;
  }
}

type Make = (cause?: unknown) => PortcullisError;
const def = (code: string, status: number, message: string, extra: { retrySignIn?: boolean; retryAfter?: number } = {}): Make =>
  (cause) => new PortcullisError(code, status, message, { ...extra, cause });

/** Constructors, one per failure the user or operator can meet. */
export const errors = {
  badRequest: (reason: string) => new PortcullisError('ERR_REQUEST_BAD', 400, `This request cannot be served: ${reason}.`),
  badPath: (reason: string) => new PortcullisError('ERR_REQUEST_BAD_PATH', 400, `This address cannot be served: ${reason}.`),
  noRoute: def('ERR_ROUTE_NOT_FOUND', 404, 'Nothing is served at this address.'),
  notOwnEndpoint: def('ERR_ROUTE_NOT_FOUND', 404, 'Unknown Portcullis endpoint.'),

  callbackNoState: def('ERR_CALLBACK_STATE_MISSING', 400, 'The sign-in response carries no state parameter, so it cannot be matched to a sign-in you started.', { retrySignIn: true }),
  callbackUnknownState: def('ERR_CALLBACK_STATE_MISMATCH', 400, 'This sign-in response does not match a sign-in started in this browser, or it was already used or has expired (sign-ins must finish within 10 minutes).', { retrySignIn: true }),
  callbackIdpError: (error: string, description: string | undefined) => new PortcullisError('ERR_CALLBACK_IDP_ERROR', error === 'access_denied' ? 403 : 400,
    error === 'access_denied' ? 'The identity provider did not grant access (the sign-in was cancelled or refused).' : `The identity provider reported an error: ${error}${description ? ` — ${description}` : ''}.`, { retrySignIn: true }),
  callbackCodeRejected: def('ERR_CALLBACK_CODE_REJECTED', 400, 'The identity provider refused the sign-in code (it may have been used already or expired).', { retrySignIn: true }),
  callbackClientAuth: def('ERR_CALLBACK_CLIENT_AUTH', 502, 'Portcullis could not authenticate to the identity provider (it answered invalid_client), so the sign-in could not be completed. Operator: check oidc.clientSecret and oidc.tokenEndpointAuthMethod against the client registered at the IdP.', { retrySignIn: true }),
  callbackTokenRefused: (error: string, cause?: unknown) => new PortcullisError('ERR_CALLBACK_TOKEN_REQUEST_REFUSED', 502,
    `The identity provider refused Portcullis's token request (${error.replace(/[^\x20-\x7e]/g, '').slice(0, 60)}), so the sign-in could not be completed. Operator: check the client's registration at the IdP (grant types, redirect URI, scopes).`, { retrySignIn: true, cause }),
  idTokenInvalid: def('ERR_CALLBACK_ID_TOKEN_INVALID', 401, 'The identity provider\'s ID token failed verification, so you were not signed in.', { retrySignIn: true }),
  userinfoMismatch: def('ERR_CALLBACK_USERINFO_MISMATCH', 401, 'The identity provider returned inconsistent user information, so you were not signed in.', { retrySignIn: true }),

  idpUnavailable: def('ERR_IDP_UNAVAILABLE', 503, 'Sign-in is unavailable right now: the identity provider cannot be reached. Please try again in a moment.', { retryAfter: 10, retrySignIn: true }),
  idpTimeout: def('ERR_IDP_TIMEOUT', 504, 'The identity provider did not answer in time. Please try again.', { retrySignIn: true }),
  idpBadResponse: def('ERR_IDP_BAD_RESPONSE', 502, 'The identity provider gave an unexpected answer. Please try again.', { retrySignIn: true }),

  draining: def('ERR_DRAINING', 503, 'This instance is shutting down; please try again.', { retryAfter: 1 }),
  logoutNotStored: def('ERR_LOGOUT_STORE_UNAVAILABLE', 503, 'The logout could not be recorded right now (the session store is unreachable); it was not marked as used, so retrying the delivery will work.', { retryAfter: 5 }),
  sessionTooLarge: def('ERR_SESSION_TOO_LARGE', 500, 'Your account has too many group memberships (or other claims) to fit in a browser session cookie, so you could not be signed in. Signing in again will not help: the operator can switch to the Redis session store (session.store: redis) or have the identity provider send fewer groups or claims.'),
  storeUnavailable: def('ERR_SESSION_STORE_UNAVAILABLE', 503, 'Your session cannot be checked right now (the session store is unreachable). Please try again in a moment.', { retryAfter: 5 }),

  upstreamUnavailable: def('ERR_UPSTREAM_UNAVAILABLE', 502, 'The application behind this address is not answering.'),
  upstreamTimeout: def('ERR_UPSTREAM_TIMEOUT', 504, 'The application behind this address took too long to answer.'),

  signOutCrossSite: def('ERR_SIGN_OUT_CROSS_SITE', 403, 'Sign-out must be confirmed from this site.'),
  rateLimited: def('ERR_RATE_LIMITED', 429, 'Too many sign-in attempts from your address. Please wait a minute and try again.', { retryAfter: 60 }),
} as const;

/** Any thrown value → a PortcullisError (unknown errors become an opaque 500, detail kept in cause). */
export function asPortcullisError(err: unknown): PortcullisError {
  if (err instanceof PortcullisError) return err;
  const status = (err as { statusCode?: number })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new PortcullisError((err as { code?: string }).code ?? 'ERR_REQUEST_BAD', status, 'The request could not be understood.', { cause: err });
  }
  return new PortcullisError('ERR_INTERNAL', 500, 'Something went wrong inside the proxy.', { cause: err });
}
