// The door's answers: Accept negotiation (RFC 9110 §12.5.1 weights, not substring checks) and the
// one JSON error shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorAnswer, isBrowserNavigation, prefersHtml } from '../../src/door/respond.js';
import { errors } from '../../src/errors.js';

test('prefersHtml weighs media ranges instead of looking for "text/html" in the string', () => {
  const table: Array<[string | undefined, boolean]> = [
    [undefined, false],
    ['*/*', false],
    ['application/json', false],
    ['text/html', true],
    ['TEXT/HTML', true],
    ['text/*', true],
    ['text/html;q=0', false],
    ['application/json, text/html;q=0.5', false],
    ['application/json;q=0.5, text/html', true],
    ['text/html;q=0.1, */*;q=0.8', false],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8', true], // Chromium navigation
    ['application/xhtml+xml', false],
    ['image/png', false],
  ];
  for (const [accept, html] of table) assert.equal(prefersHtml(accept), html, String(accept));
});

test('only a GET/HEAD navigation preferring HTML is a browser navigation', () => {
  const nav = { accept: 'text/html', 'sec-fetch-mode': 'navigate' };
  assert.equal(isBrowserNavigation('GET', nav), true);
  assert.equal(isBrowserNavigation('HEAD', { accept: 'text/html' }), true);
  assert.equal(isBrowserNavigation('POST', nav), false);
  assert.equal(isBrowserNavigation('GET', { ...nav, 'sec-fetch-mode': 'cors' }), false);
  assert.equal(isBrowserNavigation('GET', { ...nav, 'x-requested-with': 'XMLHttpRequest' }), false);
  assert.equal(isBrowserNavigation('GET', { accept: 'text/html;q=0, application/json' }), false);
});

test('every error answer has the one JSON shape, or the page, with the request id', () => {
  const json = errorAnswer(errors.upstreamTimeout(), { id: 'req-1', headers: { accept: 'application/json' } });
  assert.equal(json.status, 504);
  assert.deepEqual(JSON.parse(json.body), { error: 'ERR_UPSTREAM_TIMEOUT', message: errors.upstreamTimeout().message, requestId: 'req-1' });
  assert.equal(json.headers['cache-control'], 'no-store');
  const page = errorAnswer(errors.storeUnavailable(), { id: 'req-2', headers: { accept: 'text/html' } });
  assert.equal(page.status, 503);
  assert.equal(page.headers['retry-after'], '5');
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(page.body, /req-2/);
});
