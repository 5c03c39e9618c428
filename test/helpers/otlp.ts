// Test helper: an OTLP/HTTP (JSON) traces receiver on loopback, collecting what the real exporter
// sends (src/tracing.ts), stopped by the test's own cleanup.
import { createServer } from 'node:http';
import { freePort } from './stack.js';
import type { CleanupScope } from './idp.js';

export interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  status?: { code?: number };
}

/** An OTLP/HTTP (JSON) traces receiver on loopback: every span it was sent, and the raw bodies. */
export async function otlpReceiver(t: CleanupScope) {
  const spans: ExportedSpan[] = [];
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => {
      bodies.push(body);
      try {
        const doc = JSON.parse(body) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }> };
        for (const rs of doc.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) {
          const attributes: Record<string, unknown> = {};
          for (const a of (s.attributes as Array<{ key: string; value: Record<string, unknown> }> | undefined) ?? []) attributes[a.key] = Object.values(a.value)[0];
          spans.push({ ...(s as unknown as ExportedSpan), attributes });
        }
      } catch { /* counted in bodies; the assertions below will show it */ }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${port}`, spans, bodies };
}
