// IdP errors reported for what they are (issue 13 item 4): a wrong client secret is "Portcullis
// could not authenticate to the identity provider", not "the sign-in code was refused"; the IdP's
// `error` and `error_description` are logged (never the code or the secret); the page and
// portcullis_logins_total{result} name the reason — client authentication, code, IdP down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const WRONG_SECRET = 'not-the-registered-secret-5f3a9c';

async function loginsMetric(metricsUrl: string): Promise<string> {
  return (await (await request(`${metricsUrl}/metrics`)).body.text()).split('\n').filter((l) => l.startsWith('portcullis_logins_total')).join('\n');
}

for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
  test(`a wrong client secret (${method}) is reported as client authentication, with the IdP's words in the log and never the code or the secret`, async (t) => {
    const s = await startStack(t, { edit: (raw) => { Object.assign(raw.oidc as object, { clientSecret: WRONG_SECRET, tokenEndpointAuthMethod: method }); } });
    const r = await loginViaHttp(`${s.url}/app`, ALICE);
    assert.equal(new URL(r.finalUrl).pathname, '/oauth2/callback');
    assert.equal(r.status, 502, r.body);
    assert.match(r.body, /ERR_CALLBACK_CLIENT_AUTH/);
    assert.match(r.body, /could not authenticate to the identity provider/);
    assert.match(r.body, /oidc\.clientSecret/);
    assert.match(r.body, /tokenEndpointAuthMethod/);
    assert.doesNotMatch(r.body, /sign-in code/, 'not blamed on the code');
    assert.match(r.body, /Sign in again/);
    assert.equal(r.jar.get('portcullis', s.url), undefined, 'no session');

    assert.match(await loginsMetric(s.server.metricsUrl!), /portcullis_logins_total\{result="ERR_CALLBACK_CLIENT_AUTH",provider="default"\} 1/);
    assert.match(await loginsMetric(s.server.metricsUrl!), /portcullis_logins_total\{result="ERR_CALLBACK_CODE_REJECTED",provider="default"\} 0$/m, 'not counted as a refused code');

    const code = new URL(r.finalUrl).searchParams.get('code');
    assert.ok(code, 'the callback carried a code');
    const logs = s.logs.join('\n');
    const line = s.logs.find((l) => l.includes('ERR_CALLBACK_CLIENT_AUTH'));
    assert.ok(line, 'the failure is logged with its code');
    assert.match(line, /invalid_client/, `the IdP's error is logged: ${line}`);
    assert.match(line, /client authentication failed/, `the IdP's error_description is logged: ${line}`);
    assert.ok(!logs.includes(code), 'the authorization code never reaches the log');
    assert.ok(!logs.includes(WRONG_SECRET), 'the configured secret never reaches the log');
    assert.ok(!logs.includes(s.idp.clientSecret), 'nor the registered one');
  });
}

test('a code used twice is still "the sign-in code was refused" (invalid_grant), counted apart from client authentication', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  // Sign in up to the callback, then finish it: the code is redeemed.
  const first = await loginViaHttp(`${s.url}/app`, { ...ALICE, jar, stopAt: (u) => u.pathname === '/oauth2/callback' });
  assert.ok(first.finalUrl.includes('/oauth2/callback'));
  const ok = await followRedirects(first.finalUrl, jar);
  assert.equal(ok.status, 200);
  const code = new URL(first.finalUrl).searchParams.get('code')!;
  // The redeemed code, brought back through a fresh transaction of this browser (a double submit,
  // or an attacker's replay): the IdP refuses it.
  const jar2 = new CookieJar();
  const again = await followRedirects(`${s.url}/app`, jar2, { stopAt: (u) => u.origin === s.idp.issuer });
  const state2 = new URL(again.finalUrl).searchParams.get('state')!;
  assert.ok(state2);
  const replay = await followRedirects(`${s.url}/oauth2/callback?code=${encodeURIComponent(code)}&state=${encodeURIComponent(state2)}&iss=${encodeURIComponent(s.idp.issuer)}`, jar2);
  assert.equal(replay.status, 400, replay.body);
  assert.match(replay.body, /ERR_CALLBACK_CODE_REJECTED/);
  const m = await loginsMetric(s.server.metricsUrl!);
  assert.match(m, /result="ERR_CALLBACK_CODE_REJECTED",provider="default"\} 1/);
  assert.match(m, /portcullis_logins_total\{result="ERR_CALLBACK_CLIENT_AUTH",provider="default"\} 0$/m);
  const line = s.logs.find((l) => l.includes('ERR_CALLBACK_CODE_REJECTED'));
  assert.match(String(line), /invalid_grant/, `the IdP's error is logged: ${line}`);
  assert.ok(!s.logs.join('\n').includes(code), 'the code never reaches the log');
});

test('the IdP unreachable at the callback is "identity provider unavailable" (503), not a refused code or client authentication', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  const first = await loginViaHttp(`${s.url}/app`, { ...ALICE, jar, stopAt: (u) => u.pathname === '/oauth2/callback' });
  assert.ok(first.finalUrl.includes('/oauth2/callback'));
  await s.idp.close();
  const r = await followRedirects(first.finalUrl, jar);
  assert.equal(r.status, 503, r.body);
  assert.match(r.body, /ERR_IDP_UNAVAILABLE/);
  const m = await loginsMetric(s.server.metricsUrl!);
  assert.match(m, /result="ERR_IDP_UNAVAILABLE",provider="default"\} 1/);
  assert.match(m, /portcullis_logins_total\{result="ERR_CALLBACK_CODE_REJECTED",provider="default"\} 0$/m);
  assert.match(m, /portcullis_logins_total\{result="ERR_CALLBACK_CLIENT_AUTH",provider="default"\} 0$/m);
});
