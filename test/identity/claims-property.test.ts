// Whatever an IdP puts in its claims (lone surrogates, controls, non-BMP, 100k-character values,
// nested arrays and objects), identity-header rendering and the 403/error pages never throw, every
// rendered header is one Node accepts, and the header budget holds. Property tests (fixed seed,
// bounded runs) plus the examples that crashed or misrendered before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import fc from 'fast-check';
import { compileHeaderTemplate, encodeHeaderValue, headerSafe, type HeaderEncoding } from '../../src/identity/templates.js';
import { IdentityHeaderPlan, type HeaderBag } from '../../src/identity/headers.js';
import { validateConfigObject, type RouteConfig } from '../../src/config/index.js';
import { errorPage, forbiddenPage, renderError } from '../../src/pages.js';
import type { Issues } from '../../src/config/issues.js';

const RUNS = { seed: 20240611, numRuns: 300 } as const;

/** No lone UTF-16 surrogates (String.prototype.isWellFormed: Node 20, not in the ES2022 typings). */
function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

// ---- arbitraries -------------------------------------------------------------------------------

const codeUnit = (min: number, max: number) => fc.integer({ min, max }).map((n) => String.fromCharCode(n));
/** One "character" as an IdP might send it: any UTF-16 unit (lone surrogates included), controls, non-BMP. */
const unit = fc.oneof(
  { weight: 4, arbitrary: codeUnit(0x20, 0x7e) },
  { weight: 2, arbitrary: codeUnit(0, 0xffff) },
  { weight: 2, arbitrary: codeUnit(0xd800, 0xdfff) },
  { weight: 2, arbitrary: fc.oneof(codeUnit(0, 0x1f), fc.constant('\x7f'), codeUnit(0x80, 0x9f)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const shortText = fc.string({ unit, maxLength: 40 });
/** Up to ~100k characters, built by repetition so a run stays fast. */
const longText = fc.tuple(fc.string({ unit, minLength: 1, maxLength: 16 }), fc.integer({ min: 1, max: 100_000 }))
  .map(([s, n]) => s.repeat(Math.ceil(n / s.length)).slice(0, n));
const text = fc.oneof({ weight: 6, arbitrary: shortText }, { weight: 1, arbitrary: longText });
/** Claims have several text fields, each rendered on eight plans: long values only now and then keep a run fast. */
const claimText = fc.oneof({ weight: 60, arbitrary: shortText }, { weight: 1, arbitrary: longText });
const scalar = fc.oneof(claimText, fc.double(), fc.integer(), fc.boolean(), fc.constant(null));
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(shortText, tie('value'), { maxKeys: 3 }),
  ),
}));
/** Many groups: enough to go over any budget. */
const manyGroups = fc.tuple(shortText, fc.integer({ min: 0, max: 2000 })).map(([t, n]) => Array.from({ length: n }, (_, i) => `${t}-${i}`));
const groups = fc.oneof(fc.array(claimText, { maxLength: 50 }), manyGroups, value);
const claimsArb = fc.record({
  sub: fc.oneof(claimText, value),
  email: fc.oneof(claimText, value),
  preferred_username: fc.oneof(claimText, value),
  name: fc.oneof(claimText, value),
  groups,
  realm_access: fc.record({ roles: groups }, { requiredKeys: [] }),
}, { requiredKeys: [] });

// ---- the plans under test ----------------------------------------------------------------------

function routes(): RouteConfig[] {
  const r = validateConfigObject({
    publicUrl: 'https://apps.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    session: { secrets: ['x'.repeat(40)] },
    routes: [
      { name: 'app', upstream: 'http://u', headers: { 'X-Cert-Subject': 'CN={name}, O=Acme', 'X-Who': '{preferred_username|email|sub}' } },
      {
        name: 'grafana', match: { path: '/grafana' }, upstream: 'http://g', preset: 'grafana',
        grafanaRoles: { Admin: { claim: 'groups', contains: 'admin' }, Editor: { claim: 'realm_access.roles', contains: 'editor' } },
      },
    ],
  }, {});
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  return [...r.config.routes];
}

const ROUTES = routes();
const ENCODINGS: HeaderEncoding[] = ['percent', 'rfc2047'];
const BUDGETS = [1024, 8192];
const PLANS = ENCODINGS.flatMap((encoding) => BUDGETS.map((budget) => ({ encoding, budget, plan: new IdentityHeaderPlan(ROUTES, budget, undefined, encoding) })));
const TRUNCATED = 'x-forwarded-groups-truncated';

function size(h: HeaderBag): number {
  return Object.entries(h).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);
}

function checkHeaders(h: HeaderBag, budget: number): void {
  for (const [k, v] of Object.entries(h)) {
    assert.equal(typeof v, 'string', k);
    validateHeaderName(k);
    validateHeaderValue(k, v as string);
    assert.match(v as string, /^[\x20-\x7e]+$/, `${k} is non-empty printable ASCII`);
  }
  const total = size(h);
  // Within budget, truncation marker included; over it only when X-Forwarded-User alone is (it is
  // never cut or dropped: a cut identifier could name someone else).
  if (total > budget) {
    assert.deepEqual(Object.keys(h).filter((k) => k !== 'x-forwarded-user' && k !== TRUNCATED), [], `total ${total} > ${budget}`);
  }
}

// ---- properties --------------------------------------------------------------------------------

test('property: any claims render to headers Node accepts, within the budget, on every plan', () => {
  fc.assert(fc.property(claimsArb, (claims) => {
    for (const { plan, budget } of PLANS) {
      for (const route of ['app', 'grafana']) {
        const h: HeaderBag = {};
        plan.inject(route, { claims, accessToken: 'at-1' }, h);
        delete h['x-forwarded-access-token'];
        checkHeaders(h, budget);
        // The rendered headers are cached per claims object: the second answer is the same.
        const again: HeaderBag = {};
        plan.inject(route, { claims }, again);
        assert.deepEqual(again, h);
      }
    }
  }), RUNS);
});

test('property: headerSafe + encodeHeaderValue are total, well-formed, control-free and decodable', () => {
  fc.assert(fc.property(value, (v) => {
    const safe = headerSafe(v);
    if (safe === undefined) return;
    assert.ok(isWellFormed(safe), 'no lone surrogates');
    assert.doesNotMatch(safe, /[\x00-\x1f\x7f-\x9f]/, 'no C0, DEL or C1 controls');
    for (const mode of ENCODINGS) {
      const enc = encodeHeaderValue(safe, mode);
      if (enc !== '') validateHeaderValue('x-test', enc);
      assert.match(enc, /^[\x20-\x7e]*$/);
      if (mode === 'percent' && !safe.includes('%')) assert.equal(decodeURIComponent(enc), safe);
      if (mode === 'rfc2047' && enc.startsWith('=?UTF-8?B?')) assert.equal(Buffer.from(enc.slice(10, -2), 'base64').toString('utf8'), safe);
    }
  }), RUNS);
});

test('property: encodeHeaderValue accepts any string directly (not only cleaned ones)', () => {
  fc.assert(fc.property(text, (s) => {
    for (const mode of ENCODINGS) {
      const enc = encodeHeaderValue(s, mode);
      assert.match(enc, /^[\x20-\x7e]*$/);
      if (enc !== '') validateHeaderValue('x-test', enc);
    }
  }), RUNS);
});

test('property: printable-ASCII claims are passed through unchanged, in both encodings', () => {
  const ascii = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 });
  const arb = fc.record({ sub: ascii, email: ascii, preferred_username: ascii, name: ascii, groups: fc.array(ascii, { minLength: 1, maxLength: 20 }) });
  fc.assert(fc.property(arb, (claims) => {
    for (const { plan, budget } of PLANS) {
      if (budget < 8192) continue;
      const app: HeaderBag = {};
      plan.inject('app', { claims }, app);
      assert.equal(app['x-forwarded-user'], claims.sub);
      assert.equal(app['x-forwarded-email'], claims.email);
      assert.equal(app['x-forwarded-preferred-username'], claims.preferred_username);
      assert.equal(app['x-forwarded-groups'], claims.groups.join(','));
      assert.equal(app['x-cert-subject'], `CN=${claims.name}, O=Acme`);
      assert.equal(app['x-who'], claims.preferred_username);
      const g: HeaderBag = {};
      plan.inject('grafana', { claims }, g);
      assert.equal(g['x-webauth-user'], claims.preferred_username);
      assert.equal(g['x-webauth-email'], claims.email);
      assert.equal(g['x-webauth-name'], claims.name);
    }
  }), RUNS);
});

/** Every `&` starts an entity, and no input adds a raw `<`, `>`, `"` or `'` to the page. */
function checkPage(body: string, benign: string): void {
  assert.ok(isWellFormed(body), 'no lone surrogates');
  assert.equal(Buffer.from(body, 'utf8').toString('utf8'), body, 'round-trips as UTF-8');
  assert.doesNotMatch(body, /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/, 'no control characters but TAB/LF/CR');
  assert.doesNotMatch(body, /&(?!(amp|lt|gt|quot|#39);)/, 'every & is an entity');
  for (const c of ['<', '>', '"', "'"]) assert.equal(body.split(c).length, benign.split(c).length, `no raw ${c} from input`);
  assert.ok(body.length < 80_000, `bounded size (${body.length})`);
}

test('property: forbiddenPage, errorPage and renderError never throw and escape everything', () => {
  const benignForbidden = forbiddenPage({ user: 'u', route: 'r', signOutUrl: 'https://a.example/out' });
  const benignError = errorPage({ status: 403, title: 't', message: 'm', code: 'c', signInUrl: 'https://a.example/in', requestId: 'id' });
  const benignHtml = renderError({ statusCode: 403, code: 'c', message: 'm' }, true, 'id', 'https://a.example/in').body;
  fc.assert(fc.property(text, text, text, text, text, (a, b, c, d, e) => {
    checkPage(forbiddenPage({ user: a, route: b, signOutUrl: 'https://a.example/out' }), benignForbidden);
    checkPage(errorPage({ status: 403, title: a, message: b, code: c, signInUrl: 'https://a.example/in', requestId: `id${d}` }), benignError);
    const html = renderError({ statusCode: 403, code: c, message: a }, true, `id${d}`, 'https://a.example/in');
    assert.equal(html.type, 'text/html; charset=utf-8');
    checkPage(html.body, benignHtml);
    const json = renderError({ statusCode: 500, code: c, message: a }, false, d, e);
    assert.ok(isWellFormed(json.body));
    const parsed = JSON.parse(json.body) as Record<string, string>;
    for (const v of Object.values(parsed)) assert.ok(isWellFormed(v), 'decodes to well-formed strings');
    // Links are never cut: too long and there is no link.
    const withLink = errorPage({ status: 401, title: 't', message: 'm', code: 'c', signInUrl: e });
    assert.ok(isWellFormed(withLink));
  }), RUNS);
});

// ---- examples that crashed or misrendered before ---------------------------------------------

function render(claims: Record<string, unknown>, route = 'app', encoding: HeaderEncoding = 'percent', budget = 8192): HeaderBag {
  const h: HeaderBag = {};
  new IdentityHeaderPlan(ROUTES, budget, undefined, encoding).inject(route, { claims }, h);
  checkHeaders(h, budget);
  return h;
}

const FFFD = '%EF%BF%BD';
const b64 = (s: string) => `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`;

test('a lone surrogate in sub becomes U+FFFD instead of throwing URIError', () => {
  assert.equal(render({ sub: 'a\ud800b' })['x-forwarded-user'], `a${FFFD}b`);
  assert.equal(render({ sub: 'a\ud800b' }, 'app', 'rfc2047')['x-forwarded-user'], b64('a\ufffdb'));
  assert.equal(encodeHeaderValue('\udfff', 'percent'), FFFD);
});

test('a lone surrogate in email (and the Grafana user fallback to it) becomes U+FFFD', () => {
  const h = render({ email: '\udc00x@example.com' });
  assert.equal(h['x-forwarded-email'], `${FFFD}x@example.com`);
  assert.equal(h['x-who'], `${FFFD}x@example.com`);
  assert.equal(render({ email: '\udc00x@example.com' }, 'grafana')['x-webauth-user'], `${FFFD}x@example.com`);
});

test('lone surrogates in groups entries are replaced per entry (halves in two entries never pair)', () => {
  const h = render({ groups: ['ok', 'bad\ud83d', '\ude00', ['nested\ud800', 1, true, null, { o: 1 }]] });
  assert.equal(h['x-forwarded-groups'], `ok,bad${FFFD},${FFFD},nested${FFFD},1,true`);
});

test('a lone surrogate in a template field renders as U+FFFD', () => {
  assert.equal(render({ name: 'Zo\ud800ë' })['x-cert-subject'], `CN=Zo${FFFD}%C3%AB, O=Acme`);
  assert.equal(render({ name: 'Zo\ud800ë' }, 'grafana')['x-webauth-name'], `Zo${FFFD}%C3%AB`);
});

test('NUL, CR, LF, DEL and C1 controls in name are removed, never encoded', () => {
  const name = 'A\u0000\r\n\u007f\u0085\u009fB';
  assert.equal(render({ name })['x-cert-subject'], 'CN=AB, O=Acme');
  assert.equal(render({ name }, 'app', 'rfc2047')['x-cert-subject'], 'CN=AB, O=Acme');
  assert.equal(render({ name }, 'grafana')['x-webauth-name'], 'AB');
  assert.equal(render({ name: '\u0000\r\n' })['x-cert-subject'], undefined, 'nothing left: no header');
  assert.equal(encodeHeaderValue('x\r\ny\u0085', 'percent'), 'xy');
});

test('a control character between two surrogate halves does not make them a pair', () => {
  assert.equal(render({ sub: 'x\ud83d\u0000\ude00' })['x-forwarded-user'], `x${FFFD}${FFFD}`);
});

test('deeply nested arrays do not overflow the stack', () => {
  let deep: unknown = ['bottom'];
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.equal(headerSafe(deep), '');
  assert.equal(headerSafe([[['a'], 'b']]), 'a,b');
});

test('the truncation marker counts in the budget, and a huge user id is kept whole, alone', () => {
  // Groups dropped whole leave 1012 bytes: under 1024 without the marker's 36, over with it.
  const h = render({ sub: 'u', email: 'e'.repeat(970), groups: ['g'.repeat(2000)] }, 'app', 'percent', 1024);
  assert.equal(h[TRUNCATED], 'true');
  assert.ok(size(h) <= 1024, `total ${size(h)}`);
  assert.deepEqual(Object.keys(h).sort(), [TRUNCATED, 'x-forwarded-user']);
  const huge = render({ sub: 's'.repeat(100_000), email: 'e@x', groups: ['a', 'b'] }, 'app', 'percent', 1024);
  assert.equal(huge['x-forwarded-user'], 's'.repeat(100_000));
  assert.deepEqual(Object.keys(huge).sort(), [TRUNCATED, 'x-forwarded-user']);
});

test('an access token Node would refuse as a header value is not passed', () => {
  const plan = new IdentityHeaderPlan(routes().map((r) => ({ ...r, passAccessToken: true, passAuthorization: true })));
  const bad: HeaderBag = {};
  plan.inject('app', { claims: { sub: 'u' }, accessToken: 'tok\r\nX-Evil: 1' }, bad);
  assert.equal(bad['x-forwarded-access-token'], undefined);
  assert.equal(bad.authorization, undefined);
  const good: HeaderBag = {};
  plan.inject('app', { claims: { sub: 'u' }, accessToken: 'eyJ.a-b_c.d~+/=' }, good);
  assert.equal(good['x-forwarded-access-token'], 'eyJ.a-b_c.d~+/=');
});

test('templates with control characters or lone surrogates are config errors', () => {
  for (const bad of ['a\tb {sub}', '{sub}\u0085', 'x\ud800{sub}', '\u007f{sub}']) {
    const issues: Issues = [];
    assert.equal(compileHeaderTemplate(bad, 'routes[0].headers.X', issues), undefined, JSON.stringify(bad));
    assert.match(issues[0]?.message ?? '', /control characters/);
  }
});

test('403 and error pages: lone surrogates become U+FFFD, controls go, everything is escaped, size is bounded', () => {
  const page = forbiddenPage({ user: 'a\ud800<b>\u0000"x\'&', route: 'r\u0085', signOutUrl: 'https://a.example/out' });
  assert.ok(page.includes('a\ufffd&lt;b&gt;&quot;x&#39;&amp;'), page);
  assert.ok(page.includes('<strong>r</strong>'));
  assert.ok(isWellFormed(page));
  assert.ok(forbiddenPage({ user: 'x'.repeat(1_000_000), route: 'r', signOutUrl: '/' }).length < 10_000, 'a huge claim is cut');
  const json = renderError({ statusCode: 403, code: 'c', message: 'm\udbff' }, false, 'id');
  assert.equal((JSON.parse(json.body) as { message: string }).message, 'm\ufffd');
  const html = renderError({ statusCode: 502, code: 'c\u0000', message: '<script>\ud800' }, true, 'r"id').body;
  assert.ok(html.includes('<p>&lt;script&gt;\ufffd</p>') && html.includes('<code>c</code>') && html.includes('r&quot;id'), html);
});
