// Policy stage, step-up: "is this sign-in strong and recent enough for this route?" — a route's
// `stepUp` requirement (acr values, max age), compiled once at boot, and the one pure check that
// compares a principal's `acr` / `auth_time` claims with it. The door asks it after a route has
// admitted the user (door/evaluate.ts); the callback asks the same check of the ID token a step-up
// sign-in brought back (signin/endpoints.ts), so a sign-in the route would refuse is never accepted.
import type { Claims } from './claims.js';

/** A route's step-up requirement in its runtime form (config `routes[].stepUp`). */
export interface StepUpRequirement {
  /** The `acr` values accepted (one of them); undefined: any acr. */
  readonly acr: ReadonlySet<string> | undefined;
  /** The same values in config order, space-separated: the `acr_values` request parameter and challenge. */
  readonly acrValues: string | undefined;
  /** `maxAge` in whole seconds: the `max_age` request parameter and challenge. Undefined: any age. */
  readonly maxAgeSec: number | undefined;
  /**
   * How long after `auth_time` the sign-in counts as recent: maxAge plus `oidc.clockTolerance` —
   * the same allowance the callback gives the IdP's `auth_time`, so a sign-in the callback accepted
   * is never judged too old by the route a moment later (which would loop).
   */
  readonly freshForMs: number | undefined;
}

/** What a principal lacks for a route: a listed `acr`, or a recent enough `auth_time`. */
export type StepUpShortfall = 'acr' | 'max-age';

/** Builds a requirement (config compile, and the callback from a sign-in transaction). */
export function stepUpRequirement(acr: readonly string[] | undefined, maxAgeSec: number | undefined, clockToleranceMs: number): StepUpRequirement {
  return Object.freeze({
    acr: acr && acr.length > 0 ? new Set(acr) : undefined,
    acrValues: acr && acr.length > 0 ? acr.join(' ') : undefined,
    maxAgeSec,
    freshForMs: maxAgeSec === undefined ? undefined : maxAgeSec * 1000 + clockToleranceMs,
  });
}

/**
 * Undefined when the claims meet the requirement; otherwise what is missing (`acr` first: a
 * sign-in at the wrong level is redone whatever its age). Allocation-free: a Set lookup and a
 * subtraction, so a step-up route costs the authenticated hot path nothing measurable. A missing
 * or non-numeric `auth_time` is never recent; a missing or non-string `acr` is never listed.
 */
export function stepUpShortfall(req: StepUpRequirement, claims: Claims, nowMs: number): StepUpShortfall | undefined {
  if (req.acr !== undefined) {
    const acr = claims.acr;
    if (typeof acr !== 'string' || !req.acr.has(acr)) return 'acr';
  }
  return signInTooOld(req, claims, nowMs) ? 'max-age' : undefined;
}

/**
 * True when the requirement has a max age and the sign-in is older (or does not say when it
 * was): the next sign-in must then be a new one, not an answer from the IdP's SSO session
 * (`prompt=login`), whatever else it lacks.
 */
export function signInTooOld(req: StepUpRequirement, claims: Claims, nowMs: number): boolean {
  if (req.freshForMs === undefined) return false;
  const at = claims.auth_time;
  return typeof at !== 'number' || !Number.isFinite(at) || nowMs - at * 1000 > req.freshForMs;
}

/** "10 minutes", "1 hour", "90 seconds": a max age in plain words (pages and messages). */
export function plainDuration(sec: number): string {
  const unit = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (sec % 3600 === 0) return unit(sec / 3600, 'hour');
  if (sec % 60 === 0) return unit(sec / 60, 'minute');
  return unit(sec, 'second');
}

/** What a route's step-up asks for, in plain words: "a sign-in with one of mfa, phr, at most 10 minutes old". */
export function describeStepUp(req: StepUpRequirement): string {
  const parts: string[] = [];
  if (req.acrValues !== undefined) parts.push(`a sign-in with ${req.acr!.size === 1 ? 'the authentication level' : 'one of the authentication levels'} ${[...req.acr!].join(', ')}`);
  if (req.maxAgeSec !== undefined) parts.push(`${parts.length ? '' : 'a sign-in '}at most ${plainDuration(req.maxAgeSec)} old`);
  return parts.join(', ');
}
