// The peer: Debian's Apache httpd + mod_auth_openidc, configured by bench/apache/httpd.conf in a fresh
// server root, in front of the same upstream and signing in at the same IdP as Portcullis.
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startChild, waitForHttp, type Child } from './processes.js';

export const APACHE_BIN = '/usr/sbin/apache2';
export const MOD_AUTH_OPENIDC = '/usr/lib/apache2/modules/mod_auth_openidc.so';
const CONF = fileURLToPath(new URL('./apache/httpd.conf', import.meta.url));

/** Undefined when Apache and mod_auth_openidc are installed, else what is missing. */
export function apacheMissing(): string | undefined {
  const missing = [APACHE_BIN, MOD_AUTH_OPENIDC].filter((f) => !existsSync(f));
  return missing.length ? `${missing.join(' and ')} not installed (apt-get install apache2 libapache2-mod-auth-openidc)` : undefined;
}

export interface ApacheOptions {
  runDir: string;
  port: number;
  plainPort: number;
  issuer: string;
  upstream: string;
  clientId: string;
  clientSecret: string;
}

export async function startApache(o: ApacheOptions): Promise<Child & { version: string }> {
  const root = join(o.runDir, 'apache');
  for (const d of ['logs', 'run', 'htdocs']) mkdirSync(join(root, d), { recursive: true });
  // As root, workers run as www-data and must reach the mutex files under run/.
  for (const d of [o.runDir, root, join(root, 'run')]) chmodSync(d, 0o755);
  const env = {
    ...process.env,
    BENCH_APACHE_PORT: String(o.port),
    BENCH_APACHE_PLAIN_PORT: String(o.plainPort),
    BENCH_IDP_ISSUER: o.issuer,
    BENCH_UPSTREAM: o.upstream,
    BENCH_CLIENT_ID: o.clientId,
    BENCH_CLIENT_SECRET: o.clientSecret,
    BENCH_PASSPHRASE: 'portcullis-bench-crypto-passphrase-not-a-secret-0123456789',
  };
  const args = ['-d', root, '-f', CONF, ...(process.getuid?.() === 0 ? ['-DRUN_AS_ROOT'] : [])];
  const run = promisify(execFile);
  try {
    await run(APACHE_BIN, [...args, '-t'], { env, timeout: 15_000 });
  } catch (err) {
    throw new Error(`apache2 -t failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
  const { stdout: v } = await run(APACHE_BIN, ['-v'], { timeout: 5000 });
  const child = startChild('apache', APACHE_BIN, [...args, '-DFOREGROUND'], join(root, 'logs', 'stdout.log'), { env });
  await waitForHttp(`http://127.0.0.1:${o.port}/`, (s) => s === 302, 15_000, child, { accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  await waitForHttp(`http://127.0.0.1:${o.plainPort}/`, (s) => s === 200, 15_000, child);
  return Object.assign(child, { version: /Server version: (.*)/.exec(v)?.[1] ?? 'unknown' });
}
