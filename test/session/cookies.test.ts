// Session cookies: chunking large values under the browser's ~4 KB limit and joining them back,
// expiring chunks a shrinking session leaves behind, and stripping our cookies from the upstream's view.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import fastifyCookie from '@fastify/cookie';
import {
  CHUNK_BYTES, MAX_CHUNKS, cookieSettings, expireChunked, makeCookieStripper, readChunked, writeChunked,
} from '../../src/session/cookies.js';

const settings = cookieSettings('https://apps.example.com', 'portcullis', undefined);
const NAME = settings.session;

/** A sealed-looking value of exactly n characters (base64url, like the codec's output). */
function valueOf(n: number): string {
  return randomBytes(Math.ceil((n * 3) / 4) + 3).toString('base64url').slice(0, n);
}

/** What a browser keeps after applying Set-Cookie headers to a jar. */
function apply(jar: Record<string, string>, setCookies: string[]): Record<string, string> {
  const next = { ...jar };
  for (const header of setCookies) {
    const [pair, ...attrs] = header.split(';');
    const eq = pair!.indexOf('=');
    const name = pair!.slice(0, eq);
    const value = decodeURIComponent(pair!.slice(eq + 1));
    if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))) delete next[name];
    else next[name] = value;
  }
  return next;
}

const names = (setCookies: string[]) => setCookies.map((h) => h.slice(0, h.indexOf('=')));
const expired = (setCookies: string[]) => setCookies.filter((h) => /;\s*Max-Age=0/i.test(h)).map((h) => h.slice(0, h.indexOf('=')));

// Runs first, before anything below registers @fastify/cookie in this process.
test('serializes without a Fastify app having registered @fastify/cookie first', () => {
  assert.doesNotThrow(() => writeChunked(settings, {}, NAME, 'v1.abc', 60));
});

// @fastify/cookie loads its `cookie` dependency only when registered; until then its serialize()
// throws. Production always registers it first (app.ts); the tests below do the same.
describe('with @fastify/cookie loaded', () => {
  before(async () => {
    const app = Fastify();
    await app.register(fastifyCookie);
    await app.ready();
    await app.close();
  });

  describe('settings', () => {
    test('__Host- on https without a domain, __Secure- with one, no prefix on http', () => {
      assert.equal(cookieSettings('https://a.example.com', 'portcullis', undefined).session, '__Host-portcullis');
      assert.equal(cookieSettings('https://a.example.com', 'portcullis', '.example.com').session, '__Secure-portcullis');
      assert.equal(cookieSettings('http://localhost:8080', 'portcullis', undefined).session, 'portcullis');
    });

    test('attributes: Path=/, HttpOnly, SameSite=Lax, Secure on https', () => {
      const [header] = writeChunked(settings, {}, NAME, 'v1.abc', 60);
      assert.match(header!, /^__Host-portcullis=v1\.abc; Max-Age=60; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
    });
  });

  describe('chunking', () => {
    for (const size of [1, 3799, CHUNK_BYTES, 3801, 7600, 7601, 20_000, CHUNK_BYTES * MAX_CHUNKS]) {
      test(`${size} bytes round-trip`, () => {
        const value = valueOf(size);
        const headers = writeChunked(settings, {}, NAME, value, 3600);
        const expectedChunks = size <= CHUNK_BYTES ? 0 : Math.ceil(size / CHUNK_BYTES);
        if (expectedChunks === 0) assert.deepEqual(names(headers), [NAME]);
        else assert.deepEqual(names(headers), Array.from({ length: expectedChunks }, (_, i) => `${NAME}_${i}`));
        for (const h of headers) assert.ok(h.length <= 4096 - 100, `Set-Cookie of ${h.length} bytes leaves no room for the browser's limit`);
        assert.equal(readChunked(apply({}, headers), NAME), value);
      });
    }

    test('the whole-value cookie wins over stray chunks', () => {
      assert.equal(readChunked({ [NAME]: 'whole', [`${NAME}_0`]: 'a', [`${NAME}_1`]: 'b' }, NAME), 'whole');
    });

    test('chunks are joined in order and stop at the first gap', () => {
      assert.equal(readChunked({ [`${NAME}_1`]: 'b', [`${NAME}_0`]: 'a', [`${NAME}_2`]: 'c' }, NAME), 'abc');
      assert.equal(readChunked({ [`${NAME}_0`]: 'a', [`${NAME}_2`]: 'c' }, NAME), 'a');
      assert.equal(readChunked({ [`${NAME}_1`]: 'b' }, NAME), undefined);
      assert.equal(readChunked({}, NAME), undefined);
    });

    test(`reading stops after MAX_CHUNKS (${MAX_CHUNKS}) chunks`, () => {
      const jar: Record<string, string> = {};
      for (let i = 0; i < 100; i++) jar[`${NAME}_${i}`] = String.fromCharCode(65 + (i % 26));
      assert.equal(readChunked(jar, NAME), 'ABCDEFGHIJ');
    });

    test(`writing more than MAX_CHUNKS chunks throws`, () => {
      assert.doesNotThrow(() => writeChunked(settings, {}, NAME, valueOf(CHUNK_BYTES * MAX_CHUNKS), 60));
      assert.throws(() => writeChunked(settings, {}, NAME, valueOf(CHUNK_BYTES * MAX_CHUNKS + 1), 60), /too large.*redis/);
    });
  });

  describe('a session changing size expires what it leaves behind', () => {
    test('chunked → single cookie: every old chunk is expired', () => {
      const big = apply({}, writeChunked(settings, {}, NAME, valueOf(20_000), 60));
      assert.equal(Object.keys(big).length, 6);
      const headers = writeChunked(settings, big, NAME, 'v1.small', 60);
      assert.deepEqual(expired(headers), [0, 1, 2, 3, 4, 5].map((i) => `${NAME}_${i}`));
      const after = apply(big, headers);
      assert.deepEqual(Object.keys(after), [NAME]);
      assert.equal(readChunked(after, NAME), 'v1.small');
    });

    test('six chunks → two: chunks 2..5 expired, 0 and 1 rewritten', () => {
      const big = apply({}, writeChunked(settings, {}, NAME, valueOf(20_000), 60));
      const value = valueOf(5000);
      const headers = writeChunked(settings, big, NAME, value, 60);
      assert.deepEqual(expired(headers), [2, 3, 4, 5].map((i) => `${NAME}_${i}`));
      const after = apply(big, headers);
      assert.deepEqual(Object.keys(after).sort(), [`${NAME}_0`, `${NAME}_1`]);
      assert.equal(readChunked(after, NAME), value);
    });

    test('single → chunked: the single cookie is expired (it would win on read)', () => {
      const small = apply({}, writeChunked(settings, {}, NAME, 'v1.small', 60));
      const value = valueOf(9000);
      const headers = writeChunked(settings, small, NAME, value, 60);
      assert.ok(expired(headers).includes(NAME));
      assert.equal(readChunked(apply(small, headers), NAME), value);
    });

    test('nothing is expired that the browser does not hold', () => {
      assert.deepEqual(expired(writeChunked(settings, {}, NAME, valueOf(5000), 60)), []);
      assert.deepEqual(expired(writeChunked(settings, {}, NAME, 'v1.small', 60)), []);
    });

    test('expireChunked removes every form present, and only those', () => {
      const jar = { [NAME]: 'x', [`${NAME}_0`]: 'a', [`${NAME}_3`]: 'd', other: 'keep' };
      assert.deepEqual(expired(expireChunked(settings, jar, NAME)), [NAME, `${NAME}_0`, `${NAME}_3`]);
      assert.deepEqual(expireChunked(settings, { other: 'keep' }, NAME), []);
    });
  });

  describe('stripping our cookies from the upstream request', () => {
    const strip = makeCookieStripper('portcullis');

    test('removes every form of our cookies, any case of the prefix, keeps the rest byte for byte', () => {
      const header = [
        'theme=dark',
        'portcullis=v1.a',
        'portcullis_0=v1.b',
        'grafana_session=ab%20cd==',
        'portcullis_txn_x=v1.c',
        '__Host-portcullis=v1.d',
        '__Secure-portcullis_1=v1.e',
        '__host-portcullis=v1.f',
        '__SECURE-portcullis_txn_y=v1.g',
        'portcullisfoo=keep1',
        'myportcullis=keep2',
        'empty=',
        'q="quoted value"',
      ].join('; ');
      assert.equal(strip(header), 'theme=dark; grafana_session=ab%20cd==; portcullisfoo=keep1; myportcullis=keep2; empty=; q="quoted value"');
    });

    test('tolerates odd spacing and a bare name', () => {
      assert.equal(strip('a=1;portcullis=x;  portcullis_1 =y ;b=2;portcullis'), 'a=1; b=2');
    });

    test('nothing left → undefined (the upstream gets no Cookie header)', () => {
      assert.equal(strip('portcullis=x; __Host-portcullis_0=y'), undefined);
      assert.equal(strip(undefined), undefined);
      assert.equal(strip(''), undefined);
    });

    test('a header without our name is passed through untouched', () => {
      const header = 'a=1;b=2;  c=3';
      assert.equal(strip(header), header);
    });
  });
});

test('stripCookies: listed cookies (exact, or a prefix with *) never reach the upstream; others byte for byte', () => {
  const strip = makeCookieStripper('portcullis', ['GLEWLWYD2_*', 'KEYCLOAK_SESSION']);
  assert.equal(strip('a=1; GLEWLWYD2_SESSION_ID=x; portcullis=y; KEYCLOAK_SESSION=z; b=2'), 'a=1; b=2');
  assert.equal(strip('GLEWLWYD2_OIDC_SID=s'), undefined);
  assert.equal(strip('KEYCLOAK_SESSION_LEGACY=1; keycloak_session=2'), 'KEYCLOAK_SESSION_LEGACY=1; keycloak_session=2', 'exact names are exact (and case-sensitive, as cookie names are)');
  assert.equal(makeCookieStripper('portcullis')('GLEWLWYD2_SESSION_ID=x'), 'GLEWLWYD2_SESSION_ID=x', 'nothing listed: only our own');
});
