// Which peers may speak for the original request (X-Forwarded-*, forward-auth): a table that tries
// to get an untrusted address through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePeerTrust, isAddressOrCidr } from '../../src/routing/trust.js';

test('trustProxy: false trusts nobody, true everybody, a list only its members', () => {
  assert.equal(compilePeerTrust(false)('127.0.0.1'), false);
  assert.equal(compilePeerTrust([])('127.0.0.1'), false, 'an empty list trusts nobody');
  assert.equal(compilePeerTrust(true)('203.0.113.9'), true);
  const trusted = compilePeerTrust(['10.0.0.0/8', '192.168.1.5', 'fd00::/8']);
  const table: Array<[string | undefined, boolean]> = [
    ['10.1.2.3', true],
    ['::ffff:10.1.2.3', true], // IPv4-mapped, as Node reports dual-stack sockets
    ['11.0.0.1', false],
    ['192.168.1.5', true],
    ['192.168.1.6', false],
    ['fd12::1', true],
    ['fe80::1', false],
    ['::ffff:192.168.1.6', false],
    [undefined, false], // a destroyed socket has no address
    ['not-an-ip', false],
  ];
  for (const [addr, expected] of table) assert.equal(trusted(addr), expected, String(addr));
});

test('config entries must be addresses or CIDRs', () => {
  for (const ok of ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', '0.0.0.0/0']) assert.ok(isAddressOrCidr(ok), ok);
  for (const bad of ['10.0.0.0/33', '::1/129', 'proxy.local', '10.0.0.0/8/1', '10.0.0.0/x', '', '/8']) assert.ok(!isAddressOrCidr(bad), bad);
});
