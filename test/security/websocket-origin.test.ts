// Issue 13 item 10, second half: cross-site WebSocket hijacking. A browser opens a WebSocket from
// any page, sends the target's cookies with it, and no CORS check applies — so a page on a sibling
// host that the session cookie reaches could talk to the app as the signed-in user. Upgrades with
// an `Origin` that is not this site's (the request's own, publicUrl's, or `websocketOrigins`) are
// refused with 403 before anything reaches the upstream; clients without `Origin` are not browsers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { validateConfigObject } from '../../src/config/index.js';
import { upgradeOriginAllowed } from '../../src/door/upgrade.js';
import { ALICE } from './support.js';

type Result = { status: number; body: string } | { open: true; first: string };

async function open(url: string, headers: Record<string, string>, origin?: string): Promise<Result> {
  const ws = new WebSocket(url, { headers, ...(origin !== undefined ? { origin } : {}) });
  return new Promise<Result>((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('message', (m) => { resolve({ open: true, first: String(m) }); ws.close(); });
    ws.once('error', (e) => { if (!String(e.message).startsWith('Unexpected server response')) reject(e); });
  });
}

test('a WebSocket opened by a page of another origin riding the user\'s cookie is refused (403), and nothing reaches the upstream', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const wsUrl = `${s.url.replace('http', 'ws')}/live`;
  const cookie = { cookie: jar.header(s.url) };
  const port = new URL(s.url).port;
  const before = s.upstream.requests.length;
  for (const origin of ['https://evil.example.com', `http://sibling.127.0.0.1.nip.io:${port}`, `http://localhost:${port}`, `https://127.0.0.1:${port}`, `http://127.0.0.1:${Number(port) + 1}`, 'null']) {
    const r = await open(wsUrl, cookie, origin);
    assert.ok('status' in r, `${origin}: refused`);
    assert.equal(r.status, 403, origin);
    assert.equal((JSON.parse(r.body) as { error: string }).error, 'ERR_UPGRADE_CROSS_ORIGIN', origin);
  }
  // Refused before the session or the route are looked at: the same for anonymous sockets.
  const anon = await open(wsUrl, {}, 'https://evil.example.com');
  assert.ok('status' in anon && anon.status === 403);
  assert.equal(s.upstream.requests.length, before, 'no refused upgrade reached the upstream');
  assert.ok(s.logs.some((l) => l.includes('ERR_UPGRADE_CROSS_ORIGIN') && l.includes('evil.example.com')), 'the refusal is logged (debug) with the origin');

  // The site's own pages, and non-browser clients (no Origin), are served.
  for (const origin of [s.url, s.url.toUpperCase().replace('HTTP://', 'http://'), undefined]) {
    const r = await open(wsUrl, cookie, origin);
    assert.ok('open' in r, `origin ${origin ?? '(none)'} is accepted`);
    assert.equal((JSON.parse(r.first) as { headers: Record<string, string> }).headers['x-forwarded-user'], 'alice');
  }
});

test('websocketOrigins lists other origins whose pages may open WebSockets; the request\'s own origin is same-origin too', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.websocketOrigins = ['https://app.example.com', 'http://tools.example.com:8443/']; } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const wsUrl = `${s.url.replace('http', 'ws')}/live`;
  const cookie = { cookie: jar.header(s.url) };
  assert.deepEqual(s.config.websocketOrigins, ['https://app.example.com', 'http://tools.example.com:8443'], 'normalised');
  for (const origin of ['https://app.example.com', 'https://APP.example.com:443', 'http://tools.example.com:8443']) {
    assert.ok('open' in await open(wsUrl, cookie, origin), origin);
  }
  for (const origin of ['http://app.example.com', 'https://x.app.example.com', 'http://tools.example.com']) {
    const r = await open(wsUrl, cookie, origin);
    assert.ok('status' in r && r.status === 403, origin);
  }
  // Addressed as localhost (another host name of the same listener): a page of that origin is same-origin.
  const port = new URL(s.url).port;
  const r = await open(wsUrl, { ...cookie, host: `localhost:${port}` }, `http://localhost:${port}`);
  assert.ok('open' in r, 'the origin the request was addressed to');
});

test('upgradeOriginAllowed: exact origins, default ports, no wildcards, null and junk refused', () => {
  const pub = 'https://apps.example.com';
  const allowed = new Set(['https://app.example.com']);
  const ok = (origin: string | string[] | undefined, req = pub) => upgradeOriginAllowed(origin, req, pub, allowed);
  assert.equal(ok(undefined), true, 'no Origin: not a browser');
  assert.equal(ok('https://apps.example.com'), true);
  assert.equal(ok('https://apps.example.com:443'), true, 'default port');
  assert.equal(ok('HTTPS://APPS.EXAMPLE.COM'), true, 'case');
  assert.equal(ok('https://app.example.com'), true, 'listed');
  assert.equal(ok('https://team.example.com', 'https://team.example.com'), true, 'the host the request was addressed to');
  assert.equal(ok('http://apps.example.com'), false, 'another scheme is another origin');
  assert.equal(ok('https://apps.example.com:8443'), false, 'another port');
  assert.equal(ok('https://evil.apps.example.com'), false, 'a subdomain is another origin');
  assert.equal(ok('https://apps.example.com.evil.net'), false);
  assert.equal(ok('null'), false, 'opaque origins (sandboxed frames, file:)');
  assert.equal(ok('chrome-extension://abcdef'), false);
  assert.equal(ok('not a url'), false);
  assert.equal(ok(''), false);
  assert.equal(ok(['https://apps.example.com', 'https://evil.example.com']), false, 'several Origin headers');
});

test('websocketOrigins must be a list of origins (no path, no wildcard)', () => {
  const base = (websocketOrigins: unknown) => ({
    publicUrl: 'https://apps.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    session: { secrets: ['0123456789abcdef0123456789abcdef'] },
    routes: [{ name: 'app', match: { path: '/' }, upstream: 'http://app:8080', websocket: true }],
    websocketOrigins,
  });
  const good = validateConfigObject(base(undefined), {});
  assert.ok(good.ok);
  assert.deepEqual(good.config.websocketOrigins, [], 'default: none besides the site itself');
  const bad = validateConfigObject(base(['https://app.example.com/path', '*.example.com', 'https://*.example.com', 'ftp://x.example.com', 'app.example.com', 'https://u:p@x.example.com', 'https://x.example.com?q']), {});
  assert.ok(!bad.ok);
  assert.deepEqual(bad.issues.map((i) => i.path), [0, 1, 2, 3, 4, 5, 6].map((i) => `websocketOrigins[${i}]`));
  assert.ok(!validateConfigObject(base('https://app.example.com'), {}).ok, 'a list, not a string');
});

