// A real browser sign-in (Debian Chromium via playwright-core) through an OIDC reverse proxy in front of
// the echo upstream, as shared/peer-bench/login.mjs does: used for the Apache peer, whose session we
// cannot mint without its own code. Returns the proxy's session cookies as one Cookie header value.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM ?? '/usr/bin/chromium';

export interface BrowserLoginOptions {
  /** Proxy base URL, e.g. http://127.0.0.1:41000 */
  base: string;
  /** Where to start; the browser must end there after sign-in. */
  path: string;
  user: string;
  password: string;
  /** Cookie names that belong to the proxy (the IdP's op_* cookies share the 127.0.0.1 jar). */
  isProxyCookie: (name: string) => boolean;
  timeoutMs?: number;
}

export async function browserLogin(o: BrowserLoginOptions): Promise<{ cookie: string; page: string }> {
  const timeout = o.timeoutMs ?? 30_000;
  const userDataDir = mkdtempSync(join(tmpdir(), 'portcullis-bench-chromium-'));
  // Playwright's launch() refuses --user-data-dir in args; a persistent context on a fresh dir is the way.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout,
  });
  try {
    context.setDefaultTimeout(timeout);
    const page = context.pages()[0] ?? await context.newPage();
    const base = new URL(o.base);
    await page.goto(new URL(o.path, base).href, { waitUntil: 'domcontentloaded' });
    await page.locator('input[name="login"]').fill(o.user);
    await page.locator('input[name="password"]').fill(o.password);
    await Promise.all([
      page.waitForURL((u) => u.origin === base.origin && !u.pathname.startsWith('/oauth2/'), { waitUntil: 'domcontentloaded' }),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    const text = await page.locator('body').innerText();
    const cookies = (await context.cookies(base.href)).filter((c) => o.isProxyCookie(c.name));
    if (cookies.length === 0) throw new Error(`no proxy session cookie after sign-in at ${page.url()}`);
    return { cookie: cookies.map((c) => `${c.name}=${c.value}`).join('; '), page: text };
  } finally {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}
