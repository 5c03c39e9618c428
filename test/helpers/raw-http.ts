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
