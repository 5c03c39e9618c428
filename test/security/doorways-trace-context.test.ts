// Trace context × doorways, with tracing ON: a client's `traceparent`, `tracestate` and `baggage`
// on every doorway — plain request with a cached session (a), with an uncached one (b), during a
// refresh (c), bearer token (d), WebSocket upgrade (e), forward-auth (f) — from an untrusted peer
// and from a trusted one (the same stacks trust 127.0.0.1; requests from the loopback alias
// 127.0.0.2 are an untrusted peer).
//
//   untrusted peer  the upstream gets Portcullis's span as its parent in a NEW trace; the client's
//                   tracestate and baggage are dropped (baggage is key/value context that services
//                   downstream read as the edge's word: `role=admin`); Portcullis's span is a root.
//   trusted peer    the trace continues: the upstream's traceparent names the client's trace and
//                   Portcullis's span (whose parent is the client's span); tracestate and baggage
//                   are passed on.
//   forward-auth    proxies nothing (the fronting proxy forwards its own request); its span follows
//                   the same rule, its answer never carries trace headers; an untrusted peer → 400.
//
// Tracing is per process (src/tracing.ts), so this table lives in its own file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { otlpReceiver, type ExportedSpan } from '../helpers/otlp.js';
import { exchange } from '../helpers/raw-http.js';
import { until } from '../helpers/wait.js';
import { flushTracing, startTracing, stopTracing } from '../../src/tracing.js';
import { ALICE } from './support.js';
import { DOORWAYS, doorwayHead, startDoorwayStacks } from './doorway-stacks.js';

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_PARENT = '00f067aa0ba902b7';
const TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_PARENT}-01`;
const TRACESTATE = 'vendor=forged';
const BAGGAGE = 'role=admin,user=mallory';
const TRUSTED = '127.0.0.1';
const UNTRUSTED = '127.0.0.2';

const ROUTES = [{ name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true, bearer: true }];
const W3C = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

test('tracing on: trace context from an untrusted peer is replaced on every doorway, a trusted peer\'s continues', { timeout: 120_000 }, async (t) => {
  const receiver = await otlpReceiver(t);
  assert.ok(startTracing({ url: `${receiver.url}/v1/traces`, serviceName: 'portcullis-doorways', ratio: 1 }));
  t.after(() => stopTracing());

  const st = await startDoorwayStacks(t, { routes: ROUTES, user: ALICE, edit: (raw) => { raw.trustProxy = [TRUSTED]; } });
  const token = await st.token({ sub: 'alice', email: 'alice@example.com', preferred_username: 'alice', groups: ['admin', 'dev'] });
  const ids: Array<{ id: string; trusted: boolean; label: string }> = [];

  for (const [door, name] of DOORWAYS) {
    for (const from of [UNTRUSTED, TRUSTED]) {
      const trusted = from === TRUSTED;
      const label = `${name}, ${trusted ? 'trusted' : 'untrusted'} peer`;
      await t.test(label, async () => {
        const s = st.stackOf(door);
        const port = Number(new URL(s.url).port);
        const sentId = randomUUID();
        const trace: Array<[string, string]> = [['traceparent', TRACEPARENT], ['tracestate', TRACESTATE], ['baggage', BAGGAGE], ['X-Request-Id', sentId]];
        const credential: Array<[string, string]> = door === 'd' ? [['Authorization', `Bearer ${token}`]] : [['Cookie', `portcullis=${st.cookie(door)}`]];
        if (door === 'c') st.beforeC();
        const before = s.upstream.requests.length;
        const reply = await exchange(port, doorwayHead(door, port, '/app/trace', credential, trace), undefined, false, 5000, from);
        if (door === 'c') assert.ok(st.tookC(reply.headers), 'precondition: the session was refreshed on this request');
        const answerId = reply.headers.find(([n]) => n === 'x-request-id')?.[1];

        if (door === 'f') {
          if (!trusted) {
            assert.equal(reply.status, 400, 'forward-auth answers trusted peers only');
            ids.push({ id: answerId!, trusted, label });
            return;
          }
          assert.equal(reply.status, 202, reply.body);
          for (const h of ['traceparent', 'tracestate', 'baggage']) assert.equal(reply.headers.find(([n]) => n === h), undefined, `no ${h} in the forward-auth answer`);
          assert.equal(s.upstream.requests.length, before, 'forward-auth proxies nothing');
          ids.push({ id: sentId, trusted, label });
          return;
        }
        assert.equal(reply.status, door === 'e' ? 101 : 200, reply.body);
        const seen = s.upstream.requests.slice(before);
        assert.equal(seen.length, 1);
        const up = seen[0]!;
        const count = (n: string) => up.rawHeaders.filter((x, i) => i % 2 === 0 && x.toLowerCase() === n).length;
        assert.equal(count('traceparent'), 1, 'one traceparent');
        const m = W3C.exec(String(up.headers.traceparent));
        assert.ok(m, `a W3C traceparent (got ${String(up.headers.traceparent)})`);
        if (trusted) {
          assert.equal(m[1], CLIENT_TRACE, 'the trusted peer\'s trace continues');
          assert.notEqual(m[2], CLIENT_PARENT, 'with Portcullis\'s span as the upstream\'s parent');
          assert.equal(up.headers.tracestate, TRACESTATE, 'tracestate travels with the trace');
          assert.equal(up.headers.baggage, BAGGAGE, 'a trusted proxy\'s baggage is passed');
          assert.equal(up.headers['x-request-id'], sentId, 'a trusted proxy\'s request id is kept');
        } else {
          assert.notEqual(m[1], CLIENT_TRACE, 'an untrusted client does not choose the trace');
          assert.equal(up.headers.tracestate, undefined, 'nor its tracestate');
          assert.equal(up.headers.baggage, undefined, 'nor its baggage');
          assert.notEqual(up.headers['x-request-id'], sentId);
        }
        ids.push({ id: String(up.headers['x-request-id']), trusted, label });
      });
    }
  }

  // Every doorway's own span: a child of the trusted peer's span, a root for an untrusted one.
  await flushTracing();
  const spanOf = (id: string): ExportedSpan | undefined => receiver.spans.find((x) => x.attributes['portcullis.request_id'] === id);
  await until('every request\'s span exported', 10_000, async () => { await flushTracing(); return ids.every(({ id }) => spanOf(id)); });
  for (const { id, trusted, label } of ids) {
    const span = spanOf(id)!;
    if (trusted) {
      assert.equal(span.traceId, CLIENT_TRACE, `${label}: span in the client's trace`);
      assert.equal(span.parentSpanId, CLIENT_PARENT, `${label}: span's parent is the client's`);
    } else {
      assert.notEqual(span.traceId, CLIENT_TRACE, `${label}: a new trace`);
      assert.ok(!span.parentSpanId, `${label}: a root span`);
    }
  }
});
