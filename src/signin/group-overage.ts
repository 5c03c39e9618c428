// Sign-in stage, beside idp.ts: Entra ID group overage. A user in more groups than fit in a JWT
// (200) gets an ID token without `groups`, carrying `_claim_names: { groups: "src1" }` and a
// `_claim_sources` URL instead (OIDC Core §5.6.2, distributed claims). With `oidc.groupOverage`
// configured, the groups are fetched from Microsoft Graph with the user's access token — at sign-in
// and at every refresh — and become the session's `groups` claim, so rules, identity headers and
// X-Forwarded-Groups see them like any other. Fail closed: when they cannot be fetched the session
// has no `groups`, and carries only a reason (a session field, never a claim) for the 403 page.
//
// Security: the token's `_claim_sources` endpoint is NEVER called (an IdP-relayed URL could point
// anywhere, and it names the retired AAD Graph anyway). The access token goes only to the configured
// Graph origin, and a paging link is followed only when it has exactly that origin. Redirects are
// not followed. The whole fetch, every page included, is bounded by `oidc.timeout`, the answer's
// size by `maxGroups`.
//
// Why getMemberObjects (POST /v1.0/me/getMemberObjects): it returns object ids — what the `groups`
// claim holds — transitively, in one answer (up to 11,000), and for the signed-in user (/me) needs
// only the delegated `User.Read` permission. `transitiveMemberOf` (oauth2-proxy's choice) pages
// 100 at a time and returns objects; the ids are the same. A `@odata.nextLink` is followed anyway
// (same origin only), so a Graph that pages is read whole.
import { withSpan } from '../tracing.js';

/** Why a session has no `groups` although its ID token announced them; bounded values (a metrics label). */
export type GroupsUnavailable =
  | 'off' // oidc.groupOverage is not configured
  | 'no-access-token' // the token endpoint returned none
  | 'unauthorized' // Graph answered 401: the access token is not for Graph (its `aud`), or expired
  | 'forbidden' // Graph answered 403: the permission (User.Read) is not consented
  | 'unreachable'
  | 'timeout'
  | 'graph-error' // any other non-2xx answer
  | 'bad-answer' // not the JSON shape of getMemberObjects, or a redirect
  | 'too-many' // more than maxGroups (or Graph's own limit)
  | 'foreign-link'; // a paging link to another origin

export interface GroupOverageSettings {
  /** Graph's origin, e.g. https://graph.microsoft.com (no trailing slash). */
  graphUrl: string;
  securityEnabledOnly: boolean;
  maxGroups: number;
  /** The whole fetch, every page included (oidc.timeout). */
  timeoutMs: number;
}

export interface GroupOverageHooks {
  /** Each fetch's result: `ok` or a GroupsUnavailable reason. */
  count?: (result: 'ok' | GroupsUnavailable) => void;
  log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

/** Pages followed at most; Graph's getMemberObjects answers in one. */
export const MAX_PAGES = 50;
/** One group id at most this long (Graph's are 36-character GUIDs). */
const ID_MAX = 256;

/** What the operator reads in the log for each reason (the first of a streak at warn level). */
const OPERATOR_HINT: Record<GroupsUnavailable, string> = {
  off: 'the ID token announces group overage (_claim_names.groups) but oidc.groupOverage is not configured: the user has no groups',
  'no-access-token': 'no access token to call Microsoft Graph with',
  unauthorized: 'Microsoft Graph refused the access token (HTTP 401): it must be a token for Graph (aud https://graph.microsoft.com) — request the User.Read scope in oidc.scopes, and no scope of another API',
  forbidden: 'Microsoft Graph denied the call (HTTP 403): grant and consent the delegated User.Read permission to the app registration',
  unreachable: 'Microsoft Graph could not be reached',
  timeout: 'Microsoft Graph did not answer within oidc.timeout',
  'graph-error': 'Microsoft Graph answered an error',
  'bad-answer': 'Microsoft Graph\'s answer is not a getMemberObjects answer',
  'too-many': 'the user is in more groups than oidc.groupOverage.maxGroups',
  'foreign-link': 'a paging link (@odata.nextLink) points outside oidc.groupOverage.graphUrl: not followed',
};

/** What the 403 page tells the user, by reason. */
const USER_REASON: Record<Exclude<GroupsUnavailable, 'off'>, string> = {
  'no-access-token': 'the sign-in returned no access token',
  unauthorized: 'Microsoft Graph refused the access token',
  forbidden: 'Microsoft Graph did not allow reading them',
  unreachable: 'Microsoft Graph could not be reached',
  timeout: 'Microsoft Graph did not answer in time',
  'graph-error': 'Microsoft Graph answered with an error',
  'bad-answer': 'Microsoft Graph\'s answer could not be read',
  'too-many': 'you are in more groups than this site accepts',
  'foreign-link': 'Microsoft Graph\'s answer pointed to another site',
};

/** The sentence the 403 page (and the JSON answer) adds when the session's groups are missing; undefined when they are not. */
export function groupsUnavailableText(reason: unknown): string | undefined {
  if (typeof reason !== 'string') return undefined;
  if (reason === 'off') {
    return 'Your account is in more groups than fit in a sign-in token, and this site is not set up to fetch them from Microsoft Graph, so none of your group memberships were seen. Contact the site\'s administrator.';
  }
  const why = Object.hasOwn(USER_REASON, reason) ? USER_REASON[reason as keyof typeof USER_REASON] : 'unknown reason';
  return `Your group memberships could not be fetched from Microsoft Graph (${why}), so you are signed in without them and pages that need a group are refused. Sign in again; if this keeps happening, contact the site's administrator.`;
}

/** True when the claims announce `groups` as a distributed claim (Entra ID's group overage). */
export function hasGroupOverage(claims: Record<string, unknown>): boolean {
  const names = claims._claim_names;
  return typeof names === 'object' && names !== null && !Array.isArray(names) && Object.hasOwn(names, 'groups');
}

class Unavailable extends Error {
  constructor(readonly reason: GroupsUnavailable, detail: string) { super(detail); }
}

/**
 * Group overage for one IdP client: `resolve` turns claims that announce it into the session's
 * claims. Without settings (oidc.groupOverage not configured) Graph is never called: such a user
 * simply has no `groups`, and the reason says so. Holds no user state.
 */
export class GroupOverage {
  private readonly origin: string | undefined;
  /** Reasons already logged at warn in the current failure streak (a success clears them). */
  private readonly warned = new Set<GroupsUnavailable>();

  constructor(private readonly settings: GroupOverageSettings | undefined, private readonly hooks: GroupOverageHooks = {}) {
    this.origin = settings && new URL(settings.graphUrl).origin;
  }

  /**
   * The claims a session keeps. Claims without the overage marker are returned as they are, and
   * Graph is not asked. With it: `groups` as Graph says — never a `groups` that came with the marker
   * (from userinfo, say), and the `_claim_sources` URL is dropped unread — or no `groups` and the
   * reason. `_claim_names` stays: a refresh that returns no new ID token still knows where the
   * groups come from. Never throws; never logs the token.
   */
  async resolve(claims: Record<string, unknown>, accessToken: string | undefined): Promise<{ claims: Record<string, unknown>; groupsUnavailable?: GroupsUnavailable }> {
    if (!hasGroupOverage(claims)) return { claims };
    const { groups: _announced, _claim_sources: _sources, ...rest } = claims;
    const unavailable = (reason: GroupsUnavailable, detail: string) => {
      this.record(reason, claims.sub, detail);
      return { claims: rest, groupsUnavailable: reason };
    };
    if (!this.settings) return unavailable('off', 'oidc.groupOverage is not configured');
    if (!accessToken) return unavailable('no-access-token', 'the token response had no access_token');
    try {
      // One span for the whole fetch when tracing is on (src/tracing.ts): Graph's host and the result, never a group or the token.
      const settings = this.settings;
      const groups = await withSpan('graph getMemberObjects', { 'server.address': new URL(this.origin!).host }, async (span) => {
        try {
          const g = await this.fetchAll(settings, accessToken);
          span?.setAttribute('portcullis.group_overage.result', 'ok');
          return g;
        } catch (err) {
          span?.setAttribute('portcullis.group_overage.result', err instanceof Unavailable ? err.reason : classify(err));
          throw err;
        }
      });
      this.hooks.count?.('ok');
      this.warned.clear();
      return { claims: { ...rest, groups } };
    } catch (err) {
      return unavailable(err instanceof Unavailable ? err.reason : classify(err), err instanceof Error ? err.message : String(err));
    }
  }

  /** Counts and logs a failure: the first of each reason in a streak at warn, with what to do; the rest at info. */
  private record(reason: GroupsUnavailable, sub: unknown, detail: string): void {
    if (reason !== 'off') this.hooks.count?.(reason);
    const first = !this.warned.has(reason);
    this.warned.add(reason);
    const line = { sub, reason, err: detail.replace(/[^\x20-\x7e]/g, '?').slice(0, 300) };
    const msg = `group overage: signed in without groups — ${OPERATOR_HINT[reason]}`;
    if (first) this.hooks.log?.warn(line, msg);
    else this.hooks.log?.info(line, msg);
  }

  private async fetchAll(settings: GroupOverageSettings, accessToken: string): Promise<string[]> {
    const { maxGroups, timeoutMs } = settings;
    const origin = this.origin!;
    const signal = AbortSignal.timeout(timeoutMs);
    const ids = new Set<string>();
    let url = `${origin}/v1.0/me/getMemberObjects`;
    let body: string | undefined = JSON.stringify({ securityEnabledOnly: settings.securityEnabledOnly });
    // Bytes of one answer at most: every id at its longest would not need more.
    const maxBytes = 64 * 1024 + maxGroups * 64;
    for (let page = 0; ; page++) {
      if (page >= MAX_PAGES) throw new Unavailable('too-many', `more than ${MAX_PAGES} pages`);
      const res = await fetch(url, {
        method: body === undefined ? 'GET' : 'POST',
        body,
        redirect: 'manual',
        signal,
        headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      });
      const text = await readCapped(res, maxBytes);
      if (res.status !== 200) {
        if (res.status === 401) throw new Unavailable('unauthorized', `HTTP 401${graphError(text)}`);
        if (res.status === 403) throw new Unavailable('forbidden', `HTTP 403${graphError(text)}`);
        if (res.status === 400 && /Directory_ResultSizeLimitExceeded/.test(text)) throw new Unavailable('too-many', `HTTP 400${graphError(text)}`);
        if (res.status >= 300 && res.status < 400) throw new Unavailable('bad-answer', `HTTP ${res.status} (a redirect: not followed)`);
        throw new Unavailable('graph-error', `HTTP ${res.status}${graphError(text)}`);
      }
      const answer = parseJson(text);
      if (typeof answer !== 'object' || answer === null || !Array.isArray((answer as { value?: unknown }).value)) throw new Unavailable('bad-answer', 'no `value` list');
      for (const id of (answer as { value: unknown[] }).value) {
        if (typeof id !== 'string' || id.length === 0 || id.length > ID_MAX || /[^\x21-\x7e]/.test(id)) throw new Unavailable('bad-answer', 'an entry of `value` is not a group id');
        ids.add(id);
        if (ids.size > maxGroups) throw new Unavailable('too-many', `more than ${maxGroups} groups`);
      }
      const next = (answer as Record<string, unknown>)['@odata.nextLink'];
      if (next === undefined || next === null) return [...ids];
      if (typeof next !== 'string' || !sameOrigin(next, origin)) {
        throw new Unavailable('foreign-link', `@odata.nextLink ${JSON.stringify(String(next).slice(0, 100))} is not on ${origin}`);
      }
      url = next;
      body = undefined;
    }
  }
}

function sameOrigin(link: string, origin: string): boolean {
  try {
    const u = new URL(link);
    return u.origin === origin && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

function parseJson(text: string): unknown {
  try { return JSON.parse(text); } catch { throw new Unavailable('bad-answer', 'not JSON'); }
}

/** Graph's own error code and message, bounded, for the log. */
function graphError(text: string): string {
  try {
    const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e && typeof e === 'object') return `: ${String(e.code ?? '').slice(0, 80)} ${String(e.message ?? '').slice(0, 200)}`.trimEnd();
  } catch { /* not JSON */ }
  return '';
}

/** The body as text, refused past `max` bytes (the rest is not read). */
async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const declared = Number(res.headers.get('content-length'));
  if (declared > max) {
    await res.body.cancel().catch(() => {});
    throw new Unavailable('too-many', `answer of ${declared} bytes, more than ${max}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    // Leaving the loop cancels the stream: the rest is never read.
    if (size > max) throw new Unavailable('too-many', `answer larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function classify(err: unknown): GroupsUnavailable {
  const name = (err as Error)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  if (err instanceof TypeError) return 'unreachable';
  return 'bad-answer';
}
