// Beside the pipeline: Prometheus metrics on a per-app registry (two apps in one process, as in the
// tests, never collide), with bounded labels only — route name, outcome, status class.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'portcullis_' });
  const m = {
    registry,
    requests: tallyCounter({ name: 'portcullis_http_requests_total', help: 'Requests answered, by route name and status class.', labelNames: ['route', 'status'] as const, registers: [registry] }),
    duration: routeHistogram(registry, 'portcullis_http_request_duration_seconds', 'Time to answer a request, by route name.', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]),
    decisions: tallyCounter({ name: 'portcullis_auth_decisions_total', help: 'Authorization decisions: allow, deny, unauthenticated, step_up; by route and provider (the identity\'s `oidc` id, empty without one).', labelNames: ['route', 'decision', 'provider'] as const, registers: [registry] }),
    logins: new Counter({ name: 'portcullis_logins_total', help: 'Completed sign-in callbacks by result (success or an error code) and provider (its `oidc` id; empty when the callback named no known transaction).', labelNames: ['result', 'provider'] as const, registers: [registry] }),
    refresh: new Counter({ name: 'portcullis_session_refresh_total', help: 'Token refreshes by result and provider.', labelNames: ['result', 'provider'] as const, registers: [registry] }),
    cacheHits: tallyCounter({ name: 'portcullis_session_cache_hits_total', help: 'Session lookups answered from the in-memory cache.', labelNames: [] as const, registers: [registry] }),
    cacheMisses: tallyCounter({ name: 'portcullis_session_cache_misses_total', help: 'Session lookups that had to open the cookie or ask the store.', labelNames: [] as const, registers: [registry] }),
    idpDuration: new Histogram({ name: 'portcullis_idp_request_duration_seconds', help: 'Requests to the identity provider, by endpoint (discovery, jwks, token, userinfo, revocation, introspection).', labelNames: ['endpoint', 'outcome', 'provider'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    upstreamErrors: new Counter({ name: 'portcullis_upstream_errors_total', help: 'Upstream failures (refused, reset, timeout), by route.', labelNames: ['route', 'kind'] as const, registers: [registry] }),
    transactionsRejected: new Counter({ name: 'portcullis_transaction_cookies_rejected_total', help: 'Callbacks whose transaction cookie was missing, foreign, expired or replayed.', labelNames: ['reason'] as const, registers: [registry] }),
    sessionsTooLarge: new Counter({ name: 'portcullis_sessions_too_large_total', help: 'Sessions that did not fit the cookie store even compacted and compressed (sign-in refused with ERR_SESSION_TOO_LARGE, or a refresh kept the old session), by when (sign_in, refresh).', labelNames: ['when'] as const, registers: [registry] }),
    sessionsRevoked: new Counter({ name: 'portcullis_sessions_revoked_total', help: 'Sessions ended by sign-out or back-channel logout.', labelNames: ['via'] as const, registers: [registry] }),
    rateLimited: new Counter({ name: 'portcullis_rate_limited_total', help: 'Requests refused with 429 by the per-client-IP limit, by endpoint (start, callback).', labelNames: ['endpoint'] as const, registers: [registry] }),
    introspections: new Counter({ name: 'portcullis_introspection_requests_total', help: 'Bearer tokens asked about at the IdP\'s introspection endpoint (RFC 7662), by result: active, inactive (refused), error (the IdP could not answer). Latency: portcullis_idp_request_duration_seconds{endpoint="introspection"}.', labelNames: ['result'] as const, registers: [registry] }),
    introspectionCache: new Counter({ name: 'portcullis_introspection_cache_total', help: 'Introspected bearer tokens answered from the cache (hit) or asked about at the IdP (miss).', labelNames: ['result'] as const, registers: [registry] }),
    groupOverage: new Counter({ name: 'portcullis_group_overage_fetches_total', help: 'Entra ID group overage: group lists fetched from Microsoft Graph (oidc.groupOverage) at sign-in and refresh, by result: ok, or why the user got no groups (unauthorized, forbidden, unreachable, timeout, graph-error, bad-answer, too-many, foreign-link, no-access-token).', labelNames: ['result'] as const, registers: [registry] }),
    tokenExchanges: new Counter({ name: 'portcullis_token_exchange_total', help: 'Per-upstream tokens (routes with tokenExchange, RFC 8693), by result: exchanged at the IdP, cached, refused by the IdP, error (the IdP could not answer).', labelNames: ['result'] as const, registers: [registry] }),
    idpReady: new Gauge({ name: 'portcullis_idp_ready', help: '1 when discovery and keys are loaded, by provider.', labelNames: ['provider'] as const, aggregator: 'min', registers: [registry] }), // workers: 1 only when every one is ready
  };
  // The series alerts and SLO ratios divide by exist from the start at 0: a labelled counter is
  // otherwise created at its first count, whose increase() Prometheus sees as 0 (the first failure
  // of a pod would never show in a rate). The codes are the sign-in failures an operator can cause
  // and must see (docs/runbooks.md); others still appear when they first happen.
  for (const result of ['active', 'inactive', 'error'] as const) m.introspections.inc({ result }, 0);
  for (const result of ['exchanged', 'cached', 'refused', 'error'] as const) m.tokenExchanges.inc({ result }, 0);
  return m;
}

/**
 * The per-provider series alerts divide by, at 0 from the start (see above), once the providers are
 * known (the Runtime calls it): sign-in results and refresh results for each configured provider id.
 */
export function seedProviderSeries(m: Metrics, providerIds: readonly string[]): void {
  for (const provider of providerIds) {
    for (const result of ['success', 'ERR_CALLBACK_ID_TOKEN_INVALID', 'ERR_CALLBACK_CLIENT_AUTH', 'ERR_CALLBACK_TOKEN_REQUEST_REFUSED', 'ERR_CALLBACK_CODE_REJECTED', 'ERR_IDP_UNAVAILABLE', 'ERR_IDP_TIMEOUT', 'ERR_IDP_BAD_RESPONSE'] as const) m.logins.inc({ result, provider }, 0);
    for (const result of ['success', 'invalid_grant', 'rejected', 'error'] as const) m.refresh.inc({ result, provider }, 0);
  }
}

/** A running count for one label set; `n` is added to the counter at the next collection. */
export interface Tally { readonly labels: Record<string, string>; n: number }

/**
 * A Counter for per-request counts: the hot path adds to a plain number per label set (no label
 * hashing or validation per request, which showed in profiles) and prom-client gets the sums when it
 * collects — at every scrape and every get(), so readers never see a stale value.
 */
function tallyCounter<L extends string>(cfg: { name: string; help: string; labelNames: readonly L[]; registers: Registry[] }) {
  const tallies = new Map<string, Tally>();
  const counter: Counter<L> = new Counter<L>({
    ...cfg,
    collect() {
      for (const t of tallies.values()) {
        if (t.n === 0) continue;
        const n = t.n;
        t.n = 0;
        counter.inc(t.labels as Partial<Record<L, string>>, n);
      }
    },
  });
  /** The tally for these label values (in labelNames order); resolved once per label set. */
  const tally = (...values: string[]): Tally => {
    const key = values.join('\0');
    let t = tallies.get(key);
    if (!t) {
      const labels: Record<string, string> = {};
      cfg.labelNames.forEach((name, i) => { labels[name] = values[i] ?? ''; });
      tallies.set(key, (t = { labels, n: 0 }));
    }
    return t;
  };
  return Object.assign(counter, { tally });
}

/** One route's series of the request-duration histogram. */
export interface DurationSeries { readonly route: string; readonly counts: Float64Array; sum: number; count: number }

/**
 * The request-duration histogram, `{route}`: an observation is a bucket search and three additions
 * on a series resolved once per route — prom-client's Histogram hashes and validates its labels on
 * every observe, which showed in profiles. It is registered with prom-client's Registry and answers
 * get() in prom-client's histogram shape (cumulative `_bucket` with `le`, `+Inf`, `_sum`, `_count`),
 * so the text output and the cluster aggregation treat it like any other histogram.
 */
function routeHistogram(registry: Registry, name: string, help: string, bounds: readonly number[]) {
  const series = new Map<string, DurationSeries>();
  const h = {
    name,
    help,
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    /** The series for a route (created on first use). */
    series(route: string): DurationSeries {
      let s = series.get(route);
      if (!s) series.set(route, (s = { route, counts: new Float64Array(bounds.length), sum: 0, count: 0 }));
      return s;
    },
    observe(s: DurationSeries, seconds: number): void {
      let i = 0;
      while (i < bounds.length && seconds > bounds[i]!) i += 1;
      if (i < bounds.length) s.counts[i]! += 1;
      s.sum += seconds;
      s.count += 1;
    },
    async get() {
      const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
      for (const s of series.values()) {
        let acc = 0;
        bounds.forEach((le, i) => {
          acc += s.counts[i]!;
          values.push({ labels: { route: s.route, le }, value: acc, metricName: `${name}_bucket` });
        });
        values.push({ labels: { route: s.route, le: '+Inf' }, value: s.count, metricName: `${name}_bucket` });
        values.push({ labels: { route: s.route }, value: s.sum, metricName: `${name}_sum` });
        values.push({ labels: { route: s.route }, value: s.count, metricName: `${name}_count` });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
    reset(): void { series.clear(); },
  };
  registry.registerMetric(h as unknown as Histogram);
  return h;
}

/**
 * Counts and times one answer. Label children are resolved once per (route, status class), not per
 * request: the label sets are small and bounded, and prom-client's label hashing showed in profiles.
 */
export function responseObserver(m: Metrics): (route: string, status: number, seconds: number) => void {
  const perLabel = new Map<string, { count: Tally; time: DurationSeries }>();
  return (route, statusCode, seconds) => {
    const status = statusClass(statusCode);
    const key = `${route}\0${status}`;
    let c = perLabel.get(key);
    if (!c) perLabel.set(key, (c = { count: m.requests.tally(route, status), time: m.duration.series(route) }));
    c.count.n += 1;
    m.duration.observe(c.time, seconds);
  };
}

/** `2xx`, `3xx`… — the status label stays bounded whatever the upstream answers. */
export function statusClass(code: number): string {
  return code >= 100 && code < 600 ? `${Math.floor(code / 100)}xx` : 'other';
}
