#!/usr/bin/env node
// `pnpm bench:cluster`: measures hub replicas in cluster mode (REDIS_URL) with real hub processes:
//   scaleout  the same dispatch load through 1 replica and then through 2 (fresh database and Redis
//             prefix each, one Redis): agents/s and per-agent latency POST → running; the ratio
//   routing   2 replicas, one simulated broker on replica A: a message sent through A (handled
//             locally) vs through B (forwarded to A over Redis pub/sub); latency to the broker
// Everything it starts (Postgres, Redis, the hubs, temp dirs) is stopped by PID on exit, on Ctrl-C
// and on errors.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { backgroundCpu, fmt, gitState, hubApi, installExitHandlers, keyValues, killPids, killSims, listenForRunning, machineBusyMs, machineInfo, machineStealMs, mainThreadCpuMs, numberOption, ownCpuMs, parseBenchArgs, parseOnly, parseOptionsOrExit, pool, poolWithProgress, printVerdict, processCpuMs, progress, reportBase, reportMachine, requireBuiltWorkspace, requireInfoLogLevel, runCleanupSteps, sleep, stats, treeCpuMs, UsageError, writeResults } from './lib/bench-common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PHASE_IDS = ['scaleout', 'routing'];
const SCALEOUT_TARGET = 1.6;
const ROUTING_TARGET_MS = 10;

// --- options -------------------------------------------------------------------------------------

const HELP = `Usage: pnpm bench:cluster [options]
       node scripts/bench-cluster.mjs [options]

Benchmarks hub replicas in cluster mode (REDIS_URL + GRAFT_REDIS_PREFIX) with real hub processes,
one Postgres and one Redis, all on this machine:
  scaleout  twice, with 1 and then 2 hub replicas (a fresh database and Redis prefix each time):
            --brokers simulated brokers (SimBroker from @graft/testkit, in this process, answering
            every command at once) dial the replicas round-robin; after --warmup agents,
            --agents agents are created with --concurrency POSTs in flight, the requests spread
            round-robin over the replicas (client-side balancing, as a load balancer would). Per
            agent, POST sent → the hub has phase running (a Postgres trigger NOTIFYs the bench, so
            nothing is polled); agents/s from the first POST to the last agent running. With 2
            replicas about half the creates reach a broker whose tunnel is on the other replica
            and are forwarded over Redis. The ratio of the two throughputs is the scale-out
            (target ≥ ${SCALEOUT_TARGET}). Each process's CPU time comes from /proc.
  routing   2 replicas A and B, one simulated broker on A running one agent: --commands messages
            (POST /api/v1/agents/:id/messages), one at a time, alternating A (handled locally) and
            B (forwarded to A over Redis); per message, request sent → the broker receives the
            \`message\` command (timed in this process). Target: routed p99 < local p99 + ${ROUTING_TARGET_MS} ms.
            Cross-checked with the hubs' graft_routed_command_duration_seconds and
            graft_dispatch_duration_seconds (/metrics).
Prints progress to stderr, a Markdown summary to stdout, and writes
bench-results/cluster-<timestamp>.json. Exits 0 even when a target is missed (it is a
measurement); FAIL is printed in the table. Needs a built workspace (\`pnpm build\`) and
redis-server (apt-get install -y redis-server).

Options:
  --brokers <n>          simulated brokers in the scaleout phase (default 8)
  --agents <n>           agents measured per scaleout run (default 1000)
  --warmup <n>           agents created and discarded before each scaleout run (default 50)
  --concurrency <n>      POSTs in flight in the scaleout phase (default 32)
  --commands <n>         messages measured in the routing phase, half local, half routed (default 400)
  --command-warmup <n>   messages sent and discarded before them (default 20)
  --pause-ms <ms>        pause after each message, so each meets idle hubs (default 10)
  --hub-env K=V          extra environment for the hub processes (repeatable)
  --only <ids>           comma-separated phases to run: ${PHASE_IDS.join(',')}
  --out <dir>            where to write the JSON results (default bench-results/)
  -h, --help             this text

Uses a throwaway embedded Postgres, or GRAFT_TEST_DATABASE_URL (a superuser URL) when set.
`;

/** Hub settings the bench sets itself: a run would not measure what it says with another value. */
const OWNED_HUB_ENV = ['REDIS_URL', 'GRAFT_REDIS_PREFIX', 'DATABASE_URL', 'GRAFT_ADMIN_TOKEN', 'GRAFT_MASTER_KEY', 'GRAFT_HUB_PORT'];

function parseOptions() {
  const values = parseBenchArgs(
    {
      brokers: { type: 'string', default: '8' },
      agents: { type: 'string', default: '1000' },
      warmup: { type: 'string', default: '50' },
      concurrency: { type: 'string', default: '32' },
      commands: { type: 'string', default: '400' },
      'command-warmup': { type: 'string', default: '20' },
      'pause-ms': { type: 'string', default: '10' },
      'hub-env': { type: 'string', multiple: true, default: [] },
      only: { type: 'string' },
    },
    HELP,
  );
  const int = (name, min) => numberOption(values, name, min, { integer: true, allowBlank: false });
  // An empty --only (or an empty item in it) is a mistake here, not "every phase".
  if (values.only?.split(',').some((s) => s.trim() === '')) throw new UsageError(`--only takes a comma-separated list of phases (known: ${PHASE_IDS.join(', ')})`);
  const only = parseOnly(values.only, PHASE_IDS, 'phase');
  const hubEnv = keyValues(values['hub-env'], '--hub-env');
  // The fixtures learn ports from the info-level `hub.listening` line.
  requireInfoLogLevel(hubEnv, '--hub-env');
  for (const k of OWNED_HUB_ENV) if (k in hubEnv) throw new UsageError(`--hub-env ${k} is set by the benchmark itself`);
  const commands = int('commands', 2);
  if (commands % 2 !== 0) throw new UsageError(`--commands must be even: half go through each replica (got ${commands})`);
  return {
    brokers: int('brokers', 2),
    agents: int('agents', 1),
    warmup: int('warmup', 0),
    concurrency: int('concurrency', 1),
    commands,
    commandWarmup: int('command-warmup', 0),
    pauseMs: int('pause-ms', 0),
    hubEnv,
    only: new Set(only),
    outDir: values.out,
  };
}

// --- helpers -------------------------------------------------------------------------------------

// Several replicas answer: a failure names which one.
const api = hubApi({ urlInErrors: true });

// --- CPU accounting (from /proc) -----------------------------------------------------------------

/**
 * CPU ms so far of each process that does the work: every hub, Postgres (with its backends), Redis,
 * this process (load generator + simulated brokers + NOTIFY listener), and the whole machine;
 * `others` is the rest: kernel threads (loopback networking) and anything else on the box.
 */
function cpuSnapshot(hubPids) {
  const snap = {
    at: performance.now(),
    hubs: hubPids.map((pid) => processCpuMs(pid)),
    // The rest of a hub's CPU is GC, libuv and compiler threads: a main thread near 100% is a saturated event loop.
    hubMainThreads: hubPids.map((pid) => mainThreadCpuMs(pid)),
    postgres: treeCpuMs(resources.postgres?.pid),
    redis: processCpuMs(resources.redis?.pid),
    bench: ownCpuMs(),
    machine: machineBusyMs(),
    steal: machineStealMs(),
  };
  snap.others = snap.machine - (snap.hubs.reduce((s, v) => s + v, 0) + (Number.isFinite(snap.postgres) ? snap.postgres : 0) + snap.redis + snap.bench);
  return snap;
}

/** CPU between two snapshots: ms, ms per unit of work, and % of one core over the wall time. */
function cpuDelta(a, b, units) {
  const wall = b.at - a.at;
  const one = (x, y) => ({ ms: y - x, msPerUnit: (y - x) / units, percent: ((y - x) / wall) * 100 });
  return {
    wallMs: wall,
    hubs: a.hubs.map((x, i) => one(x, b.hubs[i])),
    hubMainThreads: a.hubMainThreads.map((x, i) => one(x, b.hubMainThreads[i])),
    postgres: one(a.postgres, b.postgres),
    redis: one(a.redis, b.redis),
    bench: one(a.bench, b.bench),
    machine: one(a.machine, b.machine),
    steal: one(a.steal, b.steal),
    others: one(a.others, b.others),
  };
}

// --- Prometheus text (the hubs' /metrics) ---------------------------------------------------------

/** One sample line of a Prometheus text page: name, labels and value. */
function parseSample(line) {
  const sp = line.lastIndexOf(' ');
  const head = line.slice(0, sp);
  const brace = head.indexOf('{');
  const labels = {};
  if (brace >= 0) for (const m of head.slice(brace + 1, -1).matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
  return { name: brace >= 0 ? head.slice(0, brace) : head, labels, value: Number(line.slice(sp + 1)) };
}

/** Samples of a hub's /metrics page. */
async function scrape(hub) {
  const res = await fetch(`${hub.url}/metrics`);
  if (!res.ok) throw new Error(`GET ${hub.url}/metrics -> ${res.status}`);
  return (await res.text())
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map(parseSample);
}

/** Sum of the samples named `name` whose labels include `select` (label order does not matter). */
function sampleSum(samples, name, select = {}) {
  let v = 0;
  for (const s of samples) if (s.name === name && Object.entries(select).every(([k, x]) => s.labels[k] === x)) v += s.value;
  return v;
}

/** The difference of one counter between two scrapes. */
function counterDelta(before, after, name, select = {}) {
  return sampleSum(after, name, select) - sampleSum(before, name, select);
}

/**
 * A histogram between two scrapes: count, mean, and p50/p99 estimated as Prometheus'
 * histogram_quantile does (linear inside the bucket), with the bound of the bucket that holds each.
 */
function histogramDelta(before, after, name, select = {}) {
  const les = [...new Set(after.filter((s) => s.name === `${name}_bucket`).map((s) => s.labels.le))];
  const buckets = les
    .map((le) => ({ le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), cum: counterDelta(before, after, `${name}_bucket`, { ...select, le }) }))
    .sort((x, y) => x.le - y.le);
  const count = counterDelta(before, after, `${name}_count`, select);
  const sum = counterDelta(before, after, `${name}_sum`, select);
  const quantile = (q) => {
    if (count === 0) return { ms: Number.NaN, bucketLeMs: Number.NaN };
    const rank = q * count;
    let prevLe = 0;
    let prevCum = 0;
    for (const b of buckets) {
      if (b.cum >= rank) {
        if (!Number.isFinite(b.le)) return { ms: prevLe * 1000, bucketLeMs: Number.POSITIVE_INFINITY };
        const inBucket = b.cum - prevCum;
        const ms = (prevLe + (inBucket === 0 ? 0 : ((rank - prevCum) / inBucket) * (b.le - prevLe))) * 1000;
        return { ms, bucketLeMs: b.le * 1000 };
      }
      prevLe = b.le;
      prevCum = b.cum;
    }
    return { ms: Number.NaN, bucketLeMs: Number.NaN };
  };
  return { count, meanMs: count > 0 ? (sum / count) * 1000 : Number.NaN, p50: quantile(0.5), p99: quantile(0.99), buckets: buckets.map((b) => ({ leMs: b.le * 1000, count: b.cum })) };
}

// --- lifecycle: everything started here is stopped on exit, SIGINT, SIGTERM and errors -----------

const resources = {
  postgres: undefined, // TestPostgres
  redis: undefined, // TestRedis
  clusters: [], // { hubs: HubProcess[], database: FreshDatabase, listener: pg.Client, sims: SimBroker[] }
};
let cleaning;

function killChildrenNow(signal) {
  // The synchronous part of cleanup: it must also work from the 'exit' event, where nothing async runs.
  for (const c of resources.clusters) killSims(c.sims);
  killPids([...resources.clusters.flatMap((c) => c.hubs.map((h) => h.pid)), resources.redis?.pid], signal);
}

/** Stops one cluster: its simulated brokers, listener, hubs (by PID) and database. */
async function stopCluster(cluster) {
  killSims(cluster.sims);
  cluster.sims = [];
  await runCleanupSteps([
    ['notification listener', async () => cluster.listener?.end()],
    ...cluster.hubs.map((h, i) => [`hub ${i + 1} (pid ${h.pid})`, async () => h.stop()]),
    ['database', async () => cluster.database?.drop()],
  ]);
  resources.clusters = resources.clusters.filter((c) => c !== cluster);
}

function cleanup() {
  cleaning ??= (async () => {
    for (const c of [...resources.clusters]) await stopCluster(c);
    await runCleanupSteps([
      ['redis', async () => resources.redis?.stop()],
      ['postgres', async () => resources.postgres?.stop()],
    ]);
    resources.redis = undefined;
    resources.postgres = undefined;
  })();
  return cleaning;
}

// --- a cluster of hub replicas -------------------------------------------------------------------

/**
 * Starts `replicas` hub processes in cluster mode on a fresh database and a Redis prefix of their
 * own (same Redis, master key and admin token), and a NOTIFY listener on that database.
 */
async function startCluster(label, replicas, settings, testkit, pg) {
  const database = await testkit.createFreshDatabase(resources.postgres.adminUrl, 'graft_bench');
  const cluster = { label, hubs: [], database, listener: undefined, sims: [] };
  resources.clusters.push(cluster);
  const adminToken = randomBytes(32).toString('hex');
  const env = {
    GRAFT_LOG_LEVEL: 'info',
    ...settings.hubEnv,
    REDIS_URL: resources.redis.url,
    GRAFT_REDIS_PREFIX: `bench-cluster-${label}-${randomBytes(4).toString('hex')}`,
    GRAFT_ADMIN_TOKEN: adminToken,
    GRAFT_MASTER_KEY: randomBytes(32).toString('hex'),
  };
  // The first replica applies the migrations; the others start on a migrated database.
  cluster.hubs.push(await testkit.startHubProcess({ databaseUrl: database.url, env }));
  for (let i = 1; i < replicas; i++) cluster.hubs.push(await testkit.startHubProcess({ databaseUrl: database.url, env }));
  for (const h of cluster.hubs) {
    const l = h.logs.find((x) => x.event === 'hub.listening');
    if (l?.cluster !== true) throw new Error(`${label}: hub ${h.url} did not start in cluster mode (hub.listening says cluster=${l?.cluster}); is apps/hub built from this tree?`);
  }
  progress(`${label}: ${replicas} hub replica(s) in cluster mode: ${cluster.hubs.map((h) => `${h.url} (pid ${h.pid}, replica ${h.logs.find((x) => x.event === 'hub.listening')?.replicaId})`).join(', ')}`);
  cluster.adminToken = adminToken;
  cluster.redisPrefix = env.GRAFT_REDIS_PREFIX;
  const listener = new pg.Client({ connectionString: database.url });
  await listener.connect();
  cluster.listener = listener;
  cluster.watch = await listenForRunning(listener);
  return cluster;
}

/** Warn and error events of the hubs, counted by event name, with a few examples. */
function hubWarnings(cluster) {
  const byEvent = {};
  const examples = [];
  cluster.hubs.forEach((h, i) => {
    for (const l of h.logs) {
      if (l.level !== 'warn' && l.level !== 'error') continue;
      const key = `${l.level} ${l.event}`;
      byEvent[key] = (byEvent[key] ?? 0) + 1;
      if (examples.length < 10) examples.push({ hub: i, ...l });
    }
  });
  return { byEvent, examples };
}

// --- phases --------------------------------------------------------------------------------------

async function scaleoutRun(replicas, settings, testkit, pg) {
  const { registerAndJoinBroker, SimBroker } = testkit;
  const label = `scaleout-${replicas}r`;
  progress(`${label}: starting ${replicas} replica(s) on a fresh database`);
  const cluster = await startCluster(label, replicas, settings, testkit, pg);
  const { hubs, adminToken } = cluster;
  const urls = hubs.map((h) => h.url);
  const capacity = settings.agents + settings.warmup + 100;

  // Brokers dial the replicas round-robin; which replica holds which tunnel tells local from routed.
  const brokerReplica = new Map();
  await pool(settings.brokers, 8, async (i) => {
    const r = i % replicas;
    const joined = await registerAndJoinBroker(urls[r], adminToken, { name: `bench-sim-${String(i).padStart(3, '0')}`, autoProvide: true }, { maxAgents: capacity });
    const sim = new SimBroker({ hubUrl: urls[r], brokerId: joined.brokerId, secretKey: joined.secretKey, maxAgents: capacity, mode: 'run' });
    cluster.sims.push(sim);
    const outcome = await sim.connect();
    if (!outcome.ok) throw new Error(`${label}: simulated broker ${i} was refused by ${urls[r]}: ${outcome.status} ${outcome.code}`);
    brokerReplica.set(joined.brokerId, r);
  });
  progress(`${label}: ${settings.brokers} simulated brokers connected round-robin (${hubs.map((_, r) => [...brokerReplica.values()].filter((x) => x === r).length).join(' / ')} per replica)`);

  const { project } = await api(urls[0], adminToken, 'POST', '/api/v1/projects/register', { name: 'bench-cluster' });
  const template = await api(urls[0], adminToken, 'POST', '/api/v1/templates', { name: 'bench-sim', projectId: project.id, harness: 'command', command: ['sleep', '600'] });

  const createAndWait = async (i, prefix) => {
    const r = i % replicas;
    const sent = performance.now();
    const agent = await api(urls[r], adminToken, 'POST', '/api/v1/agents', { projectId: project.id, name: `${prefix}-${String(i).padStart(5, '0')}`, template: template.name });
    const answered = performance.now();
    if (!brokerReplica.has(agent.brokerId)) throw new Error(`${label}: agent ${agent.id} was not placed at creation (brokerId ${agent.brokerId}, pendingReason ${agent.pendingReason})`);
    const running = await cluster.watch.running(agent.id);
    return { id: agent.id, via: r, routed: brokerReplica.get(agent.brokerId) !== r, sent, postMs: answered - sent, e2eMs: running - sent, running };
  };

  if (settings.warmup > 0) {
    progress(`${label}: ${settings.warmup} warm-up agents (discarded), ${settings.concurrency} in flight`);
    await pool(settings.warmup, settings.concurrency, (i) => createAndWait(i, 'warm'));
  }
  const background = await backgroundCpu(label, [...hubs.map((h) => h.pid), resources.postgres?.pid, resources.redis?.pid].filter(Boolean), resources.postgres?.pid);

  const n = settings.agents;
  progress(`${label}: ${n} agents, ${settings.concurrency} POSTs in flight, round-robin over ${replicas} replica(s)`);
  const metricsBefore = await Promise.all(hubs.map(scrape));
  const samples = new Array(n);
  const cpuBefore = cpuSnapshot(hubs.map((h) => h.pid));
  await poolWithProgress(label, n, settings.concurrency, async (i) => {
    samples[i] = await createAndWait(i, 'agent');
  });
  const cpuAfter = cpuSnapshot(hubs.map((h) => h.pid));
  const firstPost = Math.min(...samples.map((s) => s.sent));
  const lastRunning = Math.max(...samples.map((s) => s.running));
  const wallMs = lastRunning - firstPost;
  const metricsAfter = await Promise.all(hubs.map(scrape));

  const { rows } = await cluster.listener.query("SELECT count(*)::int AS n FROM agents WHERE phase = 'running'");
  if (rows[0].n !== n + settings.warmup) throw new Error(`${label}: ${rows[0].n} agents running in the database, expected ${n + settings.warmup}`);
  const routed = samples.filter((s) => s.routed);
  const local = samples.filter((s) => !s.routed);
  const cpu = cpuDelta(cpuBefore, cpuAfter, n);
  const result = {
    replicas,
    brokers: settings.brokers,
    agents: n,
    warmupAgents: settings.warmup,
    concurrency: settings.concurrency,
    backgroundCpuPercent: background.percent,
    backgroundBusiest: background.busiest,
    wallMs,
    agentsPerSec: n / (wallMs / 1000),
    e2eMs: stats(samples.map((s) => s.e2eMs)),
    postResponseMs: stats(samples.map((s) => s.postMs)),
    e2eLocalMs: stats(local.map((s) => s.e2eMs)),
    e2eRoutedMs: stats(routed.map((s) => s.e2eMs)),
    routedAgents: routed.length,
    requestsPerReplica: hubs.map((_, r) => samples.filter((s) => s.via === r).length),
    cpu,
    hubMetrics: hubs.map((_, i) => ({
      routedOk: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_routed_commands_total', { outcome: 'ok' }),
      routedUnreachable: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_routed_commands_total', { outcome: 'unreachable' }),
      routedTimeout: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_routed_commands_total', { outcome: 'timeout' }),
      routedDuration: histogramDelta(metricsBefore[i], metricsAfter[i], 'graft_routed_command_duration_seconds'),
      createDispatch: histogramDelta(metricsBefore[i], metricsAfter[i], 'graft_dispatch_duration_seconds', { command: 'create' }),
      tunnelCommands: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_tunnel_commands_total'),
      statusApplied: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_status_updates_total', { outcome: 'applied' }),
      statusStale: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_status_updates_total', { outcome: 'stale' }),
      statusRejected: counterDelta(metricsBefore[i], metricsAfter[i], 'graft_status_updates_total', { outcome: 'rejected' }),
    })),
    hubWarnings: hubWarnings(cluster),
  };
  progress(
    `${label}: ${n} agents running in ${(wallMs / 1000).toFixed(2)} s = ${fmt(result.agentsPerSec, 1)} agents/s; POST → running p50 ${fmt(result.e2eMs.p50)} / p99 ${fmt(result.e2eMs.p99)} ms` +
      `${replicas > 1 ? ` (${routed.length} routed: p50 ${fmt(result.e2eRoutedMs.p50)} / p99 ${fmt(result.e2eRoutedMs.p99)} ms)` : ''}; ` +
      `hub CPU ${cpu.hubs.map((h, i) => `${fmt(h.percent, 0)}% (main thread ${fmt(cpu.hubMainThreads[i].percent, 0)}%)`).join(' + ')}, Postgres ${fmt(cpu.postgres.percent, 0)}%, Redis ${fmt(cpu.redis.percent, 0)}%, bench ${fmt(cpu.bench.percent, 0)}%, machine ${fmt(cpu.machine.percent, 0)}% of one core`,
  );
  const w = Object.entries(result.hubWarnings.byEvent);
  if (w.length > 0) progress(`${label}: hub warnings/errors: ${w.map(([k, v]) => `${k} ×${v}`).join(', ')}`);
  await stopCluster(cluster);
  return result;
}

async function scaleoutPhase(settings, testkit, pg) {
  const runs = [];
  for (const replicas of [1, 2]) runs.push(await scaleoutRun(replicas, settings, testkit, pg));
  const [one, two] = runs;
  return { runs, ratio: two.agentsPerSec / one.agentsPerSec };
}

async function routingPhase(settings, testkit, pg) {
  const { registerAndJoinBroker, SimBroker } = testkit;
  const label = 'routing';
  progress(`${label}: starting 2 replicas on a fresh database`);
  const cluster = await startCluster(label, 2, settings, testkit, pg);
  const { hubs, adminToken } = cluster;
  const [a, b] = hubs;

  // Arrival of each `message` command at the broker, timed in this process when its frame is parsed.
  const arrivals = new Map(); // message body -> performance.now()
  const waiting = new Map(); // message body -> resolve
  const received = new Map(); // message body -> how many times the broker got it
  const onCommand = (msg) => {
    if (msg.command !== 'message' || msg.message === undefined) return;
    const at = performance.now();
    received.set(msg.message, (received.get(msg.message) ?? 0) + 1);
    if (received.get(msg.message) > 1) return;
    const w = waiting.get(msg.message);
    if (w) {
      waiting.delete(msg.message);
      w(at);
    } else arrivals.set(msg.message, at);
  };
  const arrival = (body, timeoutMs = 10_000) => {
    const at = arrivals.get(body);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(body);
        reject(new Error(`${label}: message ${body} did not reach the broker within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(body, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  };

  const joined = await registerAndJoinBroker(a.url, adminToken, { name: 'bench-routing', autoProvide: true }, { maxAgents: 10 });
  const sim = new SimBroker({ hubUrl: a.url, brokerId: joined.brokerId, secretKey: joined.secretKey, maxAgents: 10, mode: 'run', onCommand });
  cluster.sims.push(sim);
  const outcome = await sim.connect();
  if (!outcome.ok) throw new Error(`${label}: the simulated broker was refused: ${outcome.status} ${outcome.code}`);
  const { project } = await api(a.url, adminToken, 'POST', '/api/v1/projects/register', { name: 'bench-routing' });
  const template = await api(a.url, adminToken, 'POST', '/api/v1/templates', { name: 'bench-sim', projectId: project.id, harness: 'command', command: ['sleep', '600'] });
  const agent = await api(a.url, adminToken, 'POST', '/api/v1/agents', { projectId: project.id, name: 'receiver', template: template.name });
  if (agent.brokerId !== joined.brokerId) throw new Error(`${label}: the agent was not placed on the simulated broker (brokerId ${agent.brokerId}, pendingReason ${agent.pendingReason})`);
  await cluster.watch.running(agent.id);
  progress(`${label}: broker ${joined.brokerId} on replica A (${a.url}), agent ${agent.id} running; B is ${b.url}`);

  const send = async (i, prefix) => {
    const routed = i % 2 === 1;
    const body = `${prefix}-${i}-${randomBytes(4).toString('hex')}`;
    const sent = performance.now();
    const arrived = arrival(body);
    await api(routed ? b.url : a.url, adminToken, 'POST', `/api/v1/agents/${agent.id}/messages`, { body });
    const answered = performance.now();
    const at = await arrived;
    arrivals.delete(body);
    if (settings.pauseMs > 0) await sleep(settings.pauseMs);
    return { routed, ms: at - sent, postMs: answered - sent };
  };

  if (settings.commandWarmup > 0) {
    progress(`${label}: ${settings.commandWarmup} warm-up messages (discarded), alternating A / B`);
    for (let i = 0; i < settings.commandWarmup; i++) await send(i, 'warm');
  }
  const background = await backgroundCpu(label, [...hubs.map((h) => h.pid), resources.postgres?.pid, resources.redis?.pid].filter(Boolean), resources.postgres?.pid);
  const n = settings.commands;
  progress(`${label}: ${n} messages one at a time, alternating A (local) / B (routed through Redis to A), ${settings.pauseMs} ms pause after each`);
  const metricsBefore = await Promise.all(hubs.map(scrape));
  const cpuBefore = cpuSnapshot(hubs.map((h) => h.pid));
  const samples = [];
  for (let i = 0; i < n; i++) {
    samples.push(await send(i, 'msg'));
    if ((i + 1) % 100 === 0 || i + 1 === n) {
      const last = samples.slice(-100);
      progress(
        `${label}: ${i + 1}/${n} delivered; last 100: local p50 ${fmt(stats(last.filter((s) => !s.routed).map((s) => s.ms)).p50)} ms, routed p50 ${fmt(stats(last.filter((s) => s.routed).map((s) => s.ms)).p50)} ms`,
      );
    }
  }
  const cpuAfter = cpuSnapshot(hubs.map((h) => h.pid));
  // The hubs record delivery (and observe the metrics) just after the broker's answer: let them finish.
  const total = settings.commandWarmup + n;
  const deadline = performance.now() + 10_000;
  let delivered = 0;
  for (;;) {
    const { rows } = await cluster.listener.query("SELECT count(*)::int AS n FROM agent_messages WHERE state = 'delivered'");
    delivered = rows[0].n;
    if (delivered >= total || performance.now() > deadline) break;
    await sleep(50);
  }
  if (delivered !== total) throw new Error(`${label}: ${delivered} messages delivered in the database, expected ${total}`);
  const metricsAfter = await Promise.all(hubs.map(scrape));
  // Delivery is at least once: a replica's redelivery sweep can send a message another replica is delivering.
  const duplicates = [...received.values()].reduce((sum, c) => sum + c - 1, 0);
  if (duplicates > 0) progress(`${label}: the broker received ${duplicates} message(s) more than once`);
  const local = stats(samples.filter((s) => !s.routed).map((s) => s.ms));
  const routed = stats(samples.filter((s) => s.routed).map((s) => s.ms));
  const result = {
    commands: n,
    warmupCommands: settings.commandWarmup,
    pauseMs: settings.pauseMs,
    backgroundCpuPercent: background.percent,
    backgroundBusiest: background.busiest,
    brokerReceivedMessages: [...received.values()].reduce((sum, c) => sum + c, 0),
    duplicateMessages: duplicates,
    localMs: local,
    routedMs: routed,
    localPostResponseMs: stats(samples.filter((s) => !s.routed).map((s) => s.postMs)),
    routedPostResponseMs: stats(samples.filter((s) => s.routed).map((s) => s.postMs)),
    // A sends to its own tunnel (dispatch histogram); B forwards to A (routed histogram: owner lookup, publish, A's send, the answer back).
    metrics: {
      localDispatchOnA: histogramDelta(metricsBefore[0], metricsAfter[0], 'graft_dispatch_duration_seconds', { command: 'message' }),
      routedOnB: histogramDelta(metricsBefore[1], metricsAfter[1], 'graft_routed_command_duration_seconds'),
      dispatchOnB: histogramDelta(metricsBefore[1], metricsAfter[1], 'graft_dispatch_duration_seconds', { command: 'message' }),
      routedOkOnB: counterDelta(metricsBefore[1], metricsAfter[1], 'graft_routed_commands_total', { outcome: 'ok' }),
      routedUnreachableOnB: counterDelta(metricsBefore[1], metricsAfter[1], 'graft_routed_commands_total', { outcome: 'unreachable' }),
      routedTimeoutOnB: counterDelta(metricsBefore[1], metricsAfter[1], 'graft_routed_commands_total', { outcome: 'timeout' }),
    },
    cpu: cpuDelta(cpuBefore, cpuAfter, n),
    hubWarnings: hubWarnings(cluster),
    samples: samples.map((s) => ({ routed: s.routed, ms: +s.ms.toFixed(3), postMs: +s.postMs.toFixed(3) })),
  };
  result.extraP99Ms = routed.p99 - local.p99;
  progress(`${label}: local p50 ${fmt(local.p50)} / p99 ${fmt(local.p99)} ms; routed p50 ${fmt(routed.p50)} / p99 ${fmt(routed.p99)} ms (p99 +${fmt(result.extraP99Ms)} ms)`);
  const m = result.metrics;
  progress(
    `${label}: /metrics: A's local sends mean ${fmt(m.localDispatchOnA.meanMs)} ms (n ${m.localDispatchOnA.count}); B's routed commands mean ${fmt(m.routedOnB.meanMs)} ms, p99 ≈ ${fmt(m.routedOnB.p99.ms)} ms (n ${m.routedOnB.count}, ok ${m.routedOkOnB}, unreachable ${m.routedUnreachableOnB}, timeout ${m.routedTimeoutOnB})`,
  );
  const w = Object.entries(result.hubWarnings.byEvent);
  if (w.length > 0) progress(`${label}: hub warnings/errors: ${w.map(([k, v]) => `${k} ×${v}`).join(', ')}`);
  await stopCluster(cluster);
  return result;
}

// --- report --------------------------------------------------------------------------------------

function verdicts(report) {
  const rows = [];
  const { scaleout, routing } = report.phases;
  if (scaleout) {
    const [one, two] = scaleout.runs;
    rows.push({
      id: 'scaleout',
      measure: `dispatch throughput, 2 replicas vs 1 (${one.agents} agents, ${one.concurrency} in flight, ${one.brokers} simulated brokers)`,
      value: `${fmt(two.agentsPerSec, 1)} / ${fmt(one.agentsPerSec, 1)} agents/s = ×${fmt(scaleout.ratio)}`,
      target: `≥ ×${SCALEOUT_TARGET}`,
      pass: scaleout.ratio >= SCALEOUT_TARGET,
    });
    rows.push({ id: 'scaleout-p99', measure: 'POST → running p99, 1 / 2 replicas', value: `${fmt(one.e2eMs.p99)} / ${fmt(two.e2eMs.p99)} ms`, target: '—' });
  }
  if (routing) {
    rows.push({
      id: 'routing',
      measure: `message → broker p99, routed through B vs local on A (${routing.commands / 2} each)`,
      value: `${fmt(routing.routedMs.p99)} vs ${fmt(routing.localMs.p99)} ms (+${fmt(routing.extraP99Ms)} ms)`,
      target: `< local + ${ROUTING_TARGET_MS} ms`,
      pass: routing.routedMs.p99 < routing.localMs.p99 + ROUTING_TARGET_MS,
    });
  }
  return rows;
}

function markdownTables(report) {
  const lines = ['| measure | value | target | met? |', '|---|---|---|---|'];
  for (const r of report.verdicts) lines.push(`| ${r.measure} | ${r.value} | ${r.target} | ${r.pass === undefined ? '—' : r.pass ? 'met' : '**not met**'} |`);
  const { scaleout, routing } = report.phases;
  if (scaleout) {
    lines.push(
      '',
      '| replicas | agents/s | POST → running p50 / p90 / p99 / max, ms | POST → 201 p50 / p99, ms | routed creates (p50 / p99 ms) | hub CPU, % of one core (ms/agent; event-loop thread %) | Postgres | Redis | bench (load + sim brokers) | machine busy | background before |',
      '|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|',
    );
    for (const r of scaleout.runs) {
      const c = r.cpu;
      const hubs = c.hubs.map((h, i) => `${fmt(h.percent, 0)}% (${fmt(h.msPerUnit)}; main thread ${fmt(c.hubMainThreads[i].percent, 0)}%)`).join(' + ');
      const routedCell = r.replicas > 1 ? `${r.routedAgents} (${fmt(r.e2eRoutedMs.p50)} / ${fmt(r.e2eRoutedMs.p99)}; local ${fmt(r.e2eLocalMs.p50)} / ${fmt(r.e2eLocalMs.p99)})` : '0';
      lines.push(
        `| ${r.replicas} | ${fmt(r.agentsPerSec, 1)} | ${fmt(r.e2eMs.p50)} / ${fmt(r.e2eMs.p90)} / ${fmt(r.e2eMs.p99)} / ${fmt(r.e2eMs.max)} | ${fmt(r.postResponseMs.p50)} / ${fmt(r.postResponseMs.p99)} | ${routedCell} | ${hubs} | ${fmt(c.postgres.percent, 0)}% (${fmt(c.postgres.msPerUnit)}) | ${fmt(c.redis.percent, 0)}% | ${fmt(c.bench.percent, 0)}% (${fmt(c.bench.msPerUnit)}) | ${fmt(c.machine.percent, 0)}% (steal ${fmt(c.steal.percent, 1)}%) | ${fmt(r.backgroundCpuPercent, 0)}% |`,
      );
    }
  }
  if (scaleout) {
    const notes = scaleout.runs.map((r) => {
      const sum = (k) => r.hubMetrics.reduce((t, h) => t + h[k], 0);
      return `${r.replicas} replica(s): ${fmt(sum('tunnelCommands') / r.agents)} tunnel commands, ${fmt(sum('statusApplied') / r.agents)} status reports applied (${fmt(sum('statusStale') / r.agents)} stale, ${fmt(sum('statusRejected') / r.agents)} rejected), ${fmt(sum('routedOk') / r.agents)} routed commands (unreachable ${sum('routedUnreachable')}, timeout ${sum('routedTimeout')})`;
    });
    lines.push('', `Per agent, from the hubs' /metrics: ${notes.join('; ')}.`);
  }
  if (routing) {
    const m = routing.metrics;
    lines.push(
      '',
      '| message → broker, ms | n | p50 | p90 | p99 | max | POST → 201 p50 / p99 |',
      '|---|---:|---:|---:|---:|---:|---|',
      `| local (POST to A, tunnel on A) | ${routing.localMs.n} | ${fmt(routing.localMs.p50)} | ${fmt(routing.localMs.p90)} | ${fmt(routing.localMs.p99)} | ${fmt(routing.localMs.max)} | ${fmt(routing.localPostResponseMs.p50)} / ${fmt(routing.localPostResponseMs.p99)} |`,
      `| routed (POST to B, forwarded to A) | ${routing.routedMs.n} | ${fmt(routing.routedMs.p50)} | ${fmt(routing.routedMs.p90)} | ${fmt(routing.routedMs.p99)} | ${fmt(routing.routedMs.max)} | ${fmt(routing.routedPostResponseMs.p50)} / ${fmt(routing.routedPostResponseMs.p99)} |`,
      '',
      '| hub metric (delta over the phase) | n | mean ms | p50 ≈ ms (bucket ≤) | p99 ≈ ms (bucket ≤) |',
      '|---|---:|---:|---|---|',
      `| A: graft_dispatch_duration_seconds{command="message"} (local send → broker's answer) | ${m.localDispatchOnA.count} | ${fmt(m.localDispatchOnA.meanMs)} | ${fmt(m.localDispatchOnA.p50.ms)} (${fmt(m.localDispatchOnA.p50.bucketLeMs, 1)}) | ${fmt(m.localDispatchOnA.p99.ms)} (${fmt(m.localDispatchOnA.p99.bucketLeMs, 1)}) |`,
      `| B: graft_routed_command_duration_seconds (lookup + forward → answer back) | ${m.routedOnB.count} | ${fmt(m.routedOnB.meanMs)} | ${fmt(m.routedOnB.p50.ms)} (${fmt(m.routedOnB.p50.bucketLeMs, 1)}) | ${fmt(m.routedOnB.p99.ms)} (${fmt(m.routedOnB.p99.bucketLeMs, 1)}) |`,
      '',
      `B's graft_routed_commands_total over the phase: ok ${m.routedOkOnB}, unreachable ${m.routedUnreachableOnB}, timeout ${m.routedTimeoutOnB}. ` +
        `The broker received ${routing.brokerReceivedMessages} \`message\` commands for ${routing.commands + routing.warmupCommands} messages (${routing.duplicateMessages} duplicate(s)). ` +
        `Hub CPU during the phase: A ${fmt(routing.cpu.hubs[0].percent, 0)}%, B ${fmt(routing.cpu.hubs[1].percent, 0)}%, Redis ${fmt(routing.cpu.redis.percent, 0)}% of one core; background before ${fmt(routing.backgroundCpuPercent, 0)}%.`,
    );
  }
  const warnLines = [];
  for (const [name, w] of [
    ...(scaleout?.runs.map((r) => [`scaleout ${r.replicas} replica(s)`, r.hubWarnings]) ?? []),
    ...(routing ? [['routing', routing.hubWarnings]] : []),
  ]) {
    const e = Object.entries(w.byEvent);
    if (e.length > 0) warnLines.push(`- ${name}: ${e.map(([k, v]) => `\`${k}\` ×${v}`).join(', ')}`);
  }
  lines.push('', warnLines.length > 0 ? `Hub warn/error events:\n${warnLines.join('\n')}` : 'No warn/error events in the hubs’ logs.');
  return lines.join('\n');
}

// --- main ----------------------------------------------------------------------------------------

async function main() {
  const settings = parseOptionsOrExit('bench-cluster', parseOptions, HELP);

  // The routing phase times arrivals with SimBroker's onCommand hook, new in the testkit.
  const simSource = join(ROOT, 'packages/testkit/dist/sim-broker.js');
  const staleTestkit = existsSync(simSource) && !readFileSync(simSource, 'utf8').includes('options.onCommand');
  requireBuiltWorkspace(
    'cluster',
    ['apps/hub/dist/main.js', 'packages/testkit/dist/index.js', 'packages/db/dist/index.js'],
    staleTestkit ? 'packages/testkit/dist predates SimBroker onCommand' : undefined,
  );

  const [testkit, { default: pg }] = await Promise.all([import('@graft/testkit'), import('pg')]);
  const interrupted = installExitHandlers({ killNow: killChildrenNow, cleanup, stopping: 'simulated brokers, hubs, Redis and Postgres' });
  const startedAt = new Date();
  const machine = machineInfo('the load generator, the simulated brokers, Postgres, Redis and every hub replica share these CPUs');
  // Others may edit the tree while dist/ stays as built: say which build was measured.
  const git = { ...gitState(), hubDistBuiltAt: statSync(join(ROOT, 'apps/hub/dist/server.js'), { throwIfNoEntry: false })?.mtime ?? null };
  reportMachine(machine);

  const phases = {};
  try {
    progress('postgres: starting a throwaway Postgres');
    resources.postgres = await testkit.startTestPostgres();
    progress('redis: starting a private redis-server');
    resources.redis = await testkit.startTestRedis();
    progress(`redis: ${resources.redis.url} (pid ${resources.redis.pid})`);
    if (settings.only.has('scaleout')) phases.scaleout = await scaleoutPhase(settings, testkit, pg);
    if (settings.only.has('routing')) phases.routing = await routingPhase(settings, testkit, pg);
  } catch (err) {
    if (interrupted()) {
      await cleanup();
      return;
    }
    process.stderr.write(`\nbench-cluster: failed: ${err?.stack ?? err}\n`);
    for (const c of resources.clusters) for (const h of c.hubs) process.stderr.write(`--- hub ${h.pid} (${c.label}) output (last 3000 characters) ---\n${h.output().slice(-3000)}\n`);
    await cleanup();
    process.exit(1);
  }

  progress('stopping Redis and Postgres');
  await cleanup();

  const report = { ...reportBase(startedAt, machine, git, settings), phases };
  report.verdicts = verdicts(report);
  const tables = markdownTables(report);
  report.markdown = tables;
  process.stdout.write(
    `\n## Cluster benchmark, ${startedAt.toISOString()}\n\n${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}; ${machine.note}.\n\n${tables}\n`,
  );
  printVerdict(report.verdicts.filter((r) => r.pass === false).map((r) => r.id));
  writeResults(settings.outDir, 'cluster', startedAt, report);
  process.exit(0);
}

await main();
