// Session stage, the data: what a session holds, whichever store keeps it. Its own module so the
// stores (store.ts, redis-store.ts) and the manager (sessions.ts) depend on it, not on each other.
import type { Claims } from '../policy/claims.js';

/** The one claims type (policy/claims.ts), re-exported for the session stage's modules. */
export type { Claims };

/** Everything a session holds; sealed into the cookie (cookie store) or kept in Redis. */
export interface SessionRecord {
  v: 1;
  /** Portcullis's own random session id. */
  sid: string;
  /** The `oidc` id of the provider signed in with. Absent in records written before several providers: the first provider's. */
  provider?: string;
  /** Claims from the ID token (and userinfo when enabled). */
  claims: Claims;
  idToken: string;
  accessToken?: string;
  refreshToken?: string;
  /** When the access/ID token expires (ms since epoch); refresh is due shortly before. */
  tokenExpiresAt?: number;
  /** When that token was received (ms); with tokenExpiresAt, its lifetime — the refresh margin is a share of it. Absent in older records. */
  tokenIssuedAt?: number;
  createdAt: number;
  seenAt: number;
  /**
   * Entra ID group overage (signin/group-overage.ts): the ID token announced `groups` and they could
   * not be fetched, so `claims` has none; the reason, for the 403 page. A session field, never a
   * claim, so no rule or header template can read or be confused by it. Replaced at every refresh.
   */
  groupsUnavailable?: string;
}
