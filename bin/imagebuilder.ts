#!/usr/bin/env -S npx tsx
// `imagebuilder`: the command-line client of the API (README, "The CLI"). Run it as
// `npx tsx bin/imagebuilder.ts …`, or `imagebuilder …` once the package's bin is linked.
import { run } from './cli/main.js';

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
});
