#!/usr/bin/env node
// `pnpm bench:dispatch`: measures hub ↔ broker dispatch with real processes on this machine:
//   latency  POST /agents → the hub has phase `running`, one agent at a time, on a real broker with
//            the process runtime; split into the broker's runtime start and hub+tunnel overhead
//   rate     agents placed and started per second on one broker, with a fixed number in flight
//   tunnels  1,000 simulated brokers (SimBroker from @graft/testkit) holding tunnels with
//            heartbeats against one hub: the hub's RSS and CPU
// Everything it starts (Postgres, hubs, the broker, the agents' process groups, temp dirs) is
// stopped by PID on exit, on Ctrl-C and on errors.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backgroundCpu, fmt, gitState, hubApi, installExitHandlers, keyValues, killPids, killSims, listenForRunning, machineBusyMs, machineInfo, machineStealMs, numberOption, ownCpuMs, parseBenchArgs, parseOnly, parseOptionsOrExit, pool, poolWithProgress, printVerdict, processCpuMs, progress, reportBase, reportMachine, requireBuiltWorkspace, requireInfoLogLevel, runCleanupSteps, sleep, stats, treeCpuMs, UsageError, writeResults } from './lib/bench-common.mjs';

const PHASE_IDS = ['latency', 'rate', 'tunnels'];

// --- options -------------------------------------------------------------------------------------

const HELP = `Usage: pnpm bench:dispatch [options]
       node scripts/bench-dispatch.mjs [options]

Benchmarks hub ↔ broker dispatch with real processes, all in one run on this machine:
  latency   one hub, one real broker (process runtime): --agents agents created one at a time
            (POST /api/v1/agents, then wait until the hub has phase running); per agent the
            broker's runtime start (prepare + start, from its agent.started log) and the rest,
            hub + tunnel overhead. A Postgres trigger on the bench's database sends a NOTIFY when
            an agent's phase becomes running; the bench LISTENs, so nothing is polled.
  rate      the same hub and broker: --rate-agents agents with --concurrency in flight (POSTed,
            not yet running); agents/s from the first POST to the last agent running.
  tunnels   a fresh hub: --brokers brokers registered and joined over the API, then as many
            SimBroker tunnels (in this process) with heartbeats at the hub's default 5 s, held for
            --hold-secs; the hub's RSS and CPU sampled every second from /proc; every broker must
            stay online (GET /api/v1/brokers).
Prints progress to stderr, a Markdown summary to stdout, and writes
bench-results/dispatch-<timestamp>.json. Exits 0 even when a target is missed (it is a
measurement); FAIL is printed in the table. Needs a built workspace: run \`pnpm build\` first.

Options:
  --agents <n>               agents in the latency phase (default 200)
  --warmup <n>               agents created and discarded before the latency phase (default 10)
  --rate-agents <n>          agents in the rate phase (default 500)
  --concurrency <n>          agents in flight in the rate phase (default 16)
  --brokers <n>              simulated brokers in the tunnels phase (default 1000)
  --hold-secs <s>            how long the tunnels are held (default 30)
  --setup-concurrency <n>    parallel broker registrations (default 16)
  --connect-concurrency <n>  parallel tunnel dials (default 50)
  --agent-command <cmd>      the agents' command, split on spaces (default "sleep 600")
  --hub-env K=V              extra environment for the hub processes (repeatable)
  --broker-env K=V           extra environment for the broker process (repeatable)
  --only <ids>               comma-separated phases to run: ${PHASE_IDS.join(',')}
  --out <dir>                where to write the JSON results (default bench-results/)
  -h, --help                 this text

Uses a throwaway embedded Postgres, or GRAFT_TEST_DATABASE_URL (a superuser URL) when set.
`;

function parseOptions() {
  const values = parseBenchArgs(
    {
      agents: { type: 'string', default: '200' },
      warmup: { type: 'string', default: '10' },
      'rate-agents': { type: 'string', default: '500' },
      concurrency: { type: 'string', default: '16' },
      brokers: { type: 'string', default: '1000' },
      'hold-secs': { type: 'string', default: '30' },
      'setup-concurrency': { type: 'string', default: '16' },
      'connect-concurrency': { type: 'string', default: '50' },
      'agent-command': { type: 'string', default: 'sleep 600' },
      'hub-env': { type: 'string', multiple: true, default: [] },
      'broker-env': { type: 'string', multiple: true, default: [] },
      only: { type: 'string' },
    },
    HELP,
  );
  const int = (name, min) => numberOption(values, name, min, { integer: true });
  const only = parseOnly(values.only, PHASE_IDS, 'phase');
  const hubEnv = keyValues(values['hub-env'], '--hub-env');
  const brokerEnv = keyValues(values['broker-env'], '--broker-env');
  for (const [who, env] of [
    ['--hub-env', hubEnv],
    ['--broker-env', brokerEnv],
  ]) {
    // The fixtures learn ports from info-level `*.listening` lines, and the split needs `agent.started`.
    requireInfoLogLevel(env, who);
  }
  const agentCommand = values['agent-command'].split(' ').filter((s) => s !== '');
  if (agentCommand.length === 0) throw new UsageError('--agent-command must not be empty');
  return {
    agents: int('agents', 1),
    warmup: int('warmup', 0),
    rateAgents: int('rate-agents', 1),
    concurrency: int('concurrency', 1),
    brokers: int('brokers', 1),
    holdSecs: int('hold-secs', 1),
    setupConcurrency: int('setup-concurrency', 1),
    connectConcurrency: int('connect-concurrency', 1),
    agentCommand,
    hubEnv,
    brokerEnv,
    only: new Set(only),
    outDir: values.out,
  };
}

// --- helpers -------------------------------------------------------------------------------------

const api = hubApi();

/** Wall-clock milliseconds with sub-millisecond resolution, comparable with other processes' log `ts`. */
function wallNow() {
  return performance.timeOrigin + performance.now();
}

// --- /proc accounting (Linux; elsewhere the CPU and memory figures stay empty) -------------------

/** VmRSS and VmHWM (peak RSS) of a process, in MiB. */
function memoryMiB(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? Number.NaN);
    return { rss: kib('VmRSS') / 1024, hwm: kib('VmHWM') / 1024 };
  } catch {
    return { rss: Number.NaN, hwm: Number.NaN };
  }
}

const CPU_KEYS = ['hub', 'broker', 'brokerTree', 'postgres', 'bench', 'machine', 'steal', 'others'];

/**
 * CPU ms of the processes that do the work, for "CPU per agent" figures. `brokerTree` adds the
 * agents' processes the broker reaped or still parents; `others` is the rest of the machine: kernel
 * threads (loopback networking, writeback), the agents' short-lived shells whose few ms fall under
 * /proc's 10 ms tick, and anything else running on the box.
 */
function cpuSnapshot(pids) {
  const snap = {
    at: performance.now(),
    hub: processCpuMs(pids.hub),
    broker: processCpuMs(pids.broker),
    brokerTree: treeCpuMs(pids.broker),
    postgres: treeCpuMs(resources.postgres?.pid),
    bench: ownCpuMs(),
    machine: machineBusyMs(),
    steal: machineStealMs(),
  };
  snap.others = snap.machine - (snap.hub + snap.brokerTree + snap.postgres + snap.bench);
  return snap;
}

function cpuDelta(a, b, per) {
  const out = {};
  for (const k of CPU_KEYS) out[k] = (b[k] - a[k]) / per;
  return out;
}

// --- lifecycle: everything started here is stopped on exit, SIGINT, SIGTERM and errors -----------

const resources = {
  postgres: undefined, // TestPostgres
  fixtures: [], // HubFixture[]
  broker: undefined, // BrokerProcess
  brokerDataDir: undefined, // temp dir of the broker
  listener: undefined, // pg.Client LISTENing for running agents
  sims: [], // SimBroker[]
};
let cleaning;

/** Process groups of agents the broker started, from the process runtime's pid files; only live wrappers. */
function agentGroups() {
  const dir = resources.brokerDataDir && join(resources.brokerDataDir, 'agents');
  if (!dir || !existsSync(dir)) return [];
  const pids = [];
  // Agent directories are <data dir>/agents/<runtime>/<agent id>/.
  const agentDirs = readdirSync(dir).flatMap((runtime) => {
    try {
      return readdirSync(join(dir, runtime)).map((id) => join(dir, runtime, id));
    } catch {
      return [];
    }
  });
  for (const agentDir of agentDirs) {
    try {
      const pid = Number(readFileSync(join(agentDir, 'pid'), 'utf8').trim());
      // The wrapper runs as `sh -c <wrapper> graft-agent-wrapper <dir> ...`: never signal a reused pid.
      if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('graft-agent-wrapper')) pids.push(pid);
    } catch {
      // no pid file, or the run is gone
    }
  }
  return pids;
}

function killAgentGroups(signal) {
  let n = 0;
  for (const pid of agentGroups()) {
    try {
      process.kill(-pid, signal);
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}

function killChildrenNow(signal) {
  // The synchronous part of cleanup: it must also work from the 'exit' event, where nothing async runs.
  killSims(resources.sims);
  killPids([resources.broker?.pid, ...resources.fixtures.map((f) => f.hub.pid)], signal);
}

function cleanup() {
  cleaning ??= (async () => {
    killSims(resources.sims);
    resources.sims = [];
    await runCleanupSteps([
      ['notification listener', async () => resources.listener?.end()],
      ['broker', async () => resources.broker?.stop('SIGTERM', 5_000)],
      [
        'leftover agents',
        async () => {
          const n = killAgentGroups('SIGKILL');
          if (n > 0) progress(`cleanup: killed ${n} leftover agent process group(s)`);
        },
      ],
      ['broker data dir', async () => resources.brokerDataDir && rmSync(resources.brokerDataDir, { recursive: true, force: true })],
      ...resources.fixtures.map((f, i) => [`hub fixture ${i + 1}`, async () => f.stop()]),
      ['postgres', async () => resources.postgres?.stop()],
    ]);
    resources.listener = undefined;
    resources.broker = undefined;
    resources.brokerDataDir = undefined;
    resources.fixtures = [];
    resources.postgres = undefined;
  })();
  return cleaning;
}

// --- observing `running` -------------------------------------------------------------------------

/** The broker's `agent.started` events (the supervisor's, which carry `ms`), by agent id. */
function brokerStarts(broker) {
  const out = new Map();
  for (const l of broker.logs) {
    if (l.event === 'agent.started' && typeof l.ms === 'number' && typeof l.agentId === 'string') out.set(l.agentId, { ms: l.ms, tsMs: Date.parse(String(l.ts)) });
  }
  return out;
}

// --- phases --------------------------------------------------------------------------------------

async function setUpDispatch(pg, settings, testkit) {
  const { startHubFixture, registerAndJoinBroker, startBrokerProcess } = testkit;
  progress('dispatch: starting a hub on a fresh database');
  const fixture = await startHubFixture(resources.postgres.adminUrl, { env: { GRAFT_LOG_LEVEL: 'info', ...settings.hubEnv } });
  resources.fixtures.push(fixture);
  const { hub, database } = fixture;
  progress(`dispatch: hub listening on ${hub.url} (pid ${hub.pid})`);
  const listener = new pg.Client({ connectionString: database.url });
  await listener.connect();
  resources.listener = listener;
  const watch = await listenForRunning(listener);

  const maxAgents = Math.max(settings.agents + settings.warmup, settings.rateAgents) + 50;
  const joined = await registerAndJoinBroker(hub.url, hub.adminToken, { name: 'bench-broker', autoProvide: true }, { maxAgents, runtimes: ['process'] });
  resources.brokerDataDir = mkdtempSync(join(tmpdir(), 'graft-bench-broker-'));
  const broker = await startBrokerProcess({
    dataDir: resources.brokerDataDir,
    credentials: joined,
    env: { GRAFT_BROKER_MAX_AGENTS: String(maxAgents), GRAFT_LOG_LEVEL: 'info', ...settings.brokerEnv },
  });
  resources.broker = broker;
  await broker.waitForLog((l) => l.event === 'tunnel.connected', 15_000);
  progress(`dispatch: broker ${joined.brokerId} (pid ${broker.pid}, max ${maxAgents} agents) connected`);

  const { project } = await api(hub.url, hub.adminToken, 'POST', '/api/v1/projects/register', { name: 'bench-dispatch' });
  const template = await api(hub.url, hub.adminToken, 'POST', '/api/v1/templates', {
    name: 'bench-process',
    projectId: project.id,
    harness: 'command',
    command: settings.agentCommand,
    requirements: { runtime: 'process' },
  });
  return { hub, database, broker, watch, project, template, brokerId: joined.brokerId, maxAgents };
}

/** Creates one agent and waits until the hub has it running. */
async function createAndWait(ctx, name) {
  const { hub, watch, project, template } = ctx;
  const sent = performance.now();
  const sentWall = wallNow();
  const agent = await api(hub.url, hub.adminToken, 'POST', '/api/v1/agents', { projectId: project.id, name, template: template.name });
  const answered = performance.now();
  if (agent.brokerId !== ctx.brokerId) throw new Error(`agent ${name} was not placed on the bench broker at creation (brokerId ${agent.brokerId}, pendingReason ${agent.pendingReason})`);
  const running = await watch.running(agent.id);
  return { id: agent.id, sent, sentWall, postMs: answered - sent, e2eMs: running - sent, runningWall: sentWall + (running - sent) };
}

/** Joins per-agent timings with the broker's `agent.started` events. */
async function withRuntimeStart(broker, samples) {
  // The broker logs `agent.started` before it reports running, but its stdout may still be in the pipe.
  let starts = brokerStarts(broker);
  for (const s of samples) {
    if (starts.has(s.id)) continue;
    await broker.waitForLog((l) => l.event === 'agent.started' && l.agentId === s.id && typeof l.ms === 'number', 10_000).catch(() => {});
    starts = brokerStarts(broker);
  }
  for (const s of samples) {
    const st = starts.get(s.id);
    if (!st) throw new Error(`the broker logged no agent.started with ms for agent ${s.id} (is apps/broker built from this tree?)`);
    s.runtimeMs = st.ms;
    s.overheadMs = s.e2eMs - st.ms;
    // From the broker's log timestamp (1 ms resolution): before the runtime began, and after it was done.
    s.toBrokerMs = st.tsMs - st.ms - s.sentWall;
    s.fromBrokerMs = s.runningWall - st.tsMs;
  }
  return samples;
}

/** Distributions of a phase's per-agent timings (after withRuntimeStart): end to end, and its parts. */
function timingStats(samples) {
  return {
    e2eMs: stats(samples.map((s) => s.e2eMs)),
    runtimeStartMs: stats(samples.map((s) => s.runtimeMs)),
    overheadMs: stats(samples.map((s) => s.overheadMs)),
    postResponseMs: stats(samples.map((s) => s.postMs)),
    postToBrokerMs: stats(samples.map((s) => s.toBrokerMs)),
    brokerToRunningMs: stats(samples.map((s) => s.fromBrokerMs)),
  };
}

async function deleteAll(ctx, ids, label) {
  const { hub, database } = ctx;
  const started = performance.now();
  // A failed DELETE is counted, not fatal: whether the agent is gone is checked in the database below.
  const failures = [];
  await pool(ids.length, 16, (i) =>
    api(hub.url, hub.adminToken, 'DELETE', `/api/v1/agents/${ids[i]}`).catch((err) => {
      failures.push(String(err?.message ?? err));
    }),
  );
  if (failures.length > 0) progress(`${label}: ${failures.length} DELETE request(s) failed, e.g. ${failures[0]}`);
  const pg = resources.listener;
  for (;;) {
    const { rows } = await pg.query('SELECT count(*)::int AS n FROM agents');
    if (rows[0].n === 0) break;
    if (performance.now() - started > 120_000) throw new Error(`${label}: ${rows[0].n} agents still present 120 s after their deletion (database ${database.name})`);
    await sleep(200);
  }
  const ms = performance.now() - started;
  progress(`${label}: ${ids.length} agents deleted and removed from the broker in ${(ms / 1000).toFixed(1)} s`);
  return { ms, failedDeletes: failures.length, failedDeleteExamples: failures.slice(0, 3) };
}

async function latencyPhase(ctx, settings) {
  const { hub, broker } = ctx;
  const background = await backgroundCpu('latency', [hub.pid, broker.pid, resources.postgres?.pid].filter(Boolean), resources.postgres?.pid);
  progress(`latency: ${settings.warmup} warmup agents (discarded)`);
  const warm = [];
  for (let i = 0; i < settings.warmup; i++) warm.push(await createAndWait(ctx, `warm-${String(i).padStart(4, '0')}`));
  progress(`latency: ${settings.agents} agents, one at a time (POST → running, then 10 ms pause)`);
  const before = cpuSnapshot({ hub: hub.pid, broker: broker.pid });
  const samples = [];
  for (let i = 0; i < settings.agents; i++) {
    samples.push(await createAndWait(ctx, `lat-${String(i).padStart(4, '0')}`));
    if ((i + 1) % 25 === 0 || i + 1 === settings.agents) {
      const recent = stats(samples.slice(-25).map((s) => s.e2eMs));
      progress(`latency: ${i + 1}/${settings.agents} running; last 25: p50 ${fmt(recent.p50)} ms, max ${fmt(recent.max)} ms`);
    }
    // A short pause so each agent meets an idle hub and broker, as a single user's create would.
    await sleep(10);
  }
  const after = cpuSnapshot({ hub: hub.pid, broker: broker.pid });
  await withRuntimeStart(broker, samples);
  const result = {
    agents: samples.length,
    backgroundCpuPercent: background.percent,
    backgroundBusiest: background.busiest,
    warmupAgents: warm.length,
    warmupE2eMs: warm.map((w) => +w.e2eMs.toFixed(3)),
    ...timingStats(samples),
    cpuMsPerAgent: cpuDelta(before, after, samples.length),
    cpuPercent: cpuDelta(before, after, (after.at - before.at) / 100),
    samples: samples.map((s) => ({
      id: s.id,
      e2eMs: +s.e2eMs.toFixed(3),
      postMs: +s.postMs.toFixed(3),
      runtimeMs: s.runtimeMs,
      overheadMs: +s.overheadMs.toFixed(3),
      toBrokerMs: +s.toBrokerMs.toFixed(3),
      fromBrokerMs: +s.fromBrokerMs.toFixed(3),
    })),
  };
  const { rows } = await resources.listener.query("SELECT count(*)::int AS n FROM agents WHERE phase = 'running'");
  if (rows[0].n !== samples.length + warm.length) throw new Error(`latency: ${rows[0].n} agents running in the database, expected ${samples.length + warm.length}`);
  const one = await api(hub.url, hub.adminToken, 'GET', `/api/v1/agents/${samples[0].id}`);
  if (one.phase !== 'running') throw new Error(`latency: GET /agents/${samples[0].id} says ${one.phase}, the notification said running`);
  const e = result.e2eMs;
  const o = result.overheadMs;
  const r = result.runtimeStartMs;
  progress(
    `latency: end-to-end p50 ${fmt(e.p50)} / p99 ${fmt(e.p99)} ms = runtime start p50 ${fmt(r.p50)} / p99 ${fmt(r.p99)} ms + hub+tunnel overhead p50 ${fmt(o.p50)} / p99 ${fmt(o.p99)} ms`,
  );
  result.cleanup = await deleteAll(ctx, [...warm, ...samples].map((s) => s.id), 'latency cleanup');
  return result;
}

async function ratePhase(ctx, settings) {
  const { hub, broker } = ctx;
  const n = settings.rateAgents;
  const background = await backgroundCpu('rate', [hub.pid, broker.pid, resources.postgres?.pid].filter(Boolean), resources.postgres?.pid);
  progress(`rate: ${n} agents, ${settings.concurrency} in flight (POSTed and not yet running)`);
  const samples = new Array(n);
  const before = cpuSnapshot({ hub: hub.pid, broker: broker.pid });
  const started = await poolWithProgress('rate', n, settings.concurrency, async (i) => {
    samples[i] = await createAndWait(ctx, `rate-${String(i).padStart(4, '0')}`);
  });
  const lastRunning = Math.max(...samples.map((s) => s.sent + s.e2eMs));
  const after = cpuSnapshot({ hub: hub.pid, broker: broker.pid });
  const wallMs = lastRunning - started;
  await withRuntimeStart(broker, samples);
  const result = {
    agents: n,
    backgroundCpuPercent: background.percent,
    backgroundBusiest: background.busiest,
    concurrency: settings.concurrency,
    wallMs,
    agentsPerSec: n / (wallMs / 1000),
    ...timingStats(samples),
    cpuMsPerAgent: cpuDelta(before, after, n),
    cpuPercent: cpuDelta(before, after, wallMs / 100),
  };
  progress(
    `rate: ${n} agents running in ${(wallMs / 1000).toFixed(2)} s = ${fmt(result.agentsPerSec, 1)} agents/s; per agent end-to-end p50 ${fmt(result.e2eMs.p50)} / p99 ${fmt(result.e2eMs.p99)} ms`,
  );
  const { rows } = await resources.listener.query("SELECT count(*)::int AS n FROM agents WHERE phase = 'running'");
  if (rows[0].n !== n) throw new Error(`rate: ${rows[0].n} agents running in the database, expected ${n}`);
  result.cleanup = await deleteAll(ctx, samples.map((s) => s.id), 'rate cleanup');
  return result;
}

async function tunnelsPhase(settings, testkit) {
  const { startHubFixture, registerAndJoinBroker, SimBroker } = testkit;
  progress('tunnels: starting a fresh hub on a fresh database');
  const fixture = await startHubFixture(resources.postgres.adminUrl, { env: { GRAFT_LOG_LEVEL: 'info', ...settings.hubEnv } });
  resources.fixtures.push(fixture);
  const { hub } = fixture;
  progress(`tunnels: hub listening on ${hub.url} (pid ${hub.pid})`);

  // Sampled every second from here on: RSS, peak RSS and CPU of the hub process, CPU of Postgres.
  const samples = [];
  let stage = 'idle';
  const sample = () => {
    const m = memoryMiB(hub.pid);
    samples.push({
      stage,
      at: performance.now(),
      rssMiB: m.rss,
      hwmMiB: m.hwm,
      hubCpuMs: processCpuMs(hub.pid),
      postgresCpuMs: treeCpuMs(resources.postgres?.pid),
      benchCpuMs: ownCpuMs(),
      machineCpuMs: machineBusyMs(),
    });
  };
  sample();
  const sampler = setInterval(sample, 1_000);
  const n = settings.brokers;
  try {
    const background = await backgroundCpu('tunnels', [hub.pid, resources.postgres?.pid].filter(Boolean), resources.postgres?.pid);
    stage = 'register';
    progress(`tunnels: registering and joining ${n} brokers (${settings.setupConcurrency} at a time)`);
    const joined = new Array(n);
    let registered = 0;
    const regStarted = performance.now();
    await pool(n, settings.setupConcurrency, async (i) => {
      joined[i] = await registerAndJoinBroker(hub.url, hub.adminToken, { name: `sim-${String(i).padStart(5, '0')}` }, { maxAgents: 10 });
      if (++registered % 100 === 0 || registered === n) progress(`tunnels: ${registered}/${n} brokers joined`);
    });
    const registerMs = performance.now() - regStarted;
    await sleep(2_000);
    sample();
    const afterRegister = samples.at(-1);

    stage = 'connect';
    progress(`tunnels: dialling ${n} tunnels (${settings.connectConcurrency} at a time), heartbeats at the hub's interval`);
    let connected = 0;
    const connStarted = performance.now();
    await pool(n, settings.connectConcurrency, async (i) => {
      const sim = new SimBroker({ hubUrl: hub.url, brokerId: joined[i].brokerId, secretKey: joined[i].secretKey, maxAgents: 10, mode: 'silent' });
      resources.sims.push(sim);
      const outcome = await sim.connect();
      if (!outcome.ok) throw new Error(`simulated broker ${i} was refused: ${outcome.status} ${outcome.code}`);
      if (++connected % 100 === 0 || connected === n) progress(`tunnels: ${connected}/${n} tunnels welcomed`);
    });
    const connectMs = performance.now() - connStarted;
    const heartbeatIntervalMs = resources.sims[0]?.welcomes[0]?.heartbeatIntervalMs ?? Number.NaN;

    stage = 'hold';
    sample();
    const holdStart = samples.at(-1);
    progress(`tunnels: holding ${n} tunnels for ${settings.holdSecs} s (heartbeat every ${heartbeatIntervalMs} ms)`);
    const holdEndAt = performance.now() + settings.holdSecs * 1000;
    while (performance.now() < holdEndAt) {
      await sleep(Math.min(5_000, holdEndAt - performance.now()));
      const s = samples.at(-1);
      const open = resources.sims.filter((x) => x.isOpen).length;
      progress(`tunnels: hold ${((performance.now() - holdStart.at) / 1000).toFixed(0)}/${settings.holdSecs} s: hub RSS ${fmt(s.rssMiB, 1)} MiB (peak ${fmt(s.hwmMiB, 1)}), ${open}/${n} tunnels open`);
    }
    sample();
    const holdEnd = samples.at(-1);

    // Every broker must still count as online, as an admin sees it.
    const statuses = {};
    let listed = 0;
    let cursor = null;
    do {
      const page = await api(hub.url, hub.adminToken, 'GET', `/api/v1/brokers?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      for (const b of page.items) statuses[b.status] = (statuses[b.status] ?? 0) + 1;
      listed += page.items.length;
      cursor = page.nextCursor;
    } while (cursor);
    const closes = resources.sims.reduce((s, x) => s + x.closes.length, 0);
    const stillOpen = resources.sims.filter((x) => x.isOpen).length;
    progress(`tunnels: GET /api/v1/brokers lists ${listed} brokers: ${JSON.stringify(statuses)}; ${stillOpen}/${n} tunnels open, ${closes} closed`);
    stage = 'closing';
    clearInterval(sampler);

    const holdSamples = samples.filter((s) => s.stage === 'hold');
    const secs = (holdEnd.at - holdStart.at) / 1000;
    const perSecondCpu = [];
    for (let i = 1; i < holdSamples.length; i++) {
      const a = holdSamples[i - 1];
      const b = holdSamples[i];
      // /proc counts in 10 ms ticks: a short interval would read as 0% or 100%+.
      if (b.at - a.at >= 900) perSecondCpu.push(((b.hubCpuMs - a.hubCpuMs) / (b.at - a.at)) * 100);
    }
    const loaded = samples.filter((s) => s.stage === 'connect' || s.stage === 'hold');
    const result = {
      brokers: n,
      backgroundCpuPercent: background.percent,
      backgroundBusiest: background.busiest,
      heartbeatIntervalMs,
      holdSecs: secs,
      registerMs,
      connectMs,
      tunnelsPerSec: n / (connectMs / 1000),
      rssIdleMiB: samples[0].rssMiB,
      rssAfterRegisterMiB: afterRegister.rssMiB,
      rssPeakMiB: Math.max(...loaded.map((s) => s.rssMiB)),
      rssPeakHoldMiB: Math.max(...holdSamples.map((s) => s.rssMiB)),
      rssEndMiB: holdEnd.rssMiB,
      hwmMiB: holdEnd.hwmMiB,
      // Everything the hub gained from idle to its peak, registrations' garbage included, per broker.
      kibPerBroker: ((Math.max(...loaded.map((s) => s.rssMiB)) - samples[0].rssMiB) * 1024) / n,
      hubCpuPercentHold: ((holdEnd.hubCpuMs - holdStart.hubCpuMs) / (holdEnd.at - holdStart.at)) * 100,
      hubCpuPercentHoldMax1s: Math.max(...perSecondCpu),
      postgresCpuPercentHold: ((holdEnd.postgresCpuMs - holdStart.postgresCpuMs) / (holdEnd.at - holdStart.at)) * 100,
      benchCpuPercentHold: ((holdEnd.benchCpuMs - holdStart.benchCpuMs) / (holdEnd.at - holdStart.at)) * 100,
      machineCpuPercentHold: ((holdEnd.machineCpuMs - holdStart.machineCpuMs) / (holdEnd.at - holdStart.at)) * 100,
      hubCpuMsDuringConnect: holdStart.hubCpuMs - afterRegister.hubCpuMs,
      brokerStatuses: statuses,
      brokersListed: listed,
      tunnelsOpenAtEnd: stillOpen,
      tunnelCloses: closes,
      samples: samples.map((s) => ({ stage: s.stage, t: +((s.at - samples[0].at) / 1000).toFixed(2), rssMiB: +s.rssMiB.toFixed(1), hwmMiB: +s.hwmMiB.toFixed(1), hubCpuMs: s.hubCpuMs, postgresCpuMs: s.postgresCpuMs })),
    };
    progress(
      `tunnels: hub RSS idle ${fmt(result.rssIdleMiB, 1)} MiB, after ${n} registrations ${fmt(result.rssAfterRegisterMiB, 1)} MiB, peak with tunnels ${fmt(result.rssPeakMiB, 1)} MiB; ` +
        `hub CPU while holding ${fmt(result.hubCpuPercentHold, 1)}% (Postgres ${fmt(result.postgresCpuPercentHold, 1)}%)`,
    );
    progress(`tunnels: closing ${n} tunnels`);
    await Promise.all(resources.sims.map((s) => s.close()));
    resources.sims = [];
    const warnings = hub.logs.filter((l) => l.level === 'error' || l.level === 'warn');
    if (warnings.length > 0) result.hubWarnings = warnings.slice(0, 20);
    return result;
  } finally {
    clearInterval(sampler);
  }
}

// --- report --------------------------------------------------------------------------------------

function verdicts(report) {
  const rows = [];
  const { latency, rate, tunnels } = report.phases;
  if (latency) {
    rows.push({
      id: 'latency-overhead',
      measure: `hub+tunnel overhead p99 (${latency.agents} agents, one at a time)`,
      value: `${fmt(latency.overheadMs.p99)} ms (p50 ${fmt(latency.overheadMs.p50)})`,
      target: '< 20 ms',
      pass: latency.overheadMs.p99 < 20,
    });
    rows.push({ id: 'latency-runtime', measure: 'runtime start (process runtime: prepare + start)', value: `p50 ${fmt(latency.runtimeStartMs.p50)} / p99 ${fmt(latency.runtimeStartMs.p99)} ms`, target: '—' });
    rows.push({ id: 'latency-e2e', measure: 'POST → running, end to end', value: `p50 ${fmt(latency.e2eMs.p50)} / p99 ${fmt(latency.e2eMs.p99)} ms`, target: '—' });
  }
  if (rate) {
    rows.push({
      id: 'rate',
      measure: `agents placed and started on one broker (${rate.agents} agents, ${rate.concurrency} in flight)`,
      value: `${fmt(rate.agentsPerSec, 1)} agents/s`,
      target: '≥ 100 agents/s',
      pass: rate.agentsPerSec >= 100,
    });
  }
  if (tunnels) {
    const allOnline = (tunnels.brokerStatuses.online ?? 0) === tunnels.brokers && tunnels.tunnelsOpenAtEnd === tunnels.brokers && tunnels.tunnelCloses === 0;
    rows.push({
      id: 'tunnels-rss',
      measure: `hub peak RSS with ${tunnels.brokers} tunnels (connect + ${fmt(tunnels.holdSecs, 0)} s hold)`,
      value: `${fmt(tunnels.rssPeakMiB, 1)} MiB`,
      target: '< 300 MiB',
      pass: tunnels.rssPeakMiB < 300,
    });
    rows.push({ id: 'tunnels-cpu', measure: `hub CPU, average over the hold (heartbeats every ${tunnels.heartbeatIntervalMs} ms)`, value: `${fmt(tunnels.hubCpuPercentHold, 1)}% of one core`, target: '—' });
    rows.push({
      id: 'tunnels-online',
      measure: 'brokers online at the end (GET /api/v1/brokers), tunnels open',
      value: `${tunnels.brokerStatuses.online ?? 0}/${tunnels.brokers} online, ${tunnels.tunnelsOpenAtEnd} open, ${tunnels.tunnelCloses} closed`,
      target: 'all',
      pass: allOnline,
    });
  }
  return rows;
}

function markdownTables(report) {
  const lines = ['| measure | value | target | met? |', '|---|---|---|---|'];
  for (const r of report.verdicts) lines.push(`| ${r.measure} | ${r.value} | ${r.target} | ${r.pass === undefined ? '—' : r.pass ? 'met' : '**not met**'} |`);
  const dist = [];
  for (const [name, phase] of [
    ['latency', report.phases.latency],
    ['rate', report.phases.rate],
  ]) {
    if (!phase) continue;
    for (const [label, s] of [
      ['POST → running (end to end)', phase.e2eMs],
      ['runtime start (broker: prepare + start)', phase.runtimeStartMs],
      ['hub + tunnel overhead (end to end − runtime start)', phase.overheadMs],
      ['  POST → 201 response', phase.postResponseMs],
      ['  POST sent → broker begins the start (±1 ms)', phase.postToBrokerMs],
      ['  broker done → hub has running (±1 ms)', phase.brokerToRunningMs],
    ]) {
      dist.push(`| ${name} | ${label} | ${fmt(s.p50)} | ${fmt(s.p90)} | ${fmt(s.p99)} | ${fmt(s.max)} |`);
    }
  }
  if (dist.length > 0) lines.push('', '| phase | per agent, ms | p50 | p90 | p99 | max |', '|---|---|---:|---:|---:|---:|', ...dist);
  const cpu = [];
  for (const [name, phase] of [
    ['latency', report.phases.latency],
    ['rate', report.phases.rate],
  ]) {
    if (!phase) continue;
    const c = phase.cpuMsPerAgent;
    const pc = phase.cpuPercent;
    cpu.push(
      `| ${name} | ${fmt(c.hub)} | ${fmt(c.broker)} | ${fmt(c.postgres)} | ${fmt(c.bench)} | ${fmt(pc.machine, 0)}% (rest ${fmt(pc.others, 0)}%; ${fmt(phase.backgroundCpuPercent, 0)}% before the phase) | ${fmt(pc.steal, 1)}% |`,
    );
  }
  if (cpu.length > 0) {
    lines.push(
      '',
      '| phase | hub CPU ms/agent | broker CPU ms/agent | Postgres CPU ms/agent | bench CPU ms/agent | whole machine busy, % of one core | steal |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...cpu,
    );
  }
  const notes = [];
  for (const [name, phase] of [
    ['latency', report.phases.latency],
    ['rate', report.phases.rate],
  ]) {
    const c = phase?.cleanup;
    if (c?.failedDeletes > 0) notes.push(`- ${name} cleanup: ${c.failedDeletes} DELETE request(s) failed (the agents were removed all the same), e.g. \`${c.failedDeleteExamples[0]?.slice(0, 160)}\``);
  }
  const t = report.phases.tunnels;
  if (t) {
    lines.push(
      '',
      '| tunnels | value |',
      '|---|---|',
      `| hub RSS idle / after ${t.brokers} registrations / peak with tunnels / end of hold | ${fmt(t.rssIdleMiB, 1)} / ${fmt(t.rssAfterRegisterMiB, 1)} / ${fmt(t.rssPeakMiB, 1)} / ${fmt(t.rssEndMiB, 1)} MiB (VmHWM ${fmt(t.hwmMiB, 1)} MiB) |`,
      `| RSS growth per broker (peak − idle, registrations included) | ${fmt(t.kibPerBroker, 1)} KiB |`,
      `| hub CPU during the hold: average / worst second | ${fmt(t.hubCpuPercentHold, 1)}% / ${fmt(t.hubCpuPercentHoldMax1s, 1)}% |`,
      `| Postgres CPU during the hold (heartbeat batches) / this bench (1,000 clients) / whole machine | ${fmt(t.postgresCpuPercentHold, 1)}% / ${fmt(t.benchCpuPercentHold, 1)}% / ${fmt(t.machineCpuPercentHold, 1)}% |`,
      `| registration + join of ${t.brokers} brokers | ${fmt(t.registerMs / 1000, 1)} s |`,
      `| dialling ${t.brokers} tunnels | ${fmt(t.connectMs / 1000, 1)} s (${fmt(t.tunnelsPerSec, 0)} tunnels/s; hub CPU ${fmt(t.hubCpuMsDuringConnect / t.brokers, 2)} ms per tunnel) |`,
    );
  }
  if (notes.length > 0) lines.push('', ...notes);
  return lines.join('\n');
}

// --- main ----------------------------------------------------------------------------------------

async function main() {
  const settings = parseOptionsOrExit('bench-dispatch', parseOptions, HELP);
  requireBuiltWorkspace('dispatch', ['apps/hub/dist/main.js', 'apps/broker/dist/main.js', 'packages/testkit/dist/index.js', 'packages/db/dist/index.js']);

  const [testkit, { default: pg }] = await Promise.all([import('@graft/testkit'), import('pg')]);
  const interrupted = installExitHandlers({
    killNow: (signal) => {
      killChildrenNow(signal);
      killAgentGroups(signal);
    },
    cleanup,
    stopping: 'simulated brokers, broker, agents, hubs and Postgres',
  });
  const startedAt = new Date();
  const machine = machineInfo();
  const git = gitState();
  reportMachine(machine);

  const phases = {};
  try {
    progress('postgres: starting a throwaway Postgres');
    resources.postgres = await testkit.startTestPostgres();

    if (settings.only.has('latency') || settings.only.has('rate')) {
      const ctx = await setUpDispatch(pg, settings, testkit);
      if (settings.only.has('latency')) phases.latency = await latencyPhase(ctx, settings);
      if (settings.only.has('rate')) phases.rate = await ratePhase(ctx, settings);
      const warnings = [...ctx.hub.logs, ...ctx.broker.logs].filter((l) => l.level === 'error' || l.level === 'warn');
      if (warnings.length > 0) phases.dispatchWarnings = warnings.slice(0, 20);
      progress('dispatch: stopping the broker and its hub');
      await resources.listener.end();
      resources.listener = undefined;
      await resources.broker.stop();
      resources.broker = undefined;
      const left = killAgentGroups('SIGKILL');
      if (left > 0) progress(`dispatch: killed ${left} agent process group(s) left after the deletes`);
      rmSync(resources.brokerDataDir, { recursive: true, force: true });
      resources.brokerDataDir = undefined;
      await resources.fixtures.pop()?.stop();
    }

    if (settings.only.has('tunnels')) {
      phases.tunnels = await tunnelsPhase(settings, testkit);
      progress('tunnels: stopping the hub');
      await resources.fixtures.pop()?.stop();
    }
  } catch (err) {
    if (interrupted()) {
      await cleanup();
      return;
    }
    process.stderr.write(`\nbench-dispatch: failed: ${err?.stack ?? err}\n`);
    for (const f of resources.fixtures) process.stderr.write(`--- hub ${f.hub.pid} output (last 3000 characters) ---\n${f.hub.output().slice(-3000)}\n`);
    if (resources.broker) process.stderr.write(`--- broker output (last 3000 characters) ---\n${resources.broker.output().slice(-3000)}\n`);
    await cleanup();
    process.exit(1);
  }

  progress('stopping Postgres');
  await cleanup();

  const report = { ...reportBase(startedAt, machine, git, settings), phases };
  report.verdicts = verdicts(report);
  const tables = markdownTables(report);
  report.markdown = tables;
  process.stdout.write(`\n## Dispatch benchmark, ${startedAt.toISOString()}\n\n${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}\n\n${tables}\n`);
  printVerdict(report.verdicts.filter((r) => r.pass === false).map((r) => r.id));
  writeResults(settings.outDir, 'dispatch', startedAt, report);
  process.exit(0);
}

await main();
