// Test helper: a Microsoft-Graph-shaped server on loopback for Entra ID group overage
// (src/signin/group-overage.ts). It serves `POST /v1.0/me/getMemberObjects` — paged with
// `@odata.nextLink` when `pageSize` is set — and only to a bearer token the dev IdP really issued
// and that is still active (looked up in the IdP's own token store, as introspection would): the
// user's groups are those of the token's account. `mode` makes it fail the ways Graph can.
// Stopped by the test's own cleanup.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DevIdp } from '../../dev/devidp/provider.js';
import type { CleanupScope } from './idp.js';

export type GraphMode =
  | 'ok'
  | 401 | 403 | 500 | 429
  | 'slow' // never answers
  | 'garbage' // 200, not JSON
  | 'wrong-shape' // 200, JSON without a `value` list
  | 'huge' // 200, megabytes of answer
  | 'foreign-next' // a nextLink to `foreignOrigin`
  | 'redirect'; // 302 to `foreignOrigin`

export interface GraphRequest {
  method: string;
  path: string;
  /** The account the bearer token belongs to; undefined when it was missing or not an active token of the IdP. */
  account: string | undefined;
  body: string;
}

export interface TestGraph {
  /** The origin, e.g. http://127.0.0.1:PORT — what oidc.groupOverage.graphUrl is set to. */
  url: string;
  requests: GraphRequest[];
  /** Group ids by account (the dev IdP's user name); changed by tests between sign-in and refresh. */
  groups: Map<string, string[]>;
  mode: GraphMode;
  /** Ids per page; undefined: one page. */
  pageSize: number | undefined;
  /** Where `foreign-next` and `redirect` point. */
  foreignOrigin: string;
  /** The IdP whose active access tokens are accepted; may be set after start (the proxy's config needs `url` first). */
  idp: DevIdp | undefined;
}

export interface TestGraphOptions {
  /** The IdP whose access tokens are accepted (or set `graph.idp` later). Without one, `acceptToken` decides. */
  idp?: DevIdp;
  /** Without an IdP: the account a token stands for (undefined: refused with 401). */
  acceptToken?: (token: string) => string | undefined;
  groups?: Record<string, string[]>;
  pageSize?: number;
  mode?: GraphMode;
  foreignOrigin?: string;
}

export async function startTestGraph(t: CleanupScope, opts: TestGraphOptions = {}): Promise<TestGraph> {
  const held: ServerResponse[] = [];
  const graph: TestGraph = {
    url: '',
    requests: [],
    groups: new Map(Object.entries(opts.groups ?? {})),
    mode: opts.mode ?? 'ok',
    pageSize: opts.pageSize,
    foreignOrigin: opts.foreignOrigin ?? 'http://127.0.0.1:9',
    idp: opts.idp,
  };

  const accountOf = async (req: IncomingMessage): Promise<string | undefined> => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!m) return undefined;
    if (!graph.idp) return opts.acceptToken?.(m[1]!);
    const token = await graph.idp.provider.AccessToken.find(m[1]!);
    return token && !token.isExpired ? String(token.accountId) : undefined;
  };

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    const url = new URL(req.url ?? '/', graph.url);
    const account = await accountOf(req);
    graph.requests.push({ method: req.method ?? '', path: url.pathname + url.search, account, body });
    const first = req.method === 'POST' && url.pathname === '/v1.0/me/getMemberObjects';
    const next = req.method === 'GET' && url.pathname === '/v1.0/me/getMemberObjects/page';
    if (!first && !next) return send(res, 404, { error: { code: 'Request_ResourceNotFound', message: 'no such resource' } });
    if (account === undefined) return send(res, 401, { error: { code: 'InvalidAuthenticationToken', message: 'Access token validation failure. Invalid audience.' } });
    const mode = graph.mode;
    if (typeof mode === 'number') return send(res, mode, { error: { code: mode === 403 ? 'Authorization_RequestDenied' : 'generalException', message: 'refused by the test' } });
    if (mode === 'slow') { held.push(res); return; }
    if (mode === 'garbage') { res.writeHead(200, { 'content-type': 'application/json' }).end('{"value": [this is not json'); return; }
    if (mode === 'wrong-shape') return send(res, 200, { groups: ['a'] });
    if (mode === 'redirect') { res.writeHead(302, { location: `${graph.foreignOrigin}/v1.0/me/getMemberObjects` }).end(); return; }
    if (mode === 'huge') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"value":[');
      const chunk = `${'"00000000-0000-0000-0000-000000000000",'.repeat(1000)}`;
      // About 4 MB, written as the client reads it; the client is expected to stop reading first.
      for (let i = 0; i < 100 && !res.destroyed; i++) {
        if (!res.write(chunk)) {
          await new Promise<void>((r) => {
            const done = () => { res.off('drain', done); res.off('close', done); r(); };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
      if (!res.destroyed) res.end('"x"]}');
      return;
    }
    const all = graph.groups.get(account) ?? [];
    const skip = next ? Number(url.searchParams.get('skip') ?? '0') : 0;
    const size = graph.pageSize ?? all.length;
    const value = all.slice(skip, skip + size);
    const answer: Record<string, unknown> = { '@odata.context': `${graph.url}/v1.0/$metadata#Collection(Edm.String)`, value };
    if (mode === 'foreign-next') answer['@odata.nextLink'] = `${graph.foreignOrigin}/v1.0/me/getMemberObjects/page?skip=${skip + size}`;
    else if (skip + size < all.length) answer['@odata.nextLink'] = `${graph.url}/v1.0/me/getMemberObjects/page?skip=${skip + size}`;
    send(res, 200, answer);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => { if (!res.headersSent) res.writeHead(500).end(); else res.destroy(); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  graph.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(() => new Promise<void>((resolve) => {
    for (const res of held) res.destroy();
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  return graph;
}

/** A plain loopback server that only counts what reaches it: the "elsewhere" a forged URL points at. */
export async function startTrap(t: CleanupScope): Promise<{ url: string; requests: Array<{ method: string; path: string; authorization: string | undefined }> }> {
  const requests: Array<{ method: string; path: string; authorization: string | undefined }> = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization });
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"value":["trap-group"]}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}
