// Optional OpenTelemetry tracing (OTLP over HTTP), off by default. On when the standard
// environment names an endpoint — `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
// `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`) — unless `OTEL_TRACES_EXPORTER=none` or
// `OTEL_SDK_DISABLED=true`. `OTEL_SERVICE_NAME` (default `portcullis`), `OTEL_TRACES_SAMPLER_ARG`
// (ratio of new traces kept, default 1; a parent's decision is followed) and
// `OTEL_EXPORTER_OTLP_HEADERS` (read by the exporter) work as in every OpenTelemetry SDK.
//
// What is traced: every request at the door (proxied, forward-auth, own endpoints such as the
// sign-in callback, WebSocket upgrades), each session refresh, and every HTTP call to the IdP
// (discovery, JWKS, token, userinfo, revocation…). Attributes are the method, the path (never the
// query: it carries codes and states), the status, the route, the decision, the request id and
// the IdP endpoint — never a token, a cookie, a claim value or who the user is.
//
// W3C `traceparent`/`tracestate` are accepted as the parent only from a trusted peer (trustProxy);
// the upstream receives Portcullis's own span as its parent (proxy/plan.ts). With tracing off,
// nothing here runs on the request path but one `if (current)`: no context manager is installed,
// no span objects are made, and the client's trace headers reach the upstream as any header would.
import { context, trace, ROOT_CONTEXT, SpanKind, SpanStatusCode, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import type { IncomingHttpHeaders } from 'node:http';

export interface TracingSettings {
  /** Full OTLP/HTTP traces URL (…/v1/traces). */
  url: string;
  serviceName: string;
  /** Share of new (parentless) traces recorded, 0..1. */
  ratio: number;
}

/** Reads the standard OTEL_* environment; undefined = tracing off. */
export function tracingSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TracingSettings | undefined {
  if (env.OTEL_SDK_DISABLED === 'true' || env.OTEL_TRACES_EXPORTER === 'none') return undefined;
  const direct = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = direct || (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (!url) return undefined;
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG);
  const ratio = env.OTEL_TRACES_SAMPLER_ARG !== undefined && Number.isFinite(arg) ? Math.min(1, Math.max(0, arg)) : 1;
  return { url, serviceName: env.OTEL_SERVICE_NAME?.trim() || 'portcullis', ratio };
}

interface Active {
  tracer: Tracer;
  provider: TracerProvider;
  propagator: W3CTraceContextPropagator;
  contextManager: AsyncLocalStorageContextManager;
}

/** The process's tracing, when on (tracing is per process, like the OTEL_* environment it comes from). */
let current: Active | undefined;

export function tracingEnabled(): boolean {
  return current !== undefined;
}

/** Starts tracing for this process (idempotent). Returns false when the settings say off. */
export function startTracing(settings: TracingSettings | undefined): boolean {
  if (!settings) return false;
  if (current) return true;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': settings.serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.ratio) }),
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: settings.url }) })],
  });
  // Spans started while a request is handled (the IdP's token call during the callback, a refresh)
  // find the request's span through AsyncLocalStorage.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  current = { tracer: provider.getTracer('portcullis'), provider, propagator: new W3CTraceContextPropagator(), contextManager };
  return true;
}

/** Sends what is buffered and stops tracing (shutdown; tests). */
export async function stopTracing(): Promise<void> {
  const a = current;
  if (!a) return;
  current = undefined;
  await a.provider.forceFlush().catch(() => {});
  await a.provider.shutdown().catch(() => {});
  a.contextManager.disable();
  context.disable();
}

/** Exports the spans buffered so far (tests). */
export async function flushTracing(): Promise<void> {
  await current?.provider.forceFlush();
}

const headerGetter = {
  keys: (h: IncomingHttpHeaders) => Object.keys(h),
  get: (h: IncomingHttpHeaders, key: string) => h[key],
};

/** One request's span at a doorway. */
export interface RequestSpan {
  /** Route and decision, once known. */
  decided(route: string, decision: string): void;
  /** `traceparent`/`tracestate` for the upstream request: this span as the parent. */
  upstreamHeaders(): Record<string, string>;
  /** Runs `fn` with this span as the active one (children: IdP calls, refreshes). */
  run<T>(fn: () => T): T;
  end(status: number, error?: string): void;
}

/**
 * A span for a request at a doorway (`target`: the request line's), or undefined when tracing is off. `trusted`: the peer is a
 * trusted proxy, so its `traceparent` is the parent; otherwise a client's trace headers are ignored
 * (a new trace starts here).
 */
export function requestSpan(kind: 'http' | 'websocket', method: string, target: string, headers: IncomingHttpHeaders, trusted: boolean, requestId: string): RequestSpan | undefined {
  const a = current;
  if (!a) return undefined;
  // The path only: a query carries codes, states and whatever an application puts there.
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const parent = trusted ? a.propagator.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
  const span = a.tracer.startSpan(kind === 'websocket' ? `${method} (websocket)` : method, {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': method, 'url.path': path, 'portcullis.request_id': requestId, 'portcullis.doorway': kind },
  }, parent);
  const ctx = trace.setSpan(parent, span);
  let ended = false;
  return {
    decided(route, decision) {
      span.setAttributes({ 'portcullis.route': route, 'portcullis.decision': decision });
      if (route !== 'none') span.updateName(`${kind === 'websocket' ? `${method} (websocket)` : method} ${route}`);
    },
    upstreamHeaders() {
      const out: Record<string, string> = {};
      a.propagator.inject(ctx, out, { set: (c: Record<string, string>, k: string, v: string) => { c[k] = v; } });
      return out;
    },
    run: (fn) => context.with(ctx, fn),
    end(status, error) {
      if (ended) return;
      ended = true;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500 || error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
      span.end();
    },
  };
}

/**
 * Runs `fn` in a child span of the active one (a refresh, an IdP call), or just runs it when tracing
 * is off. `fn` gets the span to add attributes known only at the end (never secrets).
 */
export function withSpan<T>(name: string, attributes: Attributes, fn: (span: Span | undefined) => Promise<T>): Promise<T> {
  const a = current;
  if (!a) return fn(undefined);
  return a.tracer.startActiveSpan(name, { kind: SpanKind.INTERNAL, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.name : 'error' });
      throw err;
    } finally {
      span.end();
    }
  });
}
