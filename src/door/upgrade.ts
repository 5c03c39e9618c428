// The WebSocket doorway: node:http's `upgrade` event (a request with `Connection: upgrade` and an
// `Upgrade` header). It is an upgrade only when it is a `GET` asking for `websocket` on a route with
// `websocket: true`; anything else is refused with 400 — an upgrade is never a way to send another
// method past a route's rules. Then the same door as plain requests: Inbound → evaluate → answer,
// or the same upstream plan (with Connection/Upgrade set) → socket pipe. Any throw answers this
// socket (500) and is logged; the process keeps serving.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { PortcullisError, asPortcullisError, errors } from '../errors.js';
import { normalizeTarget } from '../routing/normalize.js';
import { requestIdOf } from '../request-id.js';
import type { Runtime } from '../runtime.js';
import { evaluate, isSession } from './evaluate.js';
import { errorAnswer, outcomeAnswer, writeAnswerToSocket } from './respond.js';
import { tableOf } from './route-table.js';
import { logFailure } from './http.js';

const refused = (message: string) => new PortcullisError('ERR_UPGRADE_REFUSED', 400, message);

export async function handleUpgrade(rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  let id: string | undefined;
  let route = 'none';
  const fail = (err: unknown) => {
    const e = asPortcullisError(err);
    const at = { id: id ?? requestIdOf(req, rt.origin.peerTrusted), headers: req.headers };
    logFailure(rt, e, at.id, route);
    writeAnswerToSocket(socket, errorAnswer(e, at));
  };
  try {
    const n = normalizeTarget(req.url ?? '/');
    if (!n.ok) return fail(errors.badPath(n.reason));
    if (n.authority !== undefined || n.path.startsWith('/oauth2/') || n.path === '/healthz' || n.path === '/readyz') {
      return fail(refused('Upgrades are not accepted at this address.'));
    }
    if (req.method !== 'GET') return fail(refused(`An upgrade must be a GET request, not ${req.method}.`));
    const wanted = String(req.headers.upgrade ?? '').toLowerCase().split(',').map((s) => s.trim());
    if (wanted.length !== 1 || wanted[0] !== 'websocket') return fail(refused('Only WebSocket upgrades are proxied.'));
    if (rt.draining) return fail(errors.draining());
    const r = rt.origin.inbound(req, n);
    id = r.id;
    const idx = rt.table.matcher(r.host, r.path, r.method);
    if (idx >= 0 && !rt.table.routes[idx]!.websocket) return fail(refused('WebSocket upgrades are not enabled on this route.'));
    const o = await evaluate(rt, r);
    rt.audit.record(r, o, 'websocket');
    if (o.kind !== 'allow') return writeAnswerToSocket(socket, await outcomeAnswer(rt, r, o, 'proxy', `${rt.origin.originOf(r)}${r.path}${r.query}`));
    route = o.route.name;
    const assertion = o.route.assertion && o.who && rt.assertions
      ? await rt.assertions.assertion(o.route.name, o.route.assertion.audience, o.route.assertion.ttlSec, o.who)
      : undefined;
    const plan = rt.upstreamRules.plan({ inbound: r, route: o.route, identity: tableOf(o.route, rt.table).headers, who: o.who, assertion, upgrade: true });
    if (isSession(o.who)) rt.connections.track(o.who, socket);
    const name = o.route.name;
    rt.forwarder.upgrade(plan, socket, head, {
      timeoutMs: o.route.timeoutMs,
      fail: (e, kind, err) => {
        rt.metrics.upstreamErrors.inc({ route: name, kind });
        rt.log.warn({ reqId: r.id, route: name, err: err.message }, 'websocket upstream failed');
        writeAnswerToSocket(socket, errorAnswer(e, r));
      },
    });
  } catch (err) {
    fail(err);
  }
}
