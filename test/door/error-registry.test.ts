// The one error registry (src/errors.ts): codes are closed (a misspelt one does not compile), each
// entry is complete, and foreign errors (Fastify's body parsing, anything thrown) map onto it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CODES, PortcullisError, REGISTRY, asPortcullisError, coded, errors, isErrorCode } from '../../src/errors.js';

/** The door's answers API clients matched before the registry existed, and RFC 6750's / RFC 9470's own names; every other code is ERR_<AREA>_<WHAT>. */
const LEGACY = new Set(['unauthenticated', 'forbidden', 'invalid_token', 'insufficient_user_authentication']);

test('a code outside the registry, or a reason-naming code without its reason, does not compile', () => {
  // npm test typechecks first: these lines fail it the day the registry stops being closed.
  // @ts-expect-error not a registry code
  const typo = () => coded('ERR_UPSTREAM_TIMEOUTT');
  // @ts-expect-error ERR_REQUEST_BAD's message names the reason
  const noDetail = () => coded('ERR_REQUEST_BAD');
  assert.equal(typeof typo, 'function');
  assert.equal(typeof noDetail, 'function');
  assert.equal(isErrorCode('ERR_UPSTREAM_TIMEOUTT'), false);
  assert.equal(isErrorCode('ERR_UPSTREAM_TIMEOUT'), true);
  assert.equal(isErrorCode('toString'), false, 'own keys only');
});

test('every registry entry is complete: a 4xx/5xx status, a message, when, and what the operator checks', () => {
  for (const code of ERROR_CODES) {
    const spec: { status: number; message: string | ((d: string) => string); detail?: string; when: string; operator: string } = REGISTRY[code];
    assert.ok(LEGACY.has(code) || /^ERR_[A-Z][A-Z0-9_]*[A-Z0-9]$/.test(code), `${code}: ERR_<AREA>_<WHAT>`);
    assert.ok(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599, code);
    const message = typeof spec.message === 'string' ? spec.message : spec.message('some specific reason');
    assert.ok(message.length > 10, `${code}: message`);
    if (typeof spec.message !== 'string') assert.ok(spec.detail, `${code}: says what its detail is`);
    assert.ok(spec.when.length > 10 && spec.operator.length > 10, `${code}: docs text`);
    const e = new PortcullisError(code, { detail: 'x' });
    assert.equal(e.code, code);
    assert.equal(e.statusCode, spec.status);
    assert.equal(e.expose, spec.status < 500);
  }
});

test("Fastify's own errors and anything else thrown map onto registry codes", () => {
  const fastify = (code: string, statusCode: number) => Object.assign(new Error(`fastify says ${code}`), { code, statusCode });
  const table: Array<[unknown, string, number]> = [
    [fastify('FST_ERR_CTP_BODY_TOO_LARGE', 413), 'ERR_REQUEST_BODY_TOO_LARGE', 413],
    [fastify('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415), 'ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE', 415],
    [fastify('FST_ERR_CTP_INVALID_JSON_BODY', 400), 'ERR_REQUEST_BODY_MALFORMED', 400],
    [fastify('FST_ERR_CTP_EMPTY_JSON_BODY', 400), 'ERR_REQUEST_BODY_MALFORMED', 400],
    [fastify('FST_ERR_NOT_FOUND', 404), 'ERR_ROUTE_NOT_FOUND', 404],
    [fastify('FST_ERR_BAD_URL', 400), 'ERR_REQUEST_BAD', 400],
    [fastify('FST_ERR_MAX_PARAM_LENGTH', 414), 'ERR_REQUEST_BAD', 400],
    [new TypeError('a bug'), 'ERR_INTERNAL', 500],
    ['a string', 'ERR_INTERNAL', 500],
    [undefined, 'ERR_INTERNAL', 500],
    [errors.upstreamTimeout(), 'ERR_UPSTREAM_TIMEOUT', 504],
  ];
  for (const [thrown, code, status] of table) {
    const e = asPortcullisError(thrown);
    assert.equal(e.code, code, String((thrown as Error)?.message ?? thrown));
    assert.equal(e.statusCode, status, code);
    assert.ok(!e.message.includes('fastify says'), "Fastify's own text stays in the cause (the log), not the answer");
  }
});

test('retry hints come from the registry; a rate limiter may set its own Retry-After', () => {
  assert.equal(errors.rateLimited().retryAfter, 60);
  assert.equal(errors.rateLimited(7).retryAfter, 7);
  assert.equal(errors.idpUnavailable().retrySignIn, true);
  assert.equal(errors.upstreamUnavailable().retrySignIn, false);
  assert.equal(errors.callbackIdpError('access_denied', undefined).code, 'ERR_CALLBACK_ACCESS_DENIED');
  assert.equal(errors.callbackIdpError('invalid_scope', 'no').message, 'The identity provider reported an error: invalid_scope — no.');
});
