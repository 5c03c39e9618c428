// Interop suite: what the browser sees of Portcullis and the echo upstream, shared by every IdP's tests.
import type { Page } from 'playwright-core';

/** The value the echo upstream's HTML page shows for one identity header. */
export async function identityHeader(page: Page, name: string): Promise<string> {
  return (await page.locator('table.identity tr').filter({ has: page.locator('th', { hasText: name }) }).locator('td').innerText()).trim();
}

/** The last status of a top-level navigation (the page the browser ended on). */
export function lastNavigationStatus(page: Page): () => number | undefined {
  let status: number | undefined;
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) status = r.status();
  });
  return () => status;
}
