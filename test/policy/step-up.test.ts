// routes[].stepUp: the pure check the door and the callback share (policy/step-up.ts), as a table of
// claims and expected shortfalls, and the config keys — compiled once, refused where they make no sense.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeStepUp, signInTooOld, stepUpRequirement, stepUpShortfall, type StepUpShortfall } from '../../src/policy/step-up.js';
import { validateConfigObject } from '../../src/config/index.js';
import { explain } from '../../src/cli/explain.js';

const NOW = 1_800_000_000_000;
const sec = (msAgo: number) => Math.floor((NOW - msAgo) / 1000);

test('stepUpShortfall: acr one of the listed values (exactly), auth_time within maxAge + tolerance', () => {
  const acr = stepUpRequirement(['phr', 'mfa'], undefined, 30_000);
  const age = stepUpRequirement(undefined, 600, 30_000);
  const both = stepUpRequirement(['mfa'], 600, 30_000);
  const rows: Array<[string, ReturnType<typeof stepUpRequirement>, Record<string, unknown>, StepUpShortfall | undefined]> = [
    ['listed acr', acr, { acr: 'mfa' }, undefined],
    ['the other listed acr', acr, { acr: 'phr' }, undefined],
    ['an acr not listed', acr, { acr: 'pwd' }, 'acr'],
    ['acr differing in case', acr, { acr: 'MFA' }, 'acr'],
    ['no acr', acr, {}, 'acr'],
    ['acr as a list', acr, { acr: ['mfa'] }, 'acr'],
    ['acr null', acr, { acr: null }, 'acr'],
    ['a prototype key is not an acr', acr, { acr: 'constructor' }, 'acr'],
    ['acr only: any age', acr, { acr: 'mfa', auth_time: 0 }, undefined],
    ['fresh auth_time', age, { auth_time: sec(60_000) }, undefined],
    ['auth_time exactly maxAge + tolerance old', age, { auth_time: sec(630_000) }, undefined],
    ['auth_time past maxAge + tolerance', age, { auth_time: sec(632_000) }, 'max-age'],
    ['no auth_time', age, {}, 'max-age'],
    ['auth_time a string', age, { auth_time: String(sec(0)) }, 'max-age'],
    ['auth_time NaN', age, { auth_time: Number.NaN }, 'max-age'],
    ['auth_time Infinity', age, { auth_time: Number.POSITIVE_INFINITY }, 'max-age'],
    ['maxAge only: any acr', age, { acr: 'pwd', auth_time: sec(0) }, undefined],
    ['both met', both, { acr: 'mfa', auth_time: sec(0) }, undefined],
    ['both short: acr first', both, { acr: 'pwd', auth_time: sec(3_600_000) }, 'acr'],
    ['acr met, too old', both, { acr: 'mfa', auth_time: sec(3_600_000) }, 'max-age'],
  ];
  for (const [what, req, claims, expected] of rows) assert.equal(stepUpShortfall(req, claims, NOW), expected, what);
  assert.equal(signInTooOld(both, { acr: 'pwd', auth_time: sec(3_600_000) }, NOW), true, 'too old whatever else lacks (prompt=login)');
  assert.equal(signInTooOld(acr, {}, NOW), false, 'no maxAge: never too old');
});

test('the requirement in plain words, for pages and messages', () => {
  assert.equal(describeStepUp(stepUpRequirement(['phr', 'mfa'], 600, 0)), 'a sign-in with one of the authentication levels phr, mfa, at most 10 minutes old');
  assert.equal(describeStepUp(stepUpRequirement(['mfa'], undefined, 0)), 'a sign-in with the authentication level mfa');
  assert.equal(describeStepUp(stepUpRequirement(undefined, 3600, 0)), 'a sign-in at most 1 hour old');
  assert.equal(describeStepUp(stepUpRequirement(undefined, 90, 0)), 'a sign-in at most 90 seconds old');
});

const config = (route: Record<string, unknown>) => ({
  publicUrl: 'https://apps.example.com',
  oidc: { issuer: 'https://idp.example.com', clientId: 'portcullis', clientSecret: 'secret', clockTolerance: '30s' },
  session: { secrets: ['x'.repeat(40)] },
  routes: [{ name: 'console', match: { path: '/console' }, upstream: 'http://console:8080', ...route }],
});

test('stepUp compiles to an acr Set, the acr_values text and max age in seconds and ms (with the clock tolerance)', () => {
  const r = validateConfigObject(config({ stepUp: { acr: ['phr', 'mfa'], maxAge: '10m' } }), {});
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  const s = r.config.routes[0]!.stepUp!;
  assert.deepEqual([...s.acr!], ['phr', 'mfa']);
  assert.equal(s.acrValues, 'phr mfa');
  assert.equal(s.maxAgeSec, 600);
  assert.equal(s.freshForMs, 630_000);
  const none = validateConfigObject(config({}), {});
  assert.ok(none.ok);
  assert.equal(none.config.routes[0]!.stepUp, undefined);
});

test('stepUp is refused where it makes no sense, each problem at its key path', () => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ auth: 'public', stepUp: { acr: ['mfa'] } }, 'routes[0].stepUp', /public route/],
    [{ stepUp: {} }, 'routes[0].stepUp', /./],
    [{ stepUp: { acr: [] } }, 'routes[0].stepUp.acr', /./],
    [{ stepUp: { acr: ['two words'] } }, 'routes[0].stepUp.acr[0]', /without spaces, quotes or backslashes/],
    [{ stepUp: { acr: ['say"what'] } }, 'routes[0].stepUp.acr[0]', /quotes/],
    [{ stepUp: { maxAge: '30s' } }, 'routes[0].stepUp.maxAge', /at least 1m/],
    [{ stepUp: { maxAge: 'ten minutes' } }, 'routes[0].stepUp.maxAge', /duration/],
    [{ stepUp: { acr: ['mfa'], level: 2 } }, 'routes[0].stepUp', /./],
  ];
  for (const [route, path, message] of cases) {
    const r = validateConfigObject(config(route), {});
    assert.ok(!r.ok, `${JSON.stringify(route)} is refused`);
    const found = r.issues.find((i) => i.path === path || i.path.startsWith(`${path}.`));
    assert.ok(found, `${JSON.stringify(route)}: an issue at ${path} (got ${JSON.stringify(r.issues)})`);
    assert.match(found.message, message, JSON.stringify(route));
  }
});

test('portcullis explain says what a route\'s step-up needs and whether the given claims meet it', () => {
  const r = validateConfigObject(config({ stepUp: { acr: ['phr', 'mfa'], maxAge: '10m' } }), {});
  assert.ok(r.ok);
  const now = Math.floor(Date.now() / 1000);
  const weak = explain(r.config, 'https://apps.example.com/console', 'GET', { sub: 'a', acr: 'pwd', auth_time: now });
  assert.equal(weak.exitCode, 3);
  assert.match(weak.text, /step-up: {4}a sign-in with one of the authentication levels phr, mfa, at most 10 minutes old — not met \(acr "pwd"\)/);
  assert.match(weak.text, /decision: {3}STEP UP \(step-up-acr/);
  const old = explain(r.config, 'https://apps.example.com/console', 'GET', { sub: 'a', acr: 'mfa', auth_time: now - 3600 });
  assert.match(old.text, /not met \(auth_time \d+\)/);
  const ok = explain(r.config, 'https://apps.example.com/console', 'GET', { sub: 'a', acr: 'mfa', auth_time: now });
  assert.equal(ok.exitCode, 0);
  assert.match(ok.text, / — met\n/);
});
