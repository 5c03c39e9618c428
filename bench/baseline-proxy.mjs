// Bench child process (opt-in scenario `baseline`): the bare stack Portcullis is built on — fastify 5 +
// @fastify/reply-from over the same undici pool settings, no logging, no cookies, no auth, no metrics —
// to tell the stack's cost apart from Portcullis's own. Prints `READY <url>` when listening.
//   node bench/baseline-proxy.mjs PORT UPSTREAM_URL   (plain JavaScript: no loader, like dist/)
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const port = Number(process.argv[2] ?? 0);
const upstream = process.argv[3] ?? 'http://127.0.0.1:9100';
const app = Fastify({ logger: false });
await app.register(replyFrom, {
  base: upstream,
  disableRequestLogging: true,
  undici: { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 },
});
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
app.all('/*', (request, reply) => reply.from(request.url));
await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`READY http://127.0.0.1:${port}\n`);

const stop = () => { void app.close().finally(() => process.exit(0)); };
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
