// The door's record: every decision, whichever doorway it came through, counted once
// (portcullis_auth_decisions_total) and written as one audit line (config `auditLog`). One writer,
// no per-request label work: the tallies are resolved once per route.
import type { Metrics, Tally } from '../metrics.js';
import type { Inbound } from '../routing/origin.js';
import type { Outcome } from './outcome.js';

type Label = 'allow' | 'deny' | 'unauthenticated' | 'step_up';

export interface AuditLog {
  info(o: object, msg: string): void;
}

export class DecisionAudit {
  /** Route → provider (`''`: no identity) → the decision's tallies; the provider is one of the configured ids, so the label set stays bounded. */
  private readonly tallies = new Map<string, Map<string, Record<Label, Tally>>>();
  readonly allows: boolean;
  readonly denials: boolean;

  constructor(private readonly metrics: Metrics, private readonly log: AuditLog, mode: 'all' | 'denials' | 'off') {
    this.allows = mode === 'all';
    this.denials = mode !== 'off';
  }

  /** Counts the decision and writes its audit line. `via`: the doorway, when not a plain request. */
  record(r: Inbound, o: Outcome, via?: 'websocket' | 'forward-auth'): void {
    if (o.kind === 'no-route') return;
    const label: Label = o.kind === 'allow' ? 'allow' : o.kind === 'forbidden' ? 'deny' : o.kind === 'step-up' ? 'step_up' : 'unauthenticated';
    const who = o.kind === 'unauthenticated' ? undefined : o.who;
    const provider = who?.provider ?? '';
    let byProvider = this.tallies.get(o.route.name);
    if (!byProvider) this.tallies.set(o.route.name, (byProvider = new Map()));
    let t = byProvider.get(provider);
    if (!t) {
      const d = this.metrics.decisions;
      const route = o.route.name;
      byProvider.set(provider, (t = { allow: d.tally(route, 'allow', provider), deny: d.tally(route, 'deny', provider), unauthenticated: d.tally(route, 'unauthenticated', provider), step_up: d.tally(route, 'step_up', provider) }));
    }
    t[label].n += 1;
    if (!(label === 'allow' ? this.allows : this.denials)) return;
    const c = who?.claims;
    this.log.info({
      reqId: r.id, audit: true, route: o.route.name, decision: label, provider: who?.provider,
      // A step-up names what the sign-in lacks (`step-up-acr`, `step-up-max-age`), not the rule that admitted it.
      reason: o.kind === 'unauthenticated' && o.invalidToken ? 'invalid-token' : o.kind === 'step-up' ? `step-up-${o.shortfall}` : o.decision.reasons.join(','),
      sub: c?.sub, email: c?.email, via: who && !who.sid ? 'bearer' : via, method: r.method, ip: r.clientIp,
      // A denial of a session whose groups could not be fetched (Entra ID group overage) says so.
      groupsUnavailable: label === 'deny' ? (who as { groupsUnavailable?: string } | undefined)?.groupsUnavailable : undefined,
    }, `auth decision ${label}`);
  }
}
