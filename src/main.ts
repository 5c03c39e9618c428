// Command line: `portcullis [run] --config FILE`, `check`, `explain`, `doctor`, `demo`, `sessions`.
import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { formatIssues, loadConfigFile } from './config/index.js';
import { explain } from './cli/explain.js';

const USAGE = `usage:
  portcullis [run] [--config FILE]        run the proxy (default config: $PORTCULLIS_CONFIG or config/portcullis.yaml)
  portcullis check [--config FILE]        validate the config; exit 0 when OK, 1 with every problem
  portcullis explain [--config FILE] --url URL [--method M] [--claims FILE.json] [--provider ID]
                                          which route, which rule, allow or deny (exit 0 allow, 3 deny, 1 error)
  portcullis doctor [--config FILE] [--json]
                                          live checks: IdP, keys, client secret, redirect URI, clock, Redis, upstreams,
                                          certificates (exit 0 all good, 1 a failure, 2 warnings only)
  portcullis sessions list --sub SUB | revoke (--sub SUB | --sid SID) [--url URL] [--token-file FILE] [--json]
                                          list or end a user's sessions on a running Portcullis (admin listener; exit 0/1)
  portcullis demo                         (from a source checkout: npm run demo) proxy + dev IdP + echo upstream`;

export async function main(argv: string[]): Promise<number> {
  // Its own flags (--sub, --sid, --token-file, --json): parsed by the subcommand.
  if (argv[0] === 'sessions') return (await import('./cli/sessions.js')).sessionsCommand(argv.slice(1));
  const command = argv[0] && !argv[0].startsWith('-') ? argv[0] : 'run';
  const rest = command === argv[0] ? argv.slice(1) : argv;
  let values: { config?: string; url?: string; method?: string; claims?: string; provider?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        url: { type: 'string' },
        method: { type: 'string' },
        claims: { type: 'string' },
        provider: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 1;
  }
  if (values.help) { console.log(USAGE); return 0; }
  const configFile = values.config ?? process.env.PORTCULLIS_CONFIG ?? 'config/portcullis.yaml';

  switch (command) {
    case 'demo': {
      // The demo (embedded dev IdP + echo upstream) is development tooling under dev/, not part of
      // the build or the image: it needs the devDependencies of a source checkout.
      console.error('portcullis demo runs from a clone of the source tree: npm install && npm run demo');
      return 2;
    }
    case 'check': {
      const r = loadConfigFile(configFile);
      if (!r.ok) {
        console.error(`${configFile}: ${r.issues.length} problem${r.issues.length === 1 ? '' : 's'}\n${formatIssues(r.issues)}`);
        return 1;
      }
      console.log(`config OK: ${r.config.routes.length} route${r.config.routes.length === 1 ? '' : 's'}`);
      return 0;
    }
    case 'explain': {
      if (!values.url) { console.error(`explain needs --url\n\n${USAGE}`); return 1; }
      const r = loadConfigFile(configFile);
      if (!r.ok) { console.error(`${configFile}:\n${formatIssues(r.issues)}`); return 1; }
      let claims: Record<string, unknown> | undefined;
      if (values.claims) {
        try {
          const parsed: unknown = JSON.parse(readFileSync(values.claims, 'utf8'));
          if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('must be a JSON object of claims');
          claims = parsed as Record<string, unknown>;
        } catch (err) {
          console.error(`--claims ${values.claims}: ${(err as Error).message}`);
          return 1;
        }
      }
      const out = explain(r.config, values.url, values.method ?? 'GET', claims, values.provider);
      (out.exitCode === 1 ? console.error : console.log)(out.text);
      return out.exitCode;
    }
    case 'doctor':
      return (await import('./cli/doctor.js')).doctorCommand(configFile, { json: values.json === true });
    case 'run': {
      const r = loadConfigFile(configFile);
      if (!r.ok) {
        console.error(`${configFile}: ${r.issues.length} problem${r.issues.length === 1 ? '' : 's'}\n${formatIssues(r.issues)}`);
        return 1;
      }
      // One process, or a node:cluster primary with `workers` workers (cluster.ts).
      const { run } = await import('./cluster.js');
      try {
        await run(configFile, r.config);
      } catch (err) {
        console.error(`portcullis: cannot start: ${(err as Error).message ?? err}`);
        process.exit(1);
      }
      return 0;
    }
    default:
      console.error(`unknown command "${command}"\n\n${USAGE}`);
      return 1;
  }
}

// Run directly (`node --import tsx src/main.ts …`, as the tests and cluster workers do); the
// installed command goes through bin/portcullis.mjs instead.
const entry = (() => { try { return pathToFileURL(realpathSync(process.argv[1] ?? '')).href; } catch { return undefined; } })();
if (import.meta.url === entry) process.exitCode = await main(process.argv.slice(2));
