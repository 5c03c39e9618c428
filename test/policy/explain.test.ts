// explainRule/formatTrace: the `explain` command shows which leaf decided, without leaking claim values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { compileRule, explainRule, formatTrace, type CompiledRule } from '../../src/policy/rules.js';
import type { Issues } from '../../src/config/issues.js';

function compile(yamlText: string): CompiledRule {
  const issues: Issues = [];
  const rule = compileRule(parse(yamlText), 'allow', issues);
  assert.deepEqual(issues, []);
  return rule!;
}

const RULE = compile(`
any:
  - { claim: groups, contains: admin }
  - all:
      - { claim: email, endsWith: "@example.com" }
      - { claim: email_verified, equals: true }
      - not: { claim: realm_access.roles, contains: suspended }
      - { claim: ["https://example.com/claims", tier], in: [gold, 3] }
      - { claim: role, matches: "dev.*" }
      - { claim: act, exists: false }
`);

test('marks each leaf and combinator as passed or failed', () => {
  const claims = {
    groups: ['dev'],
    email: 'bob@example.com',
    email_verified: true,
    realm_access: { roles: [] },
    'https://example.com/claims': { tier: 'gold' },
    role: 'developer',
  };
  const trace = explainRule(RULE, claims);
  assert.deepEqual(trace, {
    label: 'any',
    passed: true,
    children: [
      { label: 'groups contains "admin"', passed: false },
      {
        label: 'all',
        passed: true,
        children: [
          { label: 'email endsWith "@example.com"', passed: true },
          { label: 'email_verified equals true', passed: true },
          { label: 'not', passed: true, children: [{ label: 'realm_access.roles contains "suspended"', passed: false }] },
          { label: '"https://example.com/claims".tier in ["gold", 3]', passed: true },
          { label: 'role matches /dev.*/', passed: true },
          { label: 'act is absent', passed: true },
        ],
      },
    ],
  });
  assert.equal(trace.passed, RULE.test(claims));
});

test('formatTrace draws an indented tree with ✓ and ✗', () => {
  const trace = explainRule(RULE, { groups: ['admin'], email: 'eve@evil.com' });
  assert.equal(
    formatTrace(trace),
    [
      '✓ any',
      '  ✓ groups contains "admin"',
      '  ✗ all',
      '    ✗ email endsWith "@example.com"',
      '    ✗ email_verified equals true',
      '    ✓ not',
      '      ✗ realm_access.roles contains "suspended"',
      '    ✗ "https://example.com/claims".tier in ["gold", 3]',
      '    ✗ role matches /dev.*/',
      '    ✓ act is absent',
    ].join('\n'),
  );
});

test('labels never contain claim values', () => {
  const secretish = 'zz-very-private-value-zz';
  const trace = explainRule(RULE, { groups: [secretish], email: secretish, role: secretish, act: secretish });
  assert.ok(!formatTrace(trace).includes(secretish));
});

test('the trace agrees with the fast predicate on many claim sets', () => {
  const sets = [
    {},
    { groups: ['admin'] },
    { email: 'a@example.com', email_verified: true, 'https://example.com/claims': { tier: 3 }, role: 'dev' },
    { email: 'a@example.com', email_verified: true, 'https://example.com/claims': { tier: 3 }, role: 'dev', act: {} },
    { email: 'a@example.com', email_verified: true, realm_access: { roles: ['suspended'] }, 'https://example.com/claims': { tier: 'gold' }, role: 'dev' },
  ];
  for (const claims of sets) assert.equal(explainRule(RULE, claims).passed, RULE.test(claims), JSON.stringify(claims));
});

test('exists: true label', () => {
  const r = compile(`{ claim: email, exists: true }`);
  assert.equal(formatTrace(explainRule(r, {})), '✗ email exists');
});
