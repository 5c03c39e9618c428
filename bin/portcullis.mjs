#!/usr/bin/env node
// The `portcullis` command. Runs the compiled build (npm install / npm run build creates dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist/main.js', import.meta.url));
if (!existsSync(dist)) {
  console.error('portcullis: dist/ is missing; run `npm run build` first.');
  process.exit(1);
}
const { main } = await import('../dist/main.js');
process.exitCode = await main(process.argv.slice(2));
