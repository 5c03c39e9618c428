// What the upstream is told about an allowed request's user besides the identity headers — the
// signed assertion (route `assertion`) and, with route `tokenExchange`, the user as the upstream
// should see them: with the token the IdP issued for that upstream in place of their own (the
// identity plan then puts it where passAccessToken/passAuthorization say). One step for every
// doorway that forwards (HTTP, WebSocket upgrade); synchronous when neither applies, so the common
// request waits for nothing.
import type { Principal } from '../identity/headers.js';
import type { Runtime } from '../runtime.js';
import type { Outcome } from './outcome.js';

export interface UpstreamIdentity {
  assertion: string | undefined;
  who: Principal | undefined;
}

export function upstreamIdentity(rt: Runtime, o: Extract<Outcome, { kind: 'allow' }>): UpstreamIdentity | Promise<UpstreamIdentity> {
  const { route, who } = o;
  const assertion = route.assertion && who && rt.assertions ? route.assertion : undefined;
  const exchange = route.tokenExchange && who?.accessToken ? route.tokenExchange : undefined;
  if (!assertion && !exchange) return { assertion: undefined, who };
  return (async () => ({
    assertion: assertion && who ? await rt.assertions!.assertion(route.name, assertion.audience, assertion.ttlSec, who) : undefined,
    who: exchange && who
      ? { ...who, accessToken: await rt.provider(who.provider ?? rt.providers.first.id).exchanger.token(who.accessToken!, who.sid, exchange.audience, exchange.scope) }
      : who,
  }))();
}
