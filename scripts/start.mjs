#!/usr/bin/env node
// `npm start`: install, build, then run the hub on embedded Postgres (data in ~/.graft by default)
// and tell the user where it is and where the admin token lives.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ensurePnpm, installAndBuild, pnpmOnPath, ROOT, step } from './lib/workspace.mjs';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Usage: npm start

Installs dependencies, builds the workspace and starts the Graft hub in the foreground on its
embedded defaults (Postgres under GRAFT_DATA_DIR, default ~/.graft; http://127.0.0.1:8080).
Every GRAFT_* variable of the hub applies (see docs/configuration.md). Stop with Ctrl-C.
Set GRAFT_SKIP_BUILD=1 to skip install and build.
`);
  process.exit(0);
}

// Asked before the bootstrap below may put its own pnpm on this process's PATH: the hint is for the user's shell.
const graft = pnpmOnPath() ? 'pnpm graft' : 'npm run graft --';
try {
  if (process.env.GRAFT_SKIP_BUILD !== '1') installAndBuild(ensurePnpm());
} catch (err) {
  process.stderr.write(`npm start: ${err.message}\n`);
  process.exit(err.exitCode ?? 1);
}

const dataDir = process.env.GRAFT_DATA_DIR ?? join(homedir(), '.graft');
step(`starting the hub (data dir ${dataDir})`);
const hub = spawn(process.execPath, [join(ROOT, 'apps/hub/dist/main.js')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
let buffered = '';
hub.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffered += chunk.toString('utf8');
  let nl = buffered.indexOf('\n');
  while (nl >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    nl = buffered.indexOf('\n');
    if (!line.includes('"hub.listening"')) continue;
    const { url } = JSON.parse(line);
    const tokenFile = join(dataDir, 'admin-token');
    const tokenHint = process.env.GRAFT_ADMIN_TOKEN
      ? 'the admin token is the GRAFT_ADMIN_TOKEN you set'
      : existsSync(tokenFile)
        ? `the admin API key is in ${tokenFile}`
        : 'the admin API key was printed on first start';
    process.stderr.write(`
  \x1b[32mGraft hub is running at ${url}\x1b[0m
  ${tokenHint}

  Next, in another terminal:
    ${graft} login --hub ${url} --token "$(cat ${tokenFile})"
    ${graft} projects register demo
    ${graft} --help

`);
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => hub.kill(sig));
hub.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
