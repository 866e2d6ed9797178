#!/usr/bin/env node
// `npm start`: install, build, then run the hub on embedded Postgres (data in ~/.graft by default)
// and tell the user where it is and where the admin token lives.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ensurePnpm, installAndBuild, pnpmOnPath, ROOT, step } from './lib/workspace.mjs';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Usage: npm start

Installs dependencies, builds the workspace and starts, in the foreground, the Graft hub on its
embedded defaults (Postgres under GRAFT_DATA_DIR, default ~/.graft; http://127.0.0.1:8080) and one
local broker (a separate process, data in GRAFT_DATA_DIR/broker, local API on 127.0.0.1:9800) that
registers itself with the hub on first start, so agents can run right away.
Every GRAFT_* variable of the hub and the broker applies (see docs/configuration.md).
Set GRAFT_SKIP_BUILD=1 to skip install and build, GRAFT_NO_BROKER=1 to start the hub only.
Stop with Ctrl-C.
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
const brokerDataDir = process.env.GRAFT_BROKER_DATA_DIR ?? join(dataDir, 'broker');
const children = new Set();
let stopping = false;

/** Spawns a service with its JSON log on our stdout; calls onLine for each line. */
function service(name, script, env, onLine) {
  const child = spawn(process.execPath, [join(ROOT, script)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env });
  children.add(child);
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    buffered += chunk.toString('utf8');
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf('\n');
      onLine(line);
    }
  });
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (!stopping) {
      process.stderr.write(`npm start: the ${name} exited (${signal ?? `code ${code}`}); stopping\n`);
      stop(code === 0 ? 1 : (code ?? 1));
    } else if (children.size === 0) process.exit(0);
  });
  return child;
}

function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  if (children.size === 0) process.exit(code);
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 20_000).unref();
}

step(`starting the hub (data dir ${dataDir})`);
service('hub', 'apps/hub/dist/main.js', process.env, (line) => {
  if (!line.includes('"hub.listening"')) return;
  const { url } = JSON.parse(line);
  const tokenFile = join(dataDir, 'admin-token');
  const adminToken = process.env.GRAFT_ADMIN_TOKEN ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
  const tokenHint = process.env.GRAFT_ADMIN_TOKEN
    ? 'the admin token is the GRAFT_ADMIN_TOKEN you set'
    : existsSync(tokenFile)
      ? `the admin API key is in ${tokenFile}`
      : 'the admin API key was printed on first start';
  const login = process.env.GRAFT_ADMIN_TOKEN ? '"$GRAFT_ADMIN_TOKEN"' : `"$(cat ${tokenFile})"`;
  process.stderr.write(`
  \x1b[32mGraft hub is running at ${url}\x1b[0m
  ${tokenHint}

  Next, in another terminal:
    ${graft} login --hub ${url} --token ${login}
    ${graft} projects register demo
    ${graft} templates create hello --project demo --harness command --command "sh -c 'echo hello from \\$GRAFT_AGENT_ID; sleep 30'"
    ${graft} agents create --project demo --name first --template hello
    ${graft} agents ls
    ${graft} --help

`);
  if (process.env.GRAFT_NO_BROKER === '1') return;
  const hasCredentials = existsSync(join(brokerDataDir, 'credentials.json'));
  if (!hasCredentials && !adminToken) {
    process.stderr.write(`npm start: no broker credentials in ${brokerDataDir} and no admin key to register one; run graft broker register/join, or set GRAFT_ADMIN_TOKEN\n`);
    return;
  }
  step(hasCredentials ? `starting the local broker (data dir ${brokerDataDir})` : `registering and starting a local broker (data dir ${brokerDataDir})`);
  service(
    'broker',
    'apps/broker/dist/main.js',
    {
      ...process.env,
      GRAFT_BROKER_DATA_DIR: brokerDataDir,
      // Used only when the data dir holds no credentials yet: the broker registers and joins itself.
      ...(hasCredentials ? {} : { GRAFT_BROKER_BOOTSTRAP_HUB_URL: url, GRAFT_BROKER_BOOTSTRAP_TOKEN: adminToken }),
    },
    (l) => {
      if (l.includes('"tunnel.connected"')) process.stderr.write(`\n  \x1b[32mLocal broker connected to ${url}\x1b[0m (runs agents as local processes)\n\n`);
    },
  );
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => stop(0));
