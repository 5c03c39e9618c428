// Test helper: a headless Debian Chromium via playwright-core, and the skip-locally/fail-in-CI rule for missing tools.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';
import type { CleanupScope } from './idp.js';

export const CHROMIUM_PATH = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** What requireTool needs from a test: a TestContext fits. */
export interface SkippableScope extends CleanupScope {
  skip(message?: string): void;
}

/** Absolute path of an executable (a path, or a name looked up in PATH), or undefined. */
export function findTool(pathOrName: string): string | undefined {
  const candidates = pathOrName.includes('/')
    ? [pathOrName]
    : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, pathOrName));
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * True when the tool is installed. Otherwise skips the test (returns false, so the caller can `return`)
 * — except with CI=true, where a missing tool is an error: CI must not go green by skipping.
 */
export function requireTool(t: Pick<SkippableScope, 'skip'>, pathOrName: string): boolean {
  const reason = missingToolReason(pathOrName);
  if (reason === undefined) return true;
  t.skip(reason);
  return false;
}

/**
 * For `describe(name, { skip: missingToolReason('redis-server') }, ...)`: undefined when installed, a
 * skip reason when not; throws with CI=true.
 */
export function missingToolReason(pathOrName: string): string | undefined {
  if (findTool(pathOrName)) return undefined;
  const message = `${pathOrName} is not installed (apt-get install chromium redis-server; see .ci/run)`;
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true, so this fails instead of skipping`);
  return message;
}

/**
 * One headless Chromium per test process, shared: each test gets a fresh browser context (its own
 * cookies, storage and cache — what a new profile gave, at a fraction of a launch's cost). The browser
 * is closed once no context has been open for BROWSER_LINGER_MS, so the next test of the file reuses
 * it and the file's process can still exit.
 */
const BROWSER_LINGER_MS = 300;
let shared: { browser: Promise<Browser>; contexts: number; closing: NodeJS.Timeout | undefined } | undefined;

function acquireBrowser(): Promise<Browser> {
  if (!shared) {
    const browser = chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
      timeout: 30_000,
    });
    const entry = { browser, contexts: 0, closing: undefined };
    shared = entry;
    const forget = () => { if (shared === entry) shared = undefined; };
    browser.then((b) => b.once('disconnected', forget), forget); // crashed or failed to start: the next test launches anew
  }
  clearTimeout(shared.closing);
  shared.closing = undefined;
  shared.contexts += 1;
  return shared.browser;
}

function releaseBrowser(): void {
  const s = shared;
  if (!s || --s.contexts > 0) return;
  s.closing = setTimeout(() => {
    if (shared === s) shared = undefined;
    void s.browser.then((b) => b.close()).catch(() => {});
  }, BROWSER_LINGER_MS);
}

/**
 * A fresh context of the shared headless Chromium, closed after the test. Resolves to undefined (the
 * test is then skipped) when Chromium is missing locally.
 */
export async function launchChromium(t: SkippableScope): Promise<BrowserContext | undefined> {
  if (!requireTool(t, CHROMIUM_PATH)) return undefined;
  let context: BrowserContext;
  try {
    context = await (await acquireBrowser()).newContext();
  } catch (err) {
    releaseBrowser();
    throw err;
  }
  context.setDefaultTimeout(15_000);
  t.after(async () => {
    await context.close().catch(() => {});
    releaseBrowser();
  });
  return context;
}

/** Fills the dev IdP's login form on this page and submits it; resolves once the browser has left the form. */
export async function signInAtDevIdp(page: Page, who: { user: string; password: string }): Promise<void> {
  await page.locator('input[name="login"]').fill(who.user);
  await page.locator('input[name="password"]').fill(who.password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith('/interaction/'), { waitUntil: 'domcontentloaded' }),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
}

/** Top-level navigation responses, in order, to see the redirects a navigation went through. */
export function recordNavigations(page: Page): Array<{ status: number; url: string }> {
  const hops: Array<{ status: number; url: string }> = [];
  page.on('response', (r: Response) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) hops.push({ status: r.status(), url: r.url() });
  });
  return hops;
}
