// `portcullis sessions list --sub S` and `portcullis sessions revoke --sub S | --sid X`: a client of
// the admin endpoints on a running Portcullis's metrics/admin listener (src/session/admin.ts).
// Where to connect and the token come from the flags, else from the config file: the metrics
// listener (0.0.0.0 → 127.0.0.1) and admin.tokenFile. Exit 0 on success, 1 otherwise.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseConfigText } from '../config/load.js';

export const SESSIONS_USAGE = `usage:
  portcullis sessions list --sub SUB [options]        a subject's sessions (Redis store)
  portcullis sessions revoke (--sub SUB | --sid SID) [options]
                                                      end them (and their WebSockets), audit-logged
options:
  --url URL          the admin listener (default: the config's metrics listener, e.g. http://127.0.0.1:9090)
  --token-file FILE  the admin bearer token (default: the config's admin.tokenFile)
  --config FILE      the config to take those from (default: $PORTCULLIS_CONFIG or config/portcullis.yaml)
  --provider ID      the provider (oidc[].id) the subject or IdP sid belongs to (default: the first;
                     two IdPs may both have an "alice", see docs/providers.md)
  --json             print the endpoint's JSON answer`;

export interface CliOutput {
  log: (s: string) => void;
  error: (s: string) => void;
}

const consoleOut: CliOutput = { log: (s) => console.log(s), error: (s) => console.error(s) };

/** What a config file tells the CLI, read leniently: a config the CLI cannot fully validate (missing env vars) still names its listener and token file. */
function fromConfig(file: string, explicit: boolean): { url?: string; tokenFile?: string; problem?: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return explicit ? { problem: `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}` } : {};
  }
  const raw = parseConfigText(text, process.env).value as Record<string, unknown> | undefined;
  const out: { url?: string; tokenFile?: string } = {};
  const metrics = raw?.metrics;
  if (metrics !== false) {
    const m = (metrics && typeof metrics === 'object' ? metrics : {}) as { host?: unknown; port?: unknown };
    let host = typeof m.host === 'string' && m.host !== '' ? m.host : '0.0.0.0';
    if (host === '0.0.0.0') host = '127.0.0.1';
    if (host === '::') host = '::1';
    const port = typeof m.port === 'number' ? m.port : 9090;
    out.url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }
  const admin = raw?.admin as { tokenFile?: unknown } | undefined;
  if (admin && typeof admin.tokenFile === 'string') out.tokenFile = admin.tokenFile;
  return out;
}

export async function sessionsCommand(argv: string[], out: CliOutput = consoleOut): Promise<number> {
  const action = argv[0];
  let values: { sub?: string; sid?: string; provider?: string; url?: string; 'token-file'?: string; config?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv.slice(1),
      options: {
        sub: { type: 'string' },
        sid: { type: 'string' },
        provider: { type: 'string' },
        url: { type: 'string' },
        'token-file': { type: 'string' },
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    out.error(`${(err as Error).message}\n\n${SESSIONS_USAGE}`);
    return 1;
  }
  if (values.help || action === '--help' || action === '-h') { out.log(SESSIONS_USAGE); return 0; }
  if (action !== 'list' && action !== 'revoke') {
    out.error(`${action ? `unknown sessions command "${action}"` : 'sessions needs list or revoke'}\n\n${SESSIONS_USAGE}`);
    return 1;
  }
  if (action === 'list' && (!values.sub || values.sid)) { out.error(`sessions list needs --sub (and takes no --sid)\n\n${SESSIONS_USAGE}`); return 1; }
  if (action === 'revoke' && !values.sub === !values.sid) { out.error(`sessions revoke needs exactly one of --sub or --sid\n\n${SESSIONS_USAGE}`); return 1; }

  const explicitConfig = values.config ?? process.env.PORTCULLIS_CONFIG;
  const cfg = values.url && values['token-file'] ? {} : fromConfig(explicitConfig ?? 'config/portcullis.yaml', explicitConfig !== undefined);
  if (cfg.problem) { out.error(cfg.problem); return 1; }
  const base = (values.url ?? cfg.url)?.replace(/\/+$/, '');
  if (!base) { out.error('no admin URL: give --url (the config has metrics: false, or none was found)'); return 1; }
  const tokenFile = values['token-file'] ?? cfg.tokenFile;
  if (!tokenFile) { out.error('no admin token: give --token-file, or set admin.tokenFile in the config'); return 1; }
  let token: string | undefined;
  try {
    token = readFileSync(tokenFile, 'utf8').split(/\r?\n/).find((l) => l.trim() !== '')?.trim();
  } catch (err) {
    out.error(`cannot read the token file ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    return 1;
  }
  if (!token) { out.error(`the token file ${tokenFile} is empty`); return 1; }

  const provider = values.provider === undefined ? '' : `&provider=${encodeURIComponent(values.provider)}`;
  const url = action === 'list' ? `${base}/admin/sessions?sub=${encodeURIComponent(values.sub!)}${provider}` : `${base}/admin/sessions/revoke`;
  let status: number;
  let body: any;
  try {
    const res = await fetch(url, {
      method: action === 'list' ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(action === 'revoke' ? { 'content-type': 'application/json' } : {}) },
      body: action === 'revoke' ? JSON.stringify({ ...(values.sid ? { sid: values.sid } : { sub: values.sub }), ...(values.provider === undefined ? {} : { provider: values.provider }) }) : undefined,
      signal: AbortSignal.timeout(15_000),
    });
    status = res.status;
    const text = await res.text();
    try { body = JSON.parse(text); } catch { body = { error: 'unexpected_answer', message: text.slice(0, 200) }; }
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const message = `cannot reach the admin endpoint at ${base}: ${cause?.code ?? cause?.message ?? (err as Error).message}`;
    if (values.json) out.log(JSON.stringify({ error: 'unreachable', message })); else out.error(message);
    return 1;
  }

  if (status < 200 || status > 299) {
    const hint = status === 404 ? ' (is admin.tokenFile set in the running config, and is this its metrics listener?)' : '';
    if (values.json) out.log(JSON.stringify({ status, ...body }));
    else out.error(`${action} failed: ${status} ${body?.message ?? body?.error ?? ''}${hint}`);
    return 1;
  }
  if (values.json) { out.log(JSON.stringify(body, null, 2)); return 0; }

  if (action === 'list') {
    const sessions = (body.sessions ?? []) as Array<Record<string, string>>;
    if (sessions.length === 0) { out.log(`${body.sub}: no sessions`); return 0; }
    const lines = sessions.map((s) => `  ${s.id!.slice(0, 16)}  created ${s.createdAt}  last seen ${s.lastSeenAt}  idle expiry ${s.idleExpiresAt}  absolute expiry ${s.absoluteExpiresAt}${s.idpSid ? `  idp sid ${s.idpSid}` : ''}`);
    out.log(`${body.sub}: ${sessions.length} session${sessions.length === 1 ? '' : 's'}\n${lines.join('\n')}`);
    return 0;
  }
  const what = body.sid !== undefined ? `IdP session ${body.sid}` : `subject ${body.sub}`;
  const count = typeof body.sessions === 'number' ? ` (${body.sessions} session${body.sessions === 1 ? '' : 's'} deleted from Redis)` : '';
  out.log(`revoked: sessions of ${what}${count}${body.note ? `\n${body.note}` : ''}`);
  return 0;
}
