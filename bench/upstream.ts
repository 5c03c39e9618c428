// Bench child process: the echo upstream (dev/devidp/upstream.ts) on 127.0.0.1:PORT, its own process so
// it never shares an event loop with the load generator. Prints `READY <url>` when listening.
//   node --import tsx bench/upstream.ts PORT
import { startEchoUpstream } from '../dev/devidp/upstream.js';

const port = Number(process.argv[2] ?? 0);
const upstream = await startEchoUpstream({ host: '127.0.0.1', port });
// The echo keeps every request for tests to inspect; millions of them would only measure the heap.
setInterval(() => { upstream.requests.length = 0; }, 500);
process.stdout.write(`READY ${upstream.url}\n`);

const stop = () => { void upstream.close().finally(() => process.exit(0)); };
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
