// Log redaction: no cookie value, token, authorization code or secret reaches a log line, at any
// level. These are pino `redact.paths` (censor '[redacted]'), used by the proxy's logger (src/app.ts)
// and the cluster primary's (src/cluster.ts). test/operability/log-secrets.test.ts checks the
// result field by field, decoded (byte arrays, base64, percent-encoding), after a full session, after
// requests Node's HTTP parser rejects, and on the error objects of the libraries below.
//
// What can carry a secret into a log line is mostly what Portcullis does not build itself: errors
// from Node, undici, openid-client/oauth4webapi and ioredis (logged under `err`, where pino's error
// serializer copies every enumerable property), and request/response objects. Our own log calls pass
// plain fields (route, sub, code, messages), never headers, cookies or tokens.
//
// Cost: pino's redaction tries a path that starts with `*` against every field of every line —
// the per-request audit line included, ~20 µs a line measured — so there are no wildcard paths.
// Instead: errors (where library objects carry request bytes, bodies and headers) are cleaned by the
// `err` serializer; the one-level-down names are removed by a `log` formatter that only looks inside
// fields that are objects (an audit line has none: a few typeof checks); the redaction paths are
// named fields, which cost nothing on lines without them. All three: `loggerOptions`.

import { stdSerializers } from 'pino';
import { PinoPretty } from 'pino-pretty';

/** Paths tried one level below every top-level field (`err.X`, `req.X`, `res.X`, `anything.X`). */
const ONE_LEVEL_DOWN = [
  // The raw request bytes — request line, Cookie, Authorization and all — that Node's HTTP parser
  // attaches to a parse error; logged as {"type":"Buffer","data":[71,69,84,…]}. Fastify's default
  // clientError handler logs that error at trace for every 400 and 431 (`err.rawPacket`): the
  // cluster primary's /metrics server uses it (the proxy's own server has a handler of its own).
  'rawPacket',
  // A headers object anywhere (req.headers, res.headers, undici's err.headers …), whole: it carries
  // Cookie, Authorization, Proxy-Authorization, Set-Cookie, X-Forwarded-Access-Token and the
  // assertion we send upstream, and any credential header of an application's own (X-Api-Key…),
  // which no list of names could know.
  'headers',
  // Node's flat [name, value, name, value…] header list of an IncomingMessage: the same headers.
  'rawHeaders',
  // request.cookies (@fastify/cookie): every cookie of the request by name, the session's included.
  'cookies',
  // OAuth token endpoint responses and anything shaped like them (openid-client's token set).
  'id_token', 'access_token', 'refresh_token',
  // The session record's tokens (src/session/record.ts SessionRecord).
  'idToken', 'accessToken', 'refreshToken',
  // The OIDC client secret (config oidc.clientSecret), and the private_key_jwt keys (config
  // oidc.clientKeys, private JWKs) and the assertions signed with them (a request body's field).
  'clientSecret', 'clientKeys', 'client_assertion',
  // The session secrets (config session.secrets): whoever has them can forge session cookies.
  'secrets',
];

/** Paths under a logged error (`err`, after pino's error serializer), beyond ONE_LEVEL_DOWN. */
const UNDER_ERR = [
  // Named explicitly: the path Fastify's client-error log actually produces (also matched above).
  'err.rawPacket',
  // The same parse error inside an AggregateError (pino serializes `errors` as `aggregateErrors`).
  'err.aggregateErrors[*].rawPacket',
  // A cause that is not an Error (Error causes are folded into message and stack): oauth4webapi's
  // ResponseBodyError keeps the IdP's parsed response body here, AuthorizationResponseError the
  // callback's parameters. Their error/error_description stay visible as err.error and
  // err.error_description.
  'err.cause',
  // A response body kept on an error (undici ResponseError and the like): a token endpoint answer
  // or an application's page.
  'err.body',
  // A response or request object kept on an error: headers and body of either side.
  'err.response', 'err.request',
  // ioredis ReplyError: the failed command with its arguments — session keys and sealed bodies.
  'err.command',
  // Node's ERR_INVALID_URL: the string that did not parse — a callback URL holds the code and state.
  'err.input',
];

/** Top-level fields that are secret by name: these paths cost nothing on lines without them. */
const TOP_LEVEL = [
  // The same names as ONE_LEVEL_DOWN, logged as a field of their own.
  ...ONE_LEVEL_DOWN,
  // A Cookie header value, or one cookie's value.
  'cookie',
  // Set-Cookie lines as Portcullis builds them (src/door `setCookies`) or as a header value.
  'setCookies', '["set-cookie"]',
  // Credentials a client sends: Basic/Bearer values.
  'authorization', '["proxy-authorization"]',
  // What Portcullis sends upstream on behalf of the user: the access token and the signed assertion.
  '["x-forwarded-access-token"]', '["x-auth-request-access-token"]', '["x-portcullis-assertion"]',
  // Back-channel logout requests (form field logout_token), as a wire or a camel-case name.
  'logout_token', 'logoutToken',
  // The client secret as the token endpoint's form field.
  'client_secret',
  // A single session secret, a Redis or other password.
  'secret', 'password',
  // The PKCE verifier of a sign-in transaction (src/signin/transactions.ts) and its OAuth name:
  // with the authorization code it redeems tokens.
  'verifier', 'code_verifier',
  // A token set of any shape.
  'tokens',
];

export const REDACT: string[] = [
  ...TOP_LEVEL,
  // Request/response objects as Fastify's serializers render them (requests are not logged by
  // default; a plugin or a debug session might).
  ...ONE_LEVEL_DOWN.map((k) => `req.${k}`), ...ONE_LEVEL_DOWN.map((k) => `res.${k}`),
  ...UNDER_ERR,
];

/** Fields of a serialized error that carry request bytes, bodies, headers or commands (UNDER_ERR, why). */
const ERROR_FIELDS_DROPPED = ['rawPacket', 'body', 'response', 'request', 'command', 'input', 'headers', 'rawHeaders', 'cookies'];

/**
 * pino's error serializer, then the fields above removed (at any depth of `cause` errors and
 * aggregate errors): cheaper than wildcard redaction paths, which pino would try on every line.
 */
export function serializeError(err: Error): { [key: string]: unknown; type: string; message: string; stack: string } {
  const out = stdSerializers.err(err) as unknown as Record<string, unknown>;
  return clean(out, 0) as { [key: string]: unknown; type: string; message: string; stack: string };
}

function clean(o: Record<string, unknown>, depth: number): Record<string, unknown> {
  if (!o || typeof o !== 'object') return o;
  for (const k of ERROR_FIELDS_DROPPED) if (k in o) o[k] = '[redacted]';
  // A cause that is not an Error (oauth4webapi: the IdP's parsed response body).
  if ('cause' in o && (typeof o.cause !== 'object' || o.cause === null || !('message' in (o.cause as object)))) o.cause = '[redacted]';
  if (depth < 4) {
    if (o.cause && typeof o.cause === 'object') clean(o.cause as Record<string, unknown>, depth + 1);
    if (Array.isArray(o.aggregateErrors)) for (const e of o.aggregateErrors) clean(e as Record<string, unknown>, depth + 1);
  }
  for (const k of ONE_LEVEL_DOWN) if (k in o) o[k] = '[redacted]';
  return o;
}

/** Copies (never mutates: a logged object may be a live session) any object field holding a secret by name. */
function scrubOneLevelDown(line: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in line) {
    const v = line[key];
    if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Error) continue;
    let copy: Record<string, unknown> | undefined;
    for (const name of ONE_LEVEL_DOWN) {
      if (name in (v as object)) {
        copy ??= { ...(v as Record<string, unknown>) };
        copy[name] = '[redacted]';
      }
    }
    if (copy) {
      out ??= { ...line };
      out[key] = copy;
    }
  }
  return out ?? line;
}

/** The logger options every Portcullis logger uses (proxy, cluster primary): redaction as above. */
export const loggerOptions = {
  redact: { paths: REDACT, censor: '[redacted]' },
  serializers: { err: serializeError },
  formatters: { log: scrubOneLevelDown },
};

/** The part of a pino logger `OutageLog` writes to. */
interface OutageLogger {
  error(o: object, msg: string): void;
  warn(o: object, msg: string): void;
  info(o: object, msg: string): void;
  debug(o: object, msg: string): void;
}

/**
 * Failures that come as an outage, not one by one: while Redis or the IdP is down every request
 * that needs it is answered 503, and one error line per request buried the logs (1,380 lines in
 * 15 s in a chaos soak). So, per code: one error line when the outage starts (with the first
 * request's id and cause), one warn line per `everyMs` while it lasts (how many requests were
 * answered with it meanwhile), and one info line once none has come for `quietMs` (the total and
 * how long it lasted). Each request is still logged at debug with its id. Timers are unref'd: an
 * outage in progress never keeps the process alive.
 */
export class OutageLog {
  private readonly open = new Map<string, { started: number; last: number; total: number; sinceReport: number; reported: number; timer: NodeJS.Timeout }>();

  constructor(
    private readonly log: OutageLogger,
    private readonly opts: { everyMs: number; quietMs: number; now?: () => number } = { everyMs: 30_000, quietMs: 5_000 },
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** One failed request of an outage-type code. */
  failed(code: string, message: string, at: { reqId: string; route: string; err: unknown }): void {
    const now = this.now();
    const o = this.open.get(code);
    if (!o) {
      this.log.error({ reqId: at.reqId, route: at.route, code, err: at.err, outage: 'started' }, `${message} (outage started: further requests answered with ${code} are counted, not logged one by one)`);
      const timer = setTimeout(() => this.check(code), this.opts.quietMs);
      timer.unref();
      this.open.set(code, { started: now, last: now, total: 1, sinceReport: 0, reported: now, timer });
      return;
    }
    o.last = now;
    o.total += 1;
    o.sinceReport += 1;
    this.log.debug({ reqId: at.reqId, route: at.route, code }, message);
    if (now - o.reported >= this.opts.everyMs) {
      this.log.warn({ code, outage: 'ongoing', requests: o.sinceReport, total: o.total, forSec: Math.round((now - o.started) / 1000) }, `still failing: ${o.sinceReport} request(s) answered with ${code} in the last ${Math.round((now - o.reported) / 1000)} s`);
      o.reported = now;
      o.sinceReport = 0;
    }
  }

  private check(code: string): void {
    const o = this.open.get(code);
    if (!o) return;
    const quietFor = this.now() - o.last;
    if (quietFor < this.opts.quietMs) {
      o.timer = setTimeout(() => this.check(code), this.opts.quietMs - quietFor);
      o.timer.unref();
      return;
    }
    this.open.delete(code);
    this.log.info({ code, outage: 'ended', total: o.total, forSec: Math.round((o.last - o.started) / 1000) }, `no request answered with ${code} for ${Math.round(this.opts.quietMs / 1000)} s: outage over (${o.total} request(s) in ${Math.round((o.last - o.started) / 1000)} s)`);
  }

  /** Ends every open outage report now (shutdown): timers cleared, nothing logged. */
  close(): void {
    for (const o of this.open.values()) clearTimeout(o.timer);
    this.open.clear();
  }
}

/**
 * Where log lines go. JSON on stdout, one object per line, as log collectors want — unless stdout
 * is a terminal (the demo, a first `npx portcullis` run by hand), where pino-pretty prints them for
 * a person (time, level, message, fields). `PORTCULLIS_LOG_FORMAT=json` or `=pretty` overrides the
 * guess. Redaction (loggerOptions) runs before either format, so both carry the same fields.
 * `undefined`: JSON on stdout (`jsonStdout()`).
 */
export function logDestination(env: NodeJS.ProcessEnv = process.env, stdout: { isTTY?: boolean } = process.stdout): NodeJS.WritableStream | undefined {
  const format = env.PORTCULLIS_LOG_FORMAT;
  const pretty = format === 'pretty' || (format !== 'json' && stdout.isTTY === true);
  if (!pretty) return undefined;
  return PinoPretty({ colorize: stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: false });
}

/**
 * Stdout for JSON lines (the destination when logDestination gives none): the lines written in one
 * event-loop turn go out together, in one write to `process.stdout`.
 * Why: under load a worker writes an audit line per request. pino's default stream (sonic-boom,
 * asynchronous) wrote line by line, and its bookkeeping per write (the byte length of all pending
 * text, measured again on every write; the written text converted to a Buffer once more afterwards)
 * cost ~5 µs of CPU a line, 3–4 % of an authenticated request; joined per turn, ~1 µs
 * (bench/README.md).
 * Why `process.stdout`: Node writes to a pipe at once when the pipe has room and queues in order when
 * it has not (no thread pool, no blocking); to a file, synchronously. sonic-boom's asynchronous mode
 * let the lines flushed at exit overtake a write still in flight (a test saw them out of order); its
 * synchronous mode sleeps the whole process 100 ms at a time while a pipe is full.
 * At exit (after a drain, or any `process.exit`) the turn's pending lines are handed to stdout
 * first; what a full pipe has not taken by then is lost, as for any Node process. A stdout that
 * fails (EPIPE: the reader went away) is not written to again, and one line on stderr says so —
 * never an unhandled error that would end the process.
 * One per process, as stdout is.
 */
class TurnBatchedStdout {
  private parts: string[] = [];
  private scheduled = false;
  private broken = false;

  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    out.on('error', (err: NodeJS.ErrnoException) => {
      if (this.broken) return;
      this.broken = true;
      this.parts = [];
      try {
        process.stderr.write(`portcullis: stdout failed (${err.code ?? err.message}); log lines are dropped from now on\n`);
      } catch { /* stderr gone too */ }
    });
    // The lines of the current turn, handed over at exit.
    process.once('exit', () => this.handOver());
  }

  write(line: string): boolean {
    if (this.broken) return true;
    this.parts.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.endOfTurn);
    }
    return true;
  }

  private readonly endOfTurn = (): void => {
    this.scheduled = false;
    this.handOver();
  };

  private handOver(): void {
    if (this.parts.length === 0 || this.broken) return;
    const text = this.parts.length === 1 ? this.parts[0]! : this.parts.join('');
    this.parts = [];
    for (const chunk of pipeSizedChunks(Buffer.from(text))) this.out.write(chunk);
  }

  /** pino's logger.flush(): `cb` once stdout has taken everything written so far. */
  flush(cb?: (err?: Error | null) => void): void {
    this.handOver();
    if (this.broken) cb?.();
    else this.out.write('', () => cb?.());
  }

  flushSync(): void {
    this.handOver();
  }
}

/**
 * A write of at most PIPE_BUF bytes to a pipe is atomic (POSIX): workers (`workers: N`) share the
 * primary's stdout, and a longer write may be split and interleaved with another worker's, in the
 * middle of a line. So a turn's lines go out in chunks of at most this many bytes, cut after a
 * newline; a single line longer than that goes whole, in a write of its own. (While the pipe is
 * full, Node queues the chunks and later writes several at once, which the kernel may split: the
 * guarantee holds while the reader keeps up, as for any processes sharing a pipe.)
 */
const PIPE_BUF = 4096;

/** `bytes` (whole lines) cut into writes of at most PIPE_BUF bytes at line ends (a longer line alone). */
export function pipeSizedChunks(bytes: Buffer): Buffer[] {
  if (bytes.length <= PIPE_BUF) return [bytes];
  const out: Buffer[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.length;
    if (end - start > PIPE_BUF) {
      const nl = bytes.lastIndexOf(10, start + PIPE_BUF - 1);
      if (nl >= start) end = nl + 1;
      else {
        const next = bytes.indexOf(10, start + PIPE_BUF);
        end = next === -1 ? bytes.length : next + 1;
      }
    }
    out.push(bytes.subarray(start, end));
    start = end;
  }
  return out;
}

let stdoutLines: TurnBatchedStdout | undefined;

/** The process's JSON stdout destination (TurnBatchedStdout). */
export function jsonStdout(): NodeJS.WritableStream {
  stdoutLines ??= new TurnBatchedStdout();
  return stdoutLines as unknown as NodeJS.WritableStream;
}
