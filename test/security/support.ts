// Shared by the security tests: requests with the exact bytes an attacker would send (no client-side
// path normalisation), a raw-socket request for request targets no HTTP client will produce, and the
// demo users.
import { connect } from 'node:net';
import { Client } from 'undici';

export const ALICE = { user: 'alice', password: 'alice-password' };
export const BOB = { user: 'bob', password: 'bob-password' };

/** What a top-level browser navigation sends. */
export const NAVIGATION = { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate' } as const;
/** What an API client sends. */
export const API = { accept: 'application/json' } as const;

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One request with `path` sent byte for byte (undici.request(url) and fetch would resolve dot
 * segments first). Headers may be given as a flat [name, value, name, value…] list to keep
 * duplicates and exact spelling.
 */
export async function rawRequest(
  origin: string,
  opts: { path: string; method?: string; headers?: Record<string, string> | string[]; body?: string },
): Promise<RawResponse> {
  const client = new Client(origin);
  try {
    const res = await client.request({
      path: opts.path,
      method: (opts.method ?? 'GET') as 'GET',
      headers: opts.headers,
      body: opts.body,
    });
    const body = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body };
  } finally {
    await client.close();
  }
}

/** Writes `text` to a fresh connection and returns everything the server sent until it closed (or `ms` passed). */
export function rawSocket(port: number, text: string, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('connect', () => socket.write(text));
    socket.on('data', (c) => {
      chunks.push(c);
      // One complete response is enough: stop once the declared body has arrived.
      const s = Buffer.concat(chunks).toString('latin1');
      const end = s.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(s);
      if (end !== -1 && len && s.length >= end + 4 + Number(len[1])) socket.destroy();
    });
    socket.on('error', (e) => { clearTimeout(timer); reject(e); });
    socket.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
  });
}

/** Status code of a raw HTTP/1.1 response text (0 when there was none). */
export function statusOf(raw: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

/** Set-Cookie header lines of a response, always as a list. */
export function setCookies(headers: Record<string, string | string[] | undefined>): string[] {
  const v = headers['set-cookie'];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** The names of cookies a response sets with a non-empty value (i.e. not expiring them). */
export function issuedCookieNames(headers: Record<string, string | string[] | undefined>): string[] {
  return setCookies(headers)
    .filter((l) => !/;\s*max-age=0/i.test(l) && !/^[^=]+=;/.test(l))
    .map((l) => l.slice(0, l.indexOf('=')));
}
