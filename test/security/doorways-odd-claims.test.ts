// Odd bytes in claims × every doorway: a user whose IdP claims hold lone UTF-16 surrogates (JSON
// "\ud800", which JSON.parse turns back into one), CR/LF (a header-injection attempt), NUL and other
// controls, non-BMP characters and very long values — through a cached session (a), an uncached
// one (b), a refresh (c), a bearer token whose claims (sub included) are as odd (d), a WebSocket
// upgrade (e) and forward-auth (f). Never a 5xx, never an error logged, every identity header the
// upstream (or forward-auth's 202) gets is printable ASCII, nothing injected, and the 403 page
// naming such a user renders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exchange } from '../helpers/raw-http.js';
import { DOORWAYS, doorwayHead, startDoorwayStacks } from './doorway-stacks.js';

const ODD = {
  email: 'od\ud800d@example.com',
  email_verified: true,
  name: 'Odd\r\nX-Injected: yes\u0000\u0007\u0085 \u{1F600} \udfff',
  preferred_username: `odd\u{10FFFF}${'\u00e9'.repeat(3000)}`,
  groups: ['dev', 'evil\r\nX-Injected: yes', '\ud83d', '\u0000', 'g'.repeat(5000)],
};
const ROUTES = [
  { name: 'denied', match: { path: '/denied' }, upstream: '{upstream}', websocket: true, bearer: true, allow: { claim: 'groups', contains: 'nobody-has-this' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true, bearer: true, headers: { 'X-User-Name': '{name}', 'X-Who': '{preferred_username} <{email}>' } },
];
const PRINTABLE = /^[\x20-\x7e]*$/;

test('odd bytes in claims: every doorway serves, renders headers Node accepts, injects nothing and logs no error', { timeout: 90_000 }, async (t) => {
  const st = await startDoorwayStacks(t, { routes: ROUTES, user: { user: 'odd', password: 'odd-password' }, users: { odd: { password: 'odd-password', claims: ODD } }, edit: (raw) => { raw.trustProxy = ['127.0.0.1']; } });
  const token = await st.token({ sub: 'od\ud800d\r\nx', ...ODD });
  for (const [door, name] of DOORWAYS) {
    for (const path of ['/app/x', '/denied/x']) {
      await t.test(`${name}, ${path}`, async () => {
        const s = st.stackOf(door);
        const port = Number(new URL(s.url).port);
        const credential: Array<[string, string]> = door === 'd' ? [['Authorization', `Bearer ${token}`]] : [['Cookie', `portcullis=${st.cookie(door)}`]];
        if (door === 'c') st.beforeC();
        const before = s.upstream.requests.length;
        const logsBefore = s.logs.length;
        // The 403 as a page for a browser (the page names the user), JSON otherwise.
        const accept: Array<[string, string]> = path === '/denied/x' && door !== 'e' ? [['Accept', 'text/html']] : [];
        const reply = await exchange(port, doorwayHead(door, port, path, credential, accept), undefined, false);
        if (door === 'c') assert.ok(st.tookC(reply.headers), 'precondition: refreshed');
        assert.ok(reply.status > 0 && reply.status < 500, `status ${reply.status}: ${reply.body.slice(0, 300)}`);
        if (path === '/denied/x') assert.equal(reply.status, 403, reply.body.slice(0, 300));
        else assert.equal(reply.status, door === 'e' ? 101 : door === 'f' ? 202 : 200, reply.body.slice(0, 300));
        if (reply.status === 403 && door !== 'd' && door !== 'f' && door !== 'e') assert.match(reply.body, /<html/i, 'the 403 page rendered');
        const headers: Array<[string, string]> = door === 'f' ? reply.headers : [];
        const seen = s.upstream.requests.slice(before);
        if (path === '/denied/x' || door === 'f') assert.equal(seen.length, 0);
        else {
          assert.equal(seen.length, 1);
          for (let i = 0; i < seen[0]!.rawHeaders.length; i += 2) headers.push([seen[0]!.rawHeaders[i]!.toLowerCase(), seen[0]!.rawHeaders[i + 1]!]);
        }
        for (const [n, v] of headers) {
          assert.notEqual(n, 'x-injected', 'no header injected');
          if (n.startsWith('x-forwarded-') || n === 'x-user-name' || n === 'x-who') assert.match(v, PRINTABLE, `${n} is printable ASCII: ${JSON.stringify(v.slice(0, 80))}`);
        }
        if (path === '/app/x' && door !== 'f') assert.ok(headers.some(([n]) => n === 'x-forwarded-user'), 'the identity arrived');
        if (path === '/app/x') {
          // The same rendering on every doorway: the lone surrogate as U+FFFD, controls removed (CR/LF too), non-ASCII percent-encoded.
          const get = (n: string) => headers.find(([k]) => k === n)?.[1];
          assert.equal(get('x-forwarded-email'), 'od%EF%BF%BDd@example.com');
          assert.equal(get('x-user-name'), 'OddX-Injected: yes %F0%9F%98%80 %EF%BF%BD');
        }
        const errors = s.logs.slice(logsBefore).filter((l) => /"level":(50|60)/.test(l));
        assert.deepEqual(errors, [], 'no error logged');
      });
    }
  }
});
