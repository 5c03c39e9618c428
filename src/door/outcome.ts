// The door's decision as a value: what evaluate() found for one request, before any doorway turns
// it into an answer or an upstream request.
import type { RouteConfig } from '../config/index.js';
import type { Decision } from '../policy/decide.js';
import type { PortcullisError } from '../errors.js';
import type { Principal } from '../identity/headers.js';
import type { StepUpShortfall } from '../policy/step-up.js';

export type Outcome =
  | { kind: 'no-route' }
  | { kind: 'allow'; route: RouteConfig; who: Principal | undefined; decision: Decision; setCookies: string[] }
  | { kind: 'unauthenticated'; route: RouteConfig; decision: Decision; setCookies: string[]; invalidToken?: PortcullisError }
  | { kind: 'forbidden'; route: RouteConfig; who: Principal; decision: Decision; setCookies: string[] }
  /** The route admits this user, but its `stepUp` asks for a stronger or more recent sign-in (`route.stepUp` says what). */
  | { kind: 'step-up'; route: RouteConfig; who: Principal; decision: Decision; setCookies: string[]; shortfall: StepUpShortfall };
