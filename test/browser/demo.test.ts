// The demo as a person runs it: a separate process printing its banner, then a real browser signs in as alice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { canListen, freePort } from '../../dev/devidp/net.js';
import { launchChromium } from '../helpers/chromium.js';
import { entryArgs } from '../helpers/entry.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
// A deadline, not a wait: the demo starts under tsx (what `npm run demo` runs), its slowest start-up, and
// a loaded machine running the suite three files at a time took over 20 s once.
const BANNER_TIMEOUT_MS = 60_000;

/** Three free ports for proxy, IdP and upstream, plus proxy + 10 (the demo's metrics port) free too. */
async function demoPorts(): Promise<{ port: number; idpPort: number; upstreamPort: number }> {
  for (;;) {
    const [port, idpPort, upstreamPort] = [await freePort(), await freePort(), await freePort()];
    if (new Set([port, idpPort, upstreamPort, port + 10]).size < 4) continue;
    if (await canListen(port + 10)) return { port, idpPort, upstreamPort };
  }
}

/** Resolves with everything printed so far once `marker` shows up on stdout; rejects if the process exits first. */
function waitForOutput(child: ChildProcess, marker: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => done(new Error(`no banner within ${timeoutMs} ms\nstdout:\n${out}\nstderr:\n${err}`)), timeoutMs);
    const onOut = (c: Buffer) => {
      out += c;
      if (marker.test(out)) done(undefined);
    };
    const onErr = (c: Buffer) => { err += c; };
    const onExit = (code: number | null, signal: string | null) => done(new Error(`demo exited (${code ?? signal}) before its banner\nstdout:\n${out}\nstderr:\n${err}`));
    function done(e: Error | undefined) {
      clearTimeout(timer);
      child.stdout!.off('data', onOut);
      child.stderr!.off('data', onErr);
      child.off('exit', onExit);
      if (e) reject(e);
      else resolve(out);
    }
    child.stdout!.on('data', onOut);
    child.stderr!.on('data', onErr);
    child.once('exit', onExit);
  });
}

/** SIGTERM by PID, SIGKILL if it has not exited after 5 s. */
async function stopByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL'); }, 5000);
  await exited;
  clearTimeout(timer);
}

test('the demo starts, prints its banner, and alice signs in with a browser', { timeout: 120_000 }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const { port, idpPort, upstreamPort } = await demoPorts();
  // Exactly what `npm run demo` runs (package.json: node --import tsx dev/demo.ts).
  const child = spawn(process.execPath, ['--import', 'tsx', 'dev/demo.ts'], {
    cwd: REPO,
    env: {
      ...process.env,
      PORTCULLIS_DEMO_PORT: String(port),
      PORTCULLIS_DEMO_IDP_PORT: String(idpPort),
      PORTCULLIS_DEMO_UPSTREAM_PORT: String(upstreamPort),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => stopByPid(child));

  const banner = await waitForOutput(child, /Stop with Ctrl-C/, BANNER_TIMEOUT_MS);
  const base = `http://localhost:${port}`;
  assert.match(banner, new RegExp(`open\\s+${base}/`), 'the banner prints the URL');
  assert.match(banner, /alice\s+password alice-password\s+groups: admin, dev/, 'the banner lists alice and her groups');
  assert.match(banner, /bob\s+password bob-password/, 'the banner lists bob');
  assert.match(banner, new RegExp(`${base}/admin`), 'the banner names the admin-only route');

  const page = await context.newPage();
  await page.goto(`${base}/`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).origin, `http://127.0.0.1:${idpPort}`, 'sent to the embedded IdP');
  await page.locator('input[name="login"]').fill('alice');
  await page.locator('input[name="password"]').fill('alice-password');
  await Promise.all([
    page.waitForURL((u) => u.origin === base, { waitUntil: 'domcontentloaded' }),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  assert.equal(page.url(), `${base}/`);
  const identity = page.locator('table.identity');
  const row = (name: string) => identity.locator('tr').filter({ has: page.locator('th', { hasText: name }) }).locator('td').innerText();
  assert.equal(await row('x-forwarded-user'), 'alice');
  assert.equal(await row('x-forwarded-email'), 'alice@example.com');
  assert.equal(await row('x-forwarded-preferred-username'), 'alice');
  assert.equal(await row('x-forwarded-groups'), 'admin,dev');

  // The banner's check command: portcullis doctor against the demo's IdP and upstream, all ✓.
  const configFile = /Check:\s+npx portcullis doctor --config (\S+)/.exec(banner)?.[1];
  assert.ok(configFile, 'the banner prints the doctor command');
  const doctor = spawnSync(process.execPath, [...entryArgs('src/main.ts'), 'doctor', '--config', configFile], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  assert.equal(doctor.status, 0, `doctor against the demo:\n${doctor.stdout}\n${doctor.stderr}`);
  assert.doesNotMatch(doctor.stdout, /✗|⚠/);
  assert.match(doctor.stdout, /✓ client credentials/);

  await stopByPid(child);
  assert.ok(child.exitCode !== null || child.signalCode !== null, 'the demo process is gone');
  assert.ok(!existsSync(configFile), 'the demo removed its config file');
});
