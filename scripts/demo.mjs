#!/usr/bin/env node
// `npm run demo`: the whole stack on embedded defaults (in a throwaway data dir), three `script`
// agents reporting activities, one asking a question the demo answers with a message.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePnpm, installAndBuild, ROOT, step } from './lib/workspace.mjs';

const HELP = `Usage: npm run demo [-- --keep]

Starts a Graft hub (embedded Postgres) and a local broker in a throwaway data dir, runs three
\`script\` agents (examples/demo-agent.mjs) that report thinking, executing and completed; one asks
a question (waiting_for_input) and the demo answers it with a message. A live table shows each
agent's phase, activity and detail; the final states are printed at the end, then everything stops.

  --keep   keep the data dir (hub and broker logs are in it) instead of deleting it
Set GRAFT_SKIP_BUILD=1 to skip install and build; DEMO_STEP_MS (default 1200) paces the agents.
`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}
const keep = process.argv.includes('--keep');
const unknown = process.argv.slice(2).filter((a) => a !== '--keep');
if (unknown.length > 0) {
  process.stderr.write(`npm run demo: unknown argument ${unknown[0]}\n\n${HELP}`);
  process.exit(2);
}

try {
  if (process.env.GRAFT_SKIP_BUILD !== '1') installAndBuild(ensurePnpm());
} catch (err) {
  process.stderr.write(`npm run demo: ${err.message}\n`);
  process.exit(err.exitCode ?? 1);
}
const { GraftClient } = await import(join(ROOT, 'packages/client/dist/index.js'));

const dataDir = mkdtempSync(join(tmpdir(), 'graft-demo-'));
const adminToken = randomBytes(32).toString('hex');
const children = [];
const TIMEOUT_MS = 120_000;

/** Starts a service with its JSON log in the data dir; resolves the first log event named `event`. */
function service(name, script, env, event) {
  const log = join(dataDir, `${name}.log`);
  const logFd = openSync(log, 'a');
  const child = spawn(process.execPath, [join(ROOT, script)], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', logFd] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (chunk) => {
      writeSync(logFd, chunk);
      buffered += chunk.toString('utf8');
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.includes(`"${event}"`)) resolve(JSON.parse(line));
      }
    });
    child.once('exit', (code, signal) => reject(new Error(`the ${name} exited (${signal ?? `code ${code}`}) before it was ready; see ${log}`)));
  });
}

async function stopAll() {
  await Promise.all(
    children.map(
      (c) =>
        new Promise((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', resolve);
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 15_000).unref();
        }),
    ),
  );
  if (keep) process.stderr.write(`data dir kept: ${dataDir}\n`);
  else rmSync(dataDir, { recursive: true, force: true });
}

const COLUMNS = ['agent', 'phase', 'activity', 'detail'];
function table(agents) {
  const rows = agents.map((a) => [a.name, a.phase, a.activity ?? '-', (a.detail ?? '').slice(0, 60)]);
  const widths = COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(COLUMNS.map((c) => c.toUpperCase())), ...rows.map(line)].join('\n');
}

let shownLines = 0;
let lastText = '';
function show(agents) {
  const text = table(agents);
  if (text === lastText) return;
  lastText = text;
  if (process.stdout.isTTY) {
    // Redraw in place: up over the previous table, clear to the end of the screen.
    if (shownLines > 0) process.stdout.write(`\x1b[${shownLines}A\x1b[J`);
    process.stdout.write(`${text}\n`);
    shownLines = text.split('\n').length;
  } else {
    process.stdout.write(`${text}\n\n`);
  }
}

let code = 0;
try {
  step(`starting the hub (data dir ${dataDir})`);
  const hub = await service('hub', 'apps/hub/dist/main.js', { GRAFT_DATA_DIR: dataDir, GRAFT_HUB_PORT: '0', GRAFT_ADMIN_TOKEN: adminToken, GRAFT_LOG_LEVEL: 'info' }, 'hub.listening');
  step(`hub at ${hub.url}; starting a local broker`);
  await service(
    'broker',
    'apps/broker/dist/main.js',
    {
      GRAFT_BROKER_DATA_DIR: join(dataDir, 'broker'),
      GRAFT_BROKER_PORT: '0',
      GRAFT_BROKER_NAME: 'demo-broker',
      GRAFT_BROKER_BOOTSTRAP_HUB_URL: hub.url,
      GRAFT_BROKER_BOOTSTRAP_TOKEN: adminToken,
      GRAFT_BROKER_STOP_GRACE_MS: '2000',
    },
    'tunnel.connected',
  );
  const admin = new GraftClient({ baseUrl: hub.url, token: adminToken });
  const project = (await admin.registerProject({ name: 'demo' })).project;
  await admin.createTemplate({ name: 'demo-agent', projectId: project.id, harness: 'script', command: [join(ROOT, 'examples', 'demo-agent.mjs')], env: { DEMO_STEP_MS: process.env.DEMO_STEP_MS ?? '1200' } });
  step('running three script agents; the asker gets its answer as a message\n');
  const tasks = [
    ['planner', 'planner'],
    ['builder', 'builder'],
    ['asker', 'asker:ask'],
  ];
  const ids = [];
  for (const [name, task] of tasks) ids.push((await admin.createAgent({ projectId: project.id, name, template: 'demo-agent', task })).id);

  const deadline = Date.now() + TIMEOUT_MS;
  let answered = false;
  let agents = [];
  for (;;) {
    agents = await Promise.all(ids.map((id) => admin.getAgent(id)));
    show(agents);
    const waiting = agents.find((a) => a.activity === 'waiting_for_input');
    if (waiting && !answered) {
      answered = true;
      await admin.sendMessage(waiting.id, { body: 'main' });
    }
    if (agents.every((a) => a.activity === 'completed')) break;
    const failed = agents.find((a) => a.phase === 'error' || a.phase === 'stopped');
    if (failed) throw new Error(`agent ${failed.name} ended early: ${failed.phase} ${failed.detail ?? ''}`);
    if (Date.now() > deadline) throw new Error(`the agents did not finish within ${TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const messages = await admin.listMessages(ids[2]);
  process.stdout.write('\nFinal states:\n');
  process.stdout.write(`${table(agents)}\n`);
  process.stdout.write(`\nMessages to asker: ${messages.items.map((m) => `${JSON.stringify(m.body)} (${m.state})`).join(', ')}\n`);
  // Agents outlive their broker: remove them before it stops.
  for (const id of ids) await admin.deleteAgent(id);
  while ((await admin.listAgents({ projectId: project.id })).items.length > 0) await new Promise((r) => setTimeout(r, 200));
} catch (err) {
  code = 1;
  process.stderr.write(`\nnpm run demo: ${err.message}\n`);
} finally {
  step('stopping the broker and the hub');
  await stopAll();
}
process.exit(code);
