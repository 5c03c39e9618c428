// Policy tables: a rule in inline YAML, some claims, the expected decision and reason.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { compileRule, type CompiledRule } from '../../src/policy/rules.js';
import { authorize, type ReasonId } from '../../src/policy/decide.js';
import type { Issues } from '../../src/config/issues.js';

function compile(yamlText: string): CompiledRule {
  const issues: Issues = [];
  const rule = compileRule(parse(yamlText), 'allow', issues);
  assert.deepEqual(issues, [], `unexpected issues for ${yamlText}`);
  assert.ok(rule);
  return rule;
}

interface Case {
  name: string;
  rule: string;
  claims: Record<string, unknown> | undefined;
  allowed: boolean;
  reason: ReasonId;
}

const STAFF_NOT_CONTRACTOR = `
all:
  - { claim: groups, contains: staff }
  - not: { claim: groups, contains: contractor }
`;

const ADMIN_OR_STAFF = `
any:
  - { claim: groups, contains: admin }
  - all:
      - { claim: email, endsWith: "@example.com" }
      - { claim: email_verified, equals: true }
`;

const cases: Case[] = [
  // --- combinators ---
  { name: 'any: admin group passes', rule: ADMIN_OR_STAFF, claims: { groups: ['dev', 'admin'] }, allowed: true, reason: 'claim-authorized' },
  {
    name: 'any/all: verified staff email passes',
    rule: ADMIN_OR_STAFF,
    claims: { email: 'bob@example.com', email_verified: true },
    allowed: true,
    reason: 'claim-authorized',
  },
  {
    name: 'all: unverified staff email fails',
    rule: ADMIN_OR_STAFF,
    claims: { email: 'bob@example.com', email_verified: false },
    allowed: false,
    reason: 'claim-unauthorized',
  },
  {
    name: 'equals true is not "true"',
    rule: ADMIN_OR_STAFF,
    claims: { email: 'bob@example.com', email_verified: 'true' },
    allowed: false,
    reason: 'claim-unauthorized',
  },
  {
    name: 'nested not inside all',
    rule: STAFF_NOT_CONTRACTOR,
    claims: { groups: ['staff'] },
    allowed: true,
    reason: 'claim-authorized',
  },
  {
    name: 'nested not inside all denies the excluded group',
    rule: STAFF_NOT_CONTRACTOR,
    claims: { groups: ['staff', 'contractor'] },
    allowed: false,
    reason: 'claim-unauthorized',
  },
  {
    name: 'not of a missing claim passes (not only negates)',
    rule: `not: { claim: banned, equals: true }`,
    claims: { sub: 'u1' },
    allowed: true,
    reason: 'claim-authorized',
  },
  {
    name: 'not exists: requires absence — present fails',
    rule: `not: { claim: impersonator, exists: true }`,
    claims: { impersonator: 'root' },
    allowed: false,
    reason: 'claim-unauthorized',
  },
  {
    name: 'not not',
    rule: `not: { not: { claim: groups, contains: admin } }`,
    claims: { groups: ['admin'] },
    allowed: true,
    reason: 'claim-authorized',
  },

  // --- paths ---
  {
    name: 'dotted path realm_access.roles contains',
    rule: `{ claim: realm_access.roles, contains: grafana-admin }`,
    claims: { realm_access: { roles: ['offline_access', 'grafana-admin'] } },
    allowed: true,
    reason: 'claim-authorized',
  },
  {
    name: 'dotted path does not treat a dotted key as nested',
    rule: `{ claim: realm_access.roles, contains: grafana-admin }`,
    claims: { 'realm_access.roles': ['grafana-admin'] },
    allowed: false,
    reason: 'claim-unauthorized',
  },
  {
    name: 'URL key via list path',
    rule: `{ claim: ["https://example.com/claims", roles], contains: admin }`,
    claims: { 'https://example.com/claims': { roles: ['admin'] } },
    allowed: true,
    reason: 'claim-authorized',
  },
  {
    name: 'list path with a dotted key is literal',
    rule: `{ claim: ["https://example.com/roles"], contains: admin }`,
    claims: { 'https://example.com/roles': ['admin'] },
    allowed: true,
    reason: 'claim-authorized',
  },
  {
    name: 'path does not walk into arrays',
    rule: `{ claim: groups.0, equals: admin }`,
    claims: { groups: ['admin'] },
    allowed: false,
    reason: 'claim-unauthorized',
  },
  {
    name: 'path through a scalar is missing',
    rule: `{ claim: email.length, equals: 15 }`,
    claims: { email: 'bob@example.com' },
    allowed: false,
    reason: 'claim-unauthorized',
  },

  // --- contains is array-only ---
  { name: 'string "superadmin" does not contain admin', rule: `{ claim: groups, contains: admin }`, claims: { groups: 'superadmin' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'string "admin" does not contain admin', rule: `{ claim: groups, contains: admin }`, claims: { groups: 'admin' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'array holding "superadmin" does not contain admin', rule: `{ claim: groups, contains: admin }`, claims: { groups: ['superadmin'] }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'contains is type-strict', rule: `{ claim: levels, contains: 3 }`, claims: { levels: ['3'] }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'object with matching key is not an array', rule: `{ claim: groups, contains: admin }`, claims: { groups: { admin: true } }, allowed: false, reason: 'claim-unauthorized' },

  // --- missing claims ---
  { name: 'missing claim denies', rule: `{ claim: groups, contains: admin }`, claims: {}, allowed: false, reason: 'claim-unauthorized' },
  { name: 'missing nested claim denies', rule: `{ claim: realm_access.roles, contains: admin }`, claims: { realm_access: {} }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'null claim never equals', rule: `{ claim: tier, equals: gold }`, claims: { tier: null }, allowed: false, reason: 'claim-unauthorized' },

  // --- equals ---
  { name: 'equals true vs true', rule: `{ claim: email_verified, equals: true }`, claims: { email_verified: true }, allowed: true, reason: 'claim-authorized' },
  { name: 'equals true vs "true"', rule: `{ claim: email_verified, equals: true }`, claims: { email_verified: 'true' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'equals "true" vs true', rule: `{ claim: email_verified, equals: "true" }`, claims: { email_verified: true }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'equals 1 vs "1"', rule: `{ claim: level, equals: 1 }`, claims: { level: '1' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'array never equals scalar', rule: `{ claim: groups, equals: admin }`, claims: { groups: ['admin'] }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'equals is case-sensitive', rule: `{ claim: role, equals: admin }`, claims: { role: 'Admin' }, allowed: false, reason: 'claim-unauthorized' },

  // --- in ---
  { name: 'in: listed value', rule: `{ claim: tenant, in: [acme, globex] }`, claims: { tenant: 'globex' }, allowed: true, reason: 'claim-authorized' },
  { name: 'in: unlisted value', rule: `{ claim: tenant, in: [acme, globex] }`, claims: { tenant: 'initech' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'in: type-strict number vs string', rule: `{ claim: level, in: [1, 2] }`, claims: { level: '1' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'in: type-strict string vs number', rule: `{ claim: level, in: ["1", "2"] }`, claims: { level: 1 }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'in: boolean', rule: `{ claim: mfa, in: [true] }`, claims: { mfa: true }, allowed: true, reason: 'claim-authorized' },
  { name: 'in: array claim is not a scalar', rule: `{ claim: tenant, in: [acme] }`, claims: { tenant: ['acme'] }, allowed: false, reason: 'claim-unauthorized' },

  // --- startsWith / endsWith ---
  { name: 'endsWith domain', rule: `{ claim: email, endsWith: "@example.com" }`, claims: { email: 'alice@example.com' }, allowed: true, reason: 'claim-authorized' },
  { name: 'endsWith: double @ is not our domain', rule: `{ claim: email, endsWith: "@example.com" }`, claims: { email: 'a@evil.com@example.com' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'endsWith: lookalike domain', rule: `{ claim: email, endsWith: "@example.com" }`, claims: { email: 'a@notexample.com' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'endsWith: array claim', rule: `{ claim: email, endsWith: "@example.com" }`, claims: { email: ['a@example.com'] }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'endsWith without @ in value ignores @ count', rule: `{ claim: host, endsWith: ".example.com" }`, claims: { host: 'a.example.com' }, allowed: true, reason: 'claim-authorized' },
  { name: 'startsWith', rule: `{ claim: sub, startsWith: "svc-" }`, claims: { sub: 'svc-backup' }, allowed: true, reason: 'claim-authorized' },
  { name: 'startsWith on number', rule: `{ claim: sub, startsWith: "1" }`, claims: { sub: 123 }, allowed: false, reason: 'claim-unauthorized' },

  // --- matches: whole-string ---
  { name: 'matches whole string', rule: `{ claim: role, matches: "adm.*" }`, claims: { role: 'admin' }, allowed: true, reason: 'claim-authorized' },
  { name: 'matches is anchored at start', rule: `{ claim: role, matches: "adm.*" }`, claims: { role: 'superadmin' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'matches is anchored at end', rule: `{ claim: role, matches: "admin" }`, claims: { role: 'admin-readonly' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'matches alternation is anchored as a whole', rule: `{ claim: role, matches: "admin|ops" }`, claims: { role: 'devops' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'matches alternation second branch', rule: `{ claim: role, matches: "admin|ops" }`, claims: { role: 'ops' }, allowed: true, reason: 'claim-authorized' },
  { name: 'matches with explicit anchors still fine', rule: `{ claim: role, matches: "^adm" }`, claims: { role: 'admin' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'matches unicode', rule: `{ claim: name, matches: "\\\\p{Lu}\\\\p{Ll}+" }`, claims: { name: 'Élise' }, allowed: true, reason: 'claim-authorized' },
  { name: 'matches: array claim', rule: `{ claim: role, matches: "adm.*" }`, claims: { role: ['admin'] }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'matches: over-long claim never matches', rule: `{ claim: role, matches: "a+" }`, claims: { role: 'a'.repeat(4097) }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'matches: 4096 chars still tested', rule: `{ claim: role, matches: "a+" }`, claims: { role: 'a'.repeat(4096) }, allowed: true, reason: 'claim-authorized' },

  // --- exists ---
  { name: 'exists true: present', rule: `{ claim: email, exists: true }`, claims: { email: 'x' }, allowed: true, reason: 'claim-authorized' },
  { name: 'exists true: present but false', rule: `{ claim: mfa, exists: true }`, claims: { mfa: false }, allowed: true, reason: 'claim-authorized' },
  { name: 'exists true: null', rule: `{ claim: email, exists: true }`, claims: { email: null }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'exists true: absent', rule: `{ claim: email, exists: true }`, claims: {}, allowed: false, reason: 'claim-unauthorized' },
  { name: 'exists false: absent', rule: `{ claim: act, exists: false }`, claims: {}, allowed: true, reason: 'claim-authorized' },
  { name: 'exists false: present', rule: `{ claim: act, exists: false }`, claims: { act: { sub: 'x' } }, allowed: false, reason: 'claim-unauthorized' },

  // --- prototype paths never match ---
  { name: '__proto__.x on plain claims', rule: `{ claim: __proto__.x, exists: true }`, claims: { sub: 'u' }, allowed: false, reason: 'claim-unauthorized' },
  {
    name: '__proto__.x even as an own JSON key',
    rule: `{ claim: __proto__.x, equals: y }`,
    claims: JSON.parse('{"__proto__": {"x": "y"}}') as Record<string, unknown>,
    allowed: false,
    reason: 'claim-unauthorized',
  },
  { name: 'constructor exists', rule: `{ claim: constructor, exists: true }`, claims: { sub: 'u' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'constructor.name', rule: `{ claim: constructor.name, equals: Object }`, claims: { sub: 'u' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'toString is inherited, not a claim', rule: `{ claim: toString, exists: true }`, claims: { sub: 'u' }, allowed: false, reason: 'claim-unauthorized' },
  { name: 'hasOwnProperty is inherited, not a claim', rule: `{ claim: groups.hasOwnProperty, exists: true }`, claims: { groups: {} }, allowed: false, reason: 'claim-unauthorized' },
  {
    name: 'list path ["__proto__"]',
    rule: `{ claim: ["__proto__", "isAdmin"], equals: true }`,
    claims: JSON.parse('{"__proto__": {"isAdmin": true}}') as Record<string, unknown>,
    allowed: false,
    reason: 'claim-unauthorized',
  },
  { name: 'exists false on constructor passes (it is never a claim)', rule: `{ claim: constructor, exists: false }`, claims: {}, allowed: true, reason: 'claim-authorized' },
];

describe('claim rules via authorize()', () => {
  for (const c of cases) {
    test(c.name, () => {
      const allow = compile(c.rule);
      const d = authorize({ auth: 'required', allow }, c.claims);
      assert.equal(d.allowed, c.allowed);
      assert.deepEqual(d.reasons, [c.reason]);
    });
  }
});

describe('authorize() without rules', () => {
  const rule = compile(`{ claim: groups, contains: admin }`);
  const table: Array<[string, Parameters<typeof authorize>[0], Record<string, unknown> | undefined, boolean, ReasonId]> = [
    ['public, anonymous', { auth: 'public' }, undefined, true, 'public-route'],
    ['public, signed in', { auth: 'public', allow: rule }, { groups: [] }, true, 'public-route'],
    ['required, anonymous', { auth: 'required' }, undefined, false, 'user-unauthenticated'],
    ['required with rule, anonymous', { auth: 'required', allow: rule }, undefined, false, 'user-unauthenticated'],
    ['required, any signed-in user', { auth: 'required' }, {}, true, 'any-authenticated-user'],
  ];
  for (const [name, route, claims, allowed, reason] of table) {
    test(name, () => {
      const d = authorize(route, claims);
      assert.equal(d.allowed, allowed);
      assert.deepEqual(d.reasons, [reason]);
    });
  }

  test('decisions are shared frozen values', () => {
    const a = authorize({ auth: 'required', allow: rule }, { groups: ['admin'] });
    const b = authorize({ auth: 'required', allow: rule }, { groups: ['admin'] });
    assert.equal(a, b);
    assert.ok(Object.isFrozen(a));
    assert.ok(Object.isFrozen(a.reasons));
  });
});

describe('bad rules are config issues', () => {
  function issuesOf(yamlText: string): Issues {
    const issues: Issues = [];
    const rule = compileRule(parse(yamlText), 'routes[2].allow', issues);
    assert.equal(rule, undefined, 'a rule with issues must not compile');
    assert.ok(issues.length > 0);
    return issues;
  }

  const bad: Array<[string, string, Array<[string, RegExp]>]> = [
    ['unknown operator with suggestion', `{ claim: groups, contain: admin }`, [['routes[2].allow.contain', /^unknown operator "contain" — did you mean "contains"\?$/]]],
    ['unknown combinator key', `{ alll: [{ claim: a, exists: true }] }`, [['routes[2].allow.alll', /unknown key "alll" — did you mean "all"\?/]]],
    ['two operators', `{ claim: role, equals: admin, in: [a] }`, [['routes[2].allow', /one operator per claim test, found "equals" and "in"/]]],
    ['no operator', `{ claim: role }`, [['routes[2].allow', /missing operator/]]],
    ['missing claim', `{ equals: admin }`, [['routes[2].allow', /missing "claim"/]]],
    ['empty any', `{ any: [] }`, [['routes[2].allow.any', /empty any list/]]],
    ['empty all', `{ all: [] }`, [['routes[2].allow.all', /empty all list/]]],
    ['all not a list', `{ all: { claim: a, exists: true } }`, [['routes[2].allow.all', /all takes a list/]]],
    ['empty string value', `{ claim: email, endsWith: "" }`, [['routes[2].allow.endsWith', /empty value/]]],
    ['empty equals', `{ claim: email, equals: "" }`, [['routes[2].allow.equals', /empty value/]]],
    ['empty in list', `{ claim: tenant, in: [] }`, [['routes[2].allow.in', /empty list/]]],
    ['in with a non-scalar', `{ claim: tenant, in: [acme, [x]] }`, [['routes[2].allow.in[1]', /string, number or boolean/]]],
    ['in with empty string', `{ claim: tenant, in: [acme, ""] }`, [['routes[2].allow.in[1]', /empty value/]]],
    ['in not a list', `{ claim: tenant, in: acme }`, [['routes[2].allow.in', /non-empty list/]]],
    ['equals a list', `{ claim: g, equals: [a] }`, [['routes[2].allow.equals', /string, number or boolean/]]],
    ['equals null', `{ claim: g, equals: null }`, [['routes[2].allow.equals', /string, number or boolean/]]],
    ['contains an object', `{ claim: g, contains: { a: 1 } }`, [['routes[2].allow.contains', /string, number or boolean/]]],
    ['startsWith a number', `{ claim: g, startsWith: 5 }`, [['routes[2].allow.startsWith', /takes a string/]]],
    ['catastrophic regex', `{ claim: g, matches: "(a+)+$" }`, [['routes[2].allow.matches', /backtrack catastrophically/]]],
    ['invalid regex', `{ claim: g, matches: "a(b" }`, [['routes[2].allow.matches', /invalid regular expression/]]],
    ['regex that only parses once wrapped', `{ claim: g, matches: "a)|(b" }`, [['routes[2].allow.matches', /invalid regular expression/]]],
    ['matches a number', `{ claim: g, matches: 5 }`, [['routes[2].allow.matches', /takes a string/]]],
    ['exists non-boolean', `{ claim: g, exists: "yes" }`, [['routes[2].allow.exists', /exists takes true or false/]]],
    ['empty claim', `{ claim: "", exists: true }`, [['routes[2].allow.claim', /empty claim/]]],
    ['claim with empty segment', `{ claim: "a..b", exists: true }`, [['routes[2].allow.claim', /empty segment/]]],
    ['claim list with empty key', `{ claim: [a, ""], exists: true }`, [['routes[2].allow.claim[1]', /non-empty string/]]],
    ['claim a number', `{ claim: 5, exists: true }`, [['routes[2].allow.claim', /dotted path/]]],
    ['combinator and leaf mixed', `{ any: [{ claim: a, exists: true }], claim: b, exists: true }`, [['routes[2].allow', /exactly one of/]]],
    ['two combinators', `{ any: [{ claim: a, exists: true }], all: [{ claim: b, exists: true }] }`, [['routes[2].allow', /exactly one of/]]],
    ['empty rule', `{}`, [['routes[2].allow', /empty rule/]]],
    ['rule is a string', `admin`, [['routes[2].allow', /must be a mapping/]]],
    ['rule is a list', `[{ claim: a, exists: true }]`, [['routes[2].allow', /must be a mapping/]]],
    ['not of nothing', `{ not: null }`, [['routes[2].allow.not', /must be a mapping/]]],
  ];
  for (const [name, yamlText, expected] of bad) {
    test(name, () => {
      const issues = issuesOf(yamlText);
      for (const [p, re] of expected) {
        assert.ok(
          issues.some((i) => i.path === p && re.test(i.message)),
          `expected ${p} ${re} in ${JSON.stringify(issues, null, 1)}`,
        );
      }
    });
  }

  test('every problem in one rule is reported at once, each with its path', () => {
    const issues = issuesOf(`
any:
  - { claim: groups, contain: admin }
  - { claim: role, equals: admin, in: [a] }
  - any: []
  - { claim: email, endsWith: "" }
  - { claim: name, matches: "(a+)+$" }
  - { claim: name, matches: "[" }
  - { claim: verified, exists: "yes" }
  - { alll: [] }
  - all:
      - not: { claim: x, startsWith: "" }
`);
    const got = issues.map((i) => `${i.path}: ${i.message}`);
    const expected: Array<[string, RegExp]> = [
      ['routes[2].allow.any[0].contain', /unknown operator "contain" — did you mean "contains"\?/],
      ['routes[2].allow.any[1]', /found "equals" and "in"/],
      ['routes[2].allow.any[2].any', /empty any list/],
      ['routes[2].allow.any[3].endsWith', /empty value/],
      ['routes[2].allow.any[4].matches', /backtrack catastrophically/],
      ['routes[2].allow.any[5].matches', /invalid regular expression/],
      ['routes[2].allow.any[6].exists', /true or false/],
      ['routes[2].allow.any[7].alll', /unknown key "alll" — did you mean "all"\?/],
      ['routes[2].allow.any[8].all[0].not.startsWith', /empty value/],
    ];
    for (const [p, re] of expected) {
      assert.ok(issues.some((i) => i.path === p && re.test(i.message)), `missing ${p} ${re} in\n${got.join('\n')}`);
    }
    assert.equal(issues.length, expected.length, got.join('\n'));
  });

  test('an unknown operator is not also reported as a missing operator', () => {
    const issues = issuesOf(`{ claim: groups, contain: admin }`);
    assert.equal(issues.length, 1);
  });

  test('a YAML alias cycle is an issue, not a stack overflow', () => {
    const issues: Issues = [];
    const raw = parse(`&r { not: *r }`);
    assert.equal(compileRule(raw, 'allow', issues), undefined);
    assert.ok(issues.some((i) => /nested more than/.test(i.message)));
  });

  test('issues from one rule do not affect another', () => {
    const issues: Issues = [{ path: 'earlier', message: 'from another key' }];
    const rule = compileRule(parse(`{ claim: a, exists: true }`), 'allow', issues);
    assert.ok(rule);
    assert.equal(issues.length, 1);
  });
});
