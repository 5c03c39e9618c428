// The per-request metrics are kept outside prom-client's label machinery (tallies, a route histogram);
// what Prometheus scrapes — and what the cluster primary sums across workers — must still be exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AggregatorRegistry } from 'prom-client';
import { createMetrics, responseObserver } from '../../src/metrics.js';

const line = (text: string, prefix: string) => text.split('\n').find((l) => l.startsWith(prefix))?.split(' ').at(-1);

test('request counters and the duration histogram export exact Prometheus series', async () => {
  const m = createMetrics({ defaultMetrics: false });
  const observe = responseObserver(m);
  observe('app', 200, 0.001); // le is inclusive: counts in the 0.001 bucket
  observe('app', 204, 0.003);
  observe('app', 503, 45); // beyond the last bound: only +Inf
  observe('public', 302, 0.0004);
  m.cacheHits.tally().n += 2;
  const text = await m.registry.metrics();
  assert.equal(line(text, 'portcullis_http_requests_total{route="app",status="2xx"}'), '2');
  assert.equal(line(text, 'portcullis_http_requests_total{route="app",status="5xx"}'), '1');
  assert.equal(line(text, 'portcullis_http_requests_total{route="public",status="3xx"}'), '1');
  assert.equal(line(text, 'portcullis_http_request_duration_seconds_bucket{route="app",le="0.001"}'), '1');
  assert.equal(line(text, 'portcullis_http_request_duration_seconds_bucket{route="app",le="0.005"}'), '2');
  assert.equal(line(text, 'portcullis_http_request_duration_seconds_bucket{route="app",le="30"}'), '2');
  assert.equal(line(text, 'portcullis_http_request_duration_seconds_bucket{route="app",le="+Inf"}'), '3');
  assert.equal(line(text, 'portcullis_http_request_duration_seconds_count{route="app"}'), '3');
  assert.equal(Number(line(text, 'portcullis_http_request_duration_seconds_sum{route="app"}')), 45.004);
  assert.equal(line(text, 'portcullis_session_cache_hits_total'), '2');
  assert.match(text, /# TYPE portcullis_http_request_duration_seconds histogram/);

  // A scrape does not reset or double-count: counts carry on from where they were.
  observe('app', 200, 0.002);
  const again = await m.registry.metrics();
  assert.equal(line(again, 'portcullis_http_requests_total{route="app",status="2xx"}'), '3');
  assert.equal(line(again, 'portcullis_http_request_duration_seconds_count{route="app"}'), '4');
  assert.equal(line(again, 'portcullis_session_cache_hits_total'), '2');

  // Workers' metrics are summed by the cluster primary (src/cluster.ts uses the same aggregation).
  const worker = await m.registry.getMetricsAsJSON();
  const summed = await AggregatorRegistry.aggregate([worker, worker]).metrics();
  assert.equal(line(summed, 'portcullis_http_requests_total{route="app",status="2xx"}'), '6');
  assert.equal(line(summed, 'portcullis_http_request_duration_seconds_bucket{route="app",le="0.005"}'), '6');
  assert.equal(line(summed, 'portcullis_http_request_duration_seconds_count{route="public"}'), '2');
});
