// Test helper: one HTTP/1.1 exchange over a raw socket — the request written byte for byte (exact
// header spelling, duplicates, underscores, Expect), the answer parsed by hand — so no client
// library tidies the request first. Used by the doorway tables (test/security/doorways*.test.ts).
import { connect } from 'node:net';

export interface RawReply {
  status: number;
  /** Interim (1xx but 101) statuses received before the answer. */
  interim: number[];
  headers: Array<[string, string]>;
  body: string;
  note?: string;
}

/**
 * Writes `head` (and `body`) on a fresh connection and parses one answer. With `expectContinue`
 * the body waits for `100 Continue` (at most 1 s, as curl does), and is not sent at all when a
 * final answer comes first. A 101 ends the exchange at its header. `from`: the source address (a
 * loopback alias such as 127.0.0.2 — Linux routes all of 127/8 — to be another peer than 127.0.0.1).
 */
export function exchange(port: number, head: string, body: string | undefined, expectContinue: boolean, ms = 5000, from?: string): Promise<RawReply> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: from });
    let buf = Buffer.alloc(0);
    const interim: number[] = [];
    let bodySent = body === undefined;
    let waitTimer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (r: Omit<RawReply, 'interim'>) => {
      if (done) return;
      done = true;
      clearTimeout(waitTimer);
      clearTimeout(overall);
      socket.destroy();
      resolve({ ...r, interim });
    };
    const sendBody = () => {
      if (bodySent || done) return;
      bodySent = true;
      socket.write(body!);
    };
    const overall = setTimeout(() => finish({ status: 0, headers: [], body: '', note: `no complete answer within ${ms} ms: ${buf.toString('latin1').slice(0, 200)}` }), ms);
    const parse = (closed: boolean) => {
      for (;;) {
        const s = buf.toString('latin1');
        const end = s.indexOf('\r\n\r\n');
        if (end === -1) {
          if (closed) finish({ status: 0, headers: [], body: '', note: `connection closed without an answer${s ? `: ${s.slice(0, 200)}` : ''}` });
          return;
        }
        const lines = s.slice(0, end).split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
        const status = m ? Number(m[1]) : 0;
        const headers = lines.slice(1).map((l): [string, string] => {
          const i = l.indexOf(':');
          return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
        });
        if (status >= 100 && status < 200 && status !== 101) {
          interim.push(status);
          buf = buf.subarray(end + 4);
          if (status === 100) { clearTimeout(waitTimer); sendBody(); }
          continue;
        }
        if (status === 101) return finish({ status, headers, body: '' });
        clearTimeout(waitTimer);
        const rest = buf.subarray(end + 4);
        const get = (n: string) => headers.find(([k]) => k === n)?.[1];
        const cl = get('content-length');
        if (cl !== undefined) {
          if (rest.length >= Number(cl)) finish({ status, headers, body: rest.subarray(0, Number(cl)).toString('utf8') });
          else if (closed) finish({ status, headers, body: rest.toString('utf8'), note: 'body cut short' });
          return;
        }
        if (/chunked/i.test(get('transfer-encoding') ?? '')) {
          const decoded = dechunk(rest);
          if (decoded !== undefined) finish({ status, headers, body: decoded });
          else if (closed) finish({ status, headers, body: rest.toString('utf8'), note: 'chunked body cut short' });
          return;
        }
        if (status === 204 || status === 304) return finish({ status, headers, body: '' });
        if (closed) finish({ status, headers, body: rest.toString('utf8') });
        return;
      }
    };
    socket.on('connect', () => {
      socket.write(head);
      if (body !== undefined) {
        if (expectContinue) waitTimer = setTimeout(sendBody, 1000);
        else sendBody();
      }
    });
    socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); parse(false); });
    socket.on('error', () => parse(true));
    socket.on('close', () => parse(true));
  });
}

function dechunk(b: Buffer): string | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at, 'latin1');
    if (eol === -1) return undefined;
    const size = parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) return b.indexOf('\r\n\r\n', eol - 2 < at ? at : eol - 2, 'latin1') === -1 ? undefined : Buffer.concat(parts).toString('utf8');
    if (b.length < eol + 2 + size + 2) return undefined;
    parts.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** A request head: the request line and the header lines exactly as given, then the empty line. */
export const toHead = (requestLine: string, headers: Array<[string, string]>) => `${[requestLine, ...headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n')}\r\n\r\n`;

/** Where the response starting at `pos` ends ('garbage': not a response; undefined: not all here yet). */
export function responseEnd(buf: string, pos: number, method: string, closed: boolean): { status: number; statusLine: string; end: number } | 'garbage' | undefined {
  for (;;) {
    const headEnd = buf.indexOf('\r\n\r\n', pos);
    if (headEnd === -1) return undefined;
    const head = buf.slice(pos, headEnd);
    const m = /^HTTP\/\d\.\d (\d{3})/.exec(head);
    if (!m) return 'garbage';
    const status = Number(m[1]);
    const statusLine = head.split('\r\n')[0] ?? '';
    const bodyStart = headEnd + 4;
    if (status >= 100 && status < 200 && status !== 101) { pos = bodyStart; continue; }
    if (status === 101 || status === 204 || status === 304 || method === 'HEAD') return { status, statusLine, end: bodyStart };
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (cl) return buf.length - bodyStart >= Number(cl[1]) ? { status, statusLine, end: bodyStart + Number(cl[1]) } : undefined;
    if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
      let at = bodyStart;
      for (;;) {
        const eol = buf.indexOf('\r\n', at);
        if (eol === -1) return undefined;
        const size = parseInt(buf.slice(at, eol), 16);
        if (Number.isNaN(size)) return 'garbage';
        if (size === 0) {
          const trailerEnd = buf.indexOf('\r\n\r\n', eol - 2);
          return trailerEnd === -1 ? undefined : { status, statusLine, end: trailerEnd + 4 };
        }
        at = eol + 2 + size + 2;
        if (at > buf.length) return undefined;
      }
    }
    return closed ? { status, statusLine, end: buf.length } : undefined;
  }
}

/**
 * HTTP/1.1 pipelining: writes `requests` (heads and bodies) at once on one connection and reads the
 * answers in order — as many as came before the connection closed (or `ms` passed).
 */
export function pipelined(port: number, requests: Array<{ method: string; raw: string }>, ms = 5000): Promise<Array<{ status: number; text: string }>> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let buf = '';
    let pos = 0;
    const out: Array<{ status: number; text: string }> = [];
    const finish = () => { clearTimeout(timer); socket.destroy(); resolve(out); };
    const parse = (closed: boolean) => {
      while (out.length < requests.length) {
        const r = responseEnd(buf, pos, requests[out.length]!.method, closed);
        if (r === undefined || r === 'garbage') return;
        out.push({ status: r.status, text: buf.slice(pos, r.end) });
        pos = r.end;
      }
      finish();
    };
    const timer = setTimeout(finish, ms);
    socket.on('connect', () => socket.write(requests.map((r) => r.raw).join(''), 'latin1'));
    socket.on('data', (d: Buffer) => { buf += d.toString('latin1'); parse(false); });
    socket.on('error', () => {});
    socket.on('close', () => { parse(true); finish(); });
  });
}

/** A browser's WebSocket upgrade on a raw socket (Origin: the site itself; `Accept: text/html`); resolves with the answer's head (and body when it is not 101). */
export function upgrade(url: string, path: string, cookie: string): Promise<{ status: number; head: string; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: ${url}\r\nCookie: ${cookie}\r\nAccept: text/html\r\n\r\n`);
    });
    let data = '';
    sock.on('data', (d) => {
      data += d.toString();
      // Upgraded: the socket stays open; the answer's head is all there is to read.
      if (data.startsWith('HTTP/1.1 101') && data.includes('\r\n\r\n')) { sock.destroy(); resolve({ status: 101, head: data.split('\r\n\r\n')[0]!, body: '' }); }
    });
    sock.on('end', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), head, body });
    });
    sock.on('error', reject);
    sock.setTimeout(5000, () => { sock.destroy(); reject(new Error('upgrade timed out')); });
  });
}
