// OpenTelemetry tracing, exported over OTLP/HTTP to a receiver in this process (a loopback HTTP
// server collecting what the real exporter sends): a span per request at the door with route and
// decision, the sign-in callback with its IdP token call as a child, a refresh with its token call,
// W3C trace context taken from trusted peers only and handed to the upstream — and never a token,
// a cookie, a claim value or the query string in any span. With tracing off the client's trace
// headers reach the upstream untouched and no span is made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { otlpReceiver } from '../helpers/otlp.js';
import { startTestGraph } from '../helpers/graph.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';
import { flushTracing, startTracing, stopTracing, tracingEnabled, tracingSettingsFromEnv } from '../../src/tracing.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_PARENT = 'b7ad6b7169203331';
const traceparent = `00-${CLIENT_TRACE}-${CLIENT_PARENT}-01`;

test('the standard OTEL_* environment turns tracing on; nothing set, or disabled, keeps it off', () => {
  assert.equal(tracingSettingsFromEnv({}), undefined);
  assert.deepEqual(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), { url: 'http://collector:4318/v1/traces', serviceName: 'portcullis', ratio: 1 });
  assert.equal(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c/x', OTEL_SERVICE_NAME: 'edge', OTEL_TRACES_SAMPLER_ARG: '0.25' })?.url, 'http://c/x');
  assert.equal(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c/x', OTEL_TRACES_SAMPLER_ARG: '0.25' })?.ratio, 0.25);
  assert.equal(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_SDK_DISABLED: 'true' }), undefined);
  assert.equal(tracingSettingsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_TRACES_EXPORTER: 'none' }), undefined);
});

test('tracing off: no spans, and the client\'s trace headers reach the upstream as they came', async (t) => {
  assert.equal(tracingEnabled(), false);
  const s = await startStack(t);
  const r = await request(`${s.url}/public/x`, { headers: { traceparent, tracestate: 'vendor=1' } });
  await r.body.dump();
  const got = s.upstream.requests.at(-1)!;
  assert.equal(got.headers.traceparent, traceparent);
  assert.equal(got.headers.tracestate, 'vendor=1');
});

test('tracing on: door, callback and IdP spans; trace context from trusted peers only; no secret in any span', async (t) => {
  const receiver = await otlpReceiver(t);
  assert.ok(startTracing({ url: `${receiver.url}/v1/traces`, serviceName: 'portcullis-test', ratio: 1 }));
  t.after(() => stopTracing());

  // Untrusted peer (the default): a new trace starts at Portcullis; the upstream sees our span.
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const cookie = jar.get('portcullis', s.url)!;
  const r = await request(`${s.url}/app/page?token=QUERYSECRET`, { headers: { accept: 'application/json', cookie: jar.header(s.url), traceparent, tracestate: 'vendor=1' } });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
  const upstreamSaw = s.upstream.requests.at(-1)!;
  const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(String(upstreamSaw.headers.traceparent));
  assert.ok(sent, `a W3C traceparent to the upstream (got ${String(upstreamSaw.headers.traceparent)})`);
  assert.notEqual(sent[1], CLIENT_TRACE, 'an untrusted client does not choose the trace');
  assert.equal(upstreamSaw.headers.tracestate, undefined, 'nor its tracestate');

  // A WebSocket upgrade: a span for the handshake, and the upstream's upgrade request carries it.
  const status101 = await new Promise<number>((resolve, reject) => {
    const up = httpRequest(`${s.url}/socket`, { headers: { cookie: jar.header(s.url), connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', traceparent } });
    up.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0); });
    up.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    up.on('error', reject);
    up.end();
  });
  assert.equal(status101, 101);
  const wsSent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(String(s.upstream.requests.at(-1)!.headers.traceparent));
  assert.ok(wsSent && wsSent[1] !== CLIENT_TRACE, 'the upgrade to the upstream carries Portcullis\'s span');

  // A trusted proxy's trace context is the parent.
  const trusted = await startStack(t, { edit: (raw) => { raw.trustProxy = ['127.0.0.1']; } });
  const r2 = await request(`${trusted.url}/public/y`, { headers: { traceparent } });
  await r2.body.dump();
  const viaTrusted = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(trusted.upstream.requests.at(-1)!.headers.traceparent));
  assert.ok(viaTrusted);
  assert.equal(viaTrusted[1], CLIENT_TRACE, 'the trusted peer\'s trace continues');
  assert.notEqual(viaTrusted[2], CLIENT_PARENT, 'with Portcullis\'s span as the upstream\'s parent');

  await flushTracing();
  await until('spans exported', 5_000, () => receiver.spans.some((x) => x.attributes['url.path'] === '/public/y'));
  const spans = receiver.spans;

  const proxied = spans.find((x) => x.spanId === sent[2])!;
  assert.ok(proxied, 'the span the upstream was told about was exported');
  assert.equal(proxied.traceId, sent[1]);
  assert.equal(proxied.kind, 2, 'SERVER');
  assert.equal(proxied.name, 'GET app');
  assert.equal(proxied.attributes['portcullis.route'], 'app');
  assert.equal(proxied.attributes['portcullis.decision'], 'allow');
  assert.equal(proxied.attributes['http.response.status_code'], 200);
  assert.equal(proxied.attributes['url.path'], '/app/page', 'the path, never the query');
  assert.ok(proxied.parentSpanId === undefined || proxied.parentSpanId === '', 'a root span: the untrusted client\'s parent is ignored');

  const trustedSpan = spans.find((x) => x.spanId === viaTrusted[2])!;
  assert.equal(trustedSpan.traceId, CLIENT_TRACE);
  assert.equal(trustedSpan.parentSpanId, CLIENT_PARENT);

  const ws = spans.find((x) => x.spanId === wsSent[2])!;
  assert.ok(ws, 'the upgrade\'s span was exported');
  assert.equal(ws.attributes['portcullis.doorway'], 'websocket');
  assert.equal(ws.attributes['http.response.status_code'], 101);
  assert.equal(ws.attributes['portcullis.route'], 'app');

  const callback = spans.find((x) => x.attributes['url.path'] === '/oauth2/callback');
  assert.ok(callback, 'the sign-in callback has a span');
  assert.equal(callback.attributes['portcullis.decision'], 'endpoint');
  const token = spans.find((x) => x.name === 'idp token' && x.traceId === callback.traceId);
  assert.ok(token, 'the token call at the IdP is in the callback\'s trace');
  assert.equal(token.parentSpanId, callback.spanId, 'as its child');
  assert.equal(token.attributes['portcullis.idp.endpoint'], 'token');
  assert.equal(token.attributes['http.response.status_code'], 200);
  assert.ok(spans.some((x) => x.name === 'idp discovery' || x.name === 'idp jwks'), 'discovery/JWKS calls are traced too');

  // Nothing secret or personal in anything that left the process.
  const all = receiver.bodies.join('\n');
  for (const secret of [cookie.slice(0, 40), 'QUERYSECRET', 'alice', 'alice@example.com', 'code=', 'client_secret', s.idp.clientSecret]) {
    assert.ok(!all.includes(secret), `no ${secret.slice(0, 12)}… in exported spans`);
  }
});

test('tracing on: a refresh is a span, with its IdP token call as a child', async (t) => {
  const receiver = await otlpReceiver(t);
  assert.ok(startTracing({ url: `${receiver.url}/v1/traces`, serviceName: 'portcullis-test', ratio: 1 }));
  t.after(() => stopTracing());
  let offset = 0;
  const s = await startStack(t, { now: () => Date.now() + offset, idp: { ttl: { AccessToken: 60, IdToken: 60 } } });
  const real = Date.now;
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  // The dev IdP reads Date.now() too: move both clocks into the refresh margin of the 60 s token.
  Date.now = () => real() + offset;
  t.after(() => { Date.now = real; });
  offset = 50_000;
  const r = await request(`${s.url}/x`, { headers: { accept: 'application/json', cookie: jar.header(s.url) } });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
  await flushTracing();
  await until('refresh span exported', 5_000, () => receiver.spans.some((x) => x.name === 'session refresh'));
  const refresh = receiver.spans.find((x) => x.name === 'session refresh')!;
  assert.equal(refresh.attributes['portcullis.refresh.outcome'], 'refreshed');
  const door = receiver.spans.find((x) => x.spanId === refresh.parentSpanId);
  assert.equal(door?.attributes['url.path'], '/x', 'the refresh is a child of the request that needed it');
  const token = receiver.spans.find((x) => x.name === 'idp token' && x.parentSpanId === refresh.spanId);
  assert.ok(token, 'the refresh\'s token call is its child');
});

test('tracing on: the group-overage fetch from Graph is a span under the callback, with its result and no group or token', async (t) => {
  const receiver = await otlpReceiver(t);
  assert.ok(startTracing({ url: `${receiver.url}/v1/traces`, serviceName: 'portcullis-test', ratio: 1 }));
  t.after(() => stopTracing());
  const graph = await startTestGraph(t, { groups: { dora: ['group-secret-id-1'] } });
  const s = await startStack(t, {
    idp: { users: { dora: { password: 'dora-password', claims: { email: 'dora@example.com', _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.windows.net/x' } } } } } },
    edit: (raw) => { (raw.oidc as Record<string, unknown>).groupOverage = { graphUrl: graph.url }; },
  });
  graph.idp = s.idp;
  await loginViaHttp(`${s.url}/`, { user: 'dora', password: 'dora-password' });
  await flushTracing();
  await until('graph span exported', 5_000, () => receiver.spans.some((x) => x.name === 'graph getMemberObjects'));
  const span = receiver.spans.find((x) => x.name === 'graph getMemberObjects')!;
  assert.equal(span.attributes['portcullis.group_overage.result'], 'ok');
  assert.equal(span.attributes['server.address'], new URL(graph.url).host);
  const parent = receiver.spans.find((x) => x.spanId === span.parentSpanId);
  assert.match(String(parent?.attributes['url.path']), /^\/oauth2\/callback/, 'a child of the sign-in callback');
  assert.ok(!JSON.stringify(receiver.spans).includes('group-secret-id-1'), 'no group in any span');
});
