// Test helper: a headless Debian Chromium via playwright-core, and the skip-locally/fail-in-CI rule for missing tools.
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
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
 * A fresh headless Chromium profile, closed and deleted after the test. Resolves to undefined (the test is
 * then skipped) when Chromium is missing locally.
 */
export async function launchChromium(t: SkippableScope): Promise<BrowserContext | undefined> {
  if (!requireTool(t, CHROMIUM_PATH)) return undefined;
  const userDataDir = mkdtempSync(join(tmpdir(), 'portcullis-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
      timeout: 30_000,
    });
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(15_000);
  t.after(async () => {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  });
  return context;
}
