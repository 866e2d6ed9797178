#!/usr/bin/env node
// `pnpm bench:api`: measures the hub's hot API paths against a bare express hello-world measured in
// the same run on the same machine. The load generator shares the CPU with the servers, so absolute
// req/s depends on the machine; the ratio against the baseline is the number to compare over time.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, gitState, hubApi, installExitHandlers, keyValues, killPids, machineInfo, numberOption, ownCpuMs, parseBenchArgs, parseOnly, parseOptionsOrExit, percentile, printVerdict, processTable, progress, reportBase, reportMachine, requireBuiltWorkspace, requireInfoLogLevel, runCleanupSteps, treeCpuMsIn, writeResults } from './lib/bench-common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const BASELINE_FLAG = '--baseline-server';

// --- options -------------------------------------------------------------------------------------

const SCENARIO_IDS = ['get-agent', 'status', 'status-spread', 'list-admin', 'list-admin-1c', 'list-member', 'list-member-small', 'list-deep'];

const HELP = `Usage: pnpm bench:api [options]
       node scripts/bench-api.mjs [options]

Benchmarks the hub REST API with autocannon, all in one run on this machine:
  baseline           bare express hello-world in a separate process (GET /hello)
  get-agent          GET  /api/v1/agents/:id with the admin API key
  status             POST /api/v1/agents/:id/status, agent token, ONE agent, bodies alternating
                     {"activity":"thinking"} / {"activity":"executing","detail":"npm test"}
  status-spread      the same, but one agent per connection (no contention on one row)
  list-admin         GET  /api/v1/agents?limit=50 after seeding --agents agents (admin API key)
  list-admin-1c      the same with 1 connection: one list's latency without queueing in front of it
  list-member        the same as a non-admin member of the seeded project (user JWT)
  list-member-small  the same as a member of a second, small project (10 agents) only
  list-deep          admin, with a cursor from the middle of the seeded agents
Each scenario gets a warmup (discarded), then a measured run. Prints a Markdown table and writes
bench-results/api-<timestamp>.json. Exits 0 even when a target is missed (it is a measurement);
FAIL is printed in the table. Needs a built workspace: run \`pnpm build\` first.

Options:
  --duration <s>      measured seconds per scenario (default 10)
  --warmup <s>        discarded warmup seconds before each scenario (default 2)
  --connections <n>   autocannon connections (default 10)
  --agents <n>        agents to seed before the list scenarios (default 100000)
  --pool-size <n>     hub GRAFT_DB_POOL_SIZE (default: the hub's default, 20)
  --hub-env K=V       extra environment for the hub process (repeatable), e.g. for profiling
  --only <ids>        comma-separated scenarios to run (the baseline always runs):
                      ${SCENARIO_IDS.join(',')}
  --out <dir>         where to write the JSON results (default bench-results/)
  -h, --help          this text

Uses a throwaway embedded Postgres, or GRAFT_TEST_DATABASE_URL (a superuser URL) when set.
`;

function parseOptions() {
  const values = parseBenchArgs(
    {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '10' },
      agents: { type: 'string', default: '100000' },
      'pool-size': { type: 'string' },
      'hub-env': { type: 'string', multiple: true, default: [] },
      only: { type: 'string' },
    },
    HELP,
  );
  const num = (name, min) => numberOption(values, name, min);
  const only = parseOnly(values.only, SCENARIO_IDS, 'scenario');
  const hubEnv = keyValues(values['hub-env'], '--hub-env');
  // The fixture learns the hub's port from its info-level `hub.listening` line.
  requireInfoLogLevel(hubEnv, '--hub-env', 'the harness waits for the hub.listening log line');
  if (values['pool-size'] !== undefined) hubEnv.GRAFT_DB_POOL_SIZE = String(Math.floor(num('pool-size', 1)));
  return {
    duration: num('duration', 1),
    warmup: num('warmup', 0),
    connections: Math.floor(num('connections', 1)),
    agents: Math.floor(num('agents', 0)),
    hubEnv,
    only: new Set(only),
    outDir: values.out,
  };
}

// --- helpers -------------------------------------------------------------------------------------

const api = hubApi();

/** Same layout as the hub's uuidv7(): 48-bit ms timestamp, version 7, variant 10. */
function uuidv7(ms) {
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// --- CPU accounting (Linux /proc; elsewhere the CPU columns stay empty) --------------------------
// Throughput on a shared 2-core box moves with whatever else runs; CPU time per request does not,
// so it is the better number for spotting where the hub spends its time.

/** CPU ms so far of the server (with its children), Postgres (with its backends) and this process, the load generator. */
function cpuSnapshot(serverPid) {
  const table = processTable();
  return { server: treeCpuMsIn(table, serverPid), postgres: treeCpuMsIn(table, resources.postgres?.pid), loadgen: ownCpuMs() };
}

// --- lifecycle: everything started here is stopped on exit, SIGINT, SIGTERM and errors -----------

const resources = {
  baseline: undefined, // ChildProcess
  fixture: undefined, // HubFixture
  postgres: undefined, // TestPostgres
  pgClient: undefined, // pg.Client used for seeding
  cannon: undefined, // running autocannon instance
};
let cleaning;

function killChildrenNow(signal) {
  // The synchronous part of cleanup: it must also work from the 'exit' event, where nothing async runs.
  const b = resources.baseline;
  const baselineRunning = b && b.exitCode === null && b.signalCode === null;
  killPids([baselineRunning ? b.pid : undefined, resources.fixture?.hub.pid], signal);
}

function cleanup() {
  cleaning ??= (async () => {
    try {
      resources.cannon?.stop();
    } catch {
      // not running
    }
    killChildrenNow('SIGTERM');
    await runCleanupSteps([
      ['seeding client', async () => resources.pgClient?.end()],
      ['hub fixture', async () => resources.fixture?.stop()],
      ['postgres', async () => resources.postgres?.stop()],
    ]);
    resources.fixture = undefined;
    resources.postgres = undefined;
  })();
  return cleaning;
}

// --- baseline ------------------------------------------------------------------------------------

async function startBaseline() {
  const child = spawn(process.execPath, [SELF, BASELINE_FLAG], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  resources.baseline = child;
  const port = await new Promise((ok, fail) => {
    let buf = '';
    const timer = setTimeout(() => fail(new Error('baseline server did not start within 10 s')), 10_000);
    child.stdout.on('data', (c) => {
      buf += c.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      ok(JSON.parse(buf.slice(0, nl)).port);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`baseline server exited with ${code} before listening`));
    });
  });
  return { url: `http://127.0.0.1:${port}`, pid: child.pid };
}


// --- measuring -----------------------------------------------------------------------------------

function runCannon(autocannon, opts, samples) {
  return new Promise((ok, fail) => {
    const inst = autocannon(opts, (err, res) => {
      resources.cannon = undefined;
      if (err) fail(err);
      else ok(res);
    });
    resources.cannon = inst;
    // autocannon's own histogram has 1 ms resolution; keep exact per-response times for p50/p99.
    if (samples) inst.on('response', (_client, status, _bytes, ms) => status < 300 && samples.push(ms));
  });
}

async function measure(ctx, scenario) {
  const { autocannon, settings } = ctx;
  let adjacentBaseline;
  if (scenario.targetSpec?.minRatio !== undefined && ctx.baseline) {
    const b = await measure({ ...ctx, baseline: undefined }, { id: `baseline-before-${scenario.id}`, name: `baseline before ${scenario.id}`, url: ctx.baseline.url, serverPid: ctx.baseline.pid, cannon: {} });
    adjacentBaseline = { reqPerSec: b.reqPerSec, p50: b.p50, p99: b.p99 };
  }
  const base = { url: scenario.url, connections: settings.connections, ...scenario.cannon };
  if (settings.warmup > 0) {
    progress(`${scenario.name}: warmup ${settings.warmup}s (discarded)`);
    await runCannon(autocannon, { ...base, duration: settings.warmup });
  }
  const load = loadavg()[0];
  progress(`${scenario.name}: measuring ${settings.duration}s with ${base.connections} connection(s)`);
  const samples = [];
  const cpuBefore = cpuSnapshot(scenario.serverPid);
  const res = await runCannon(autocannon, { ...base, duration: settings.duration }, samples);
  const cpuAfter = cpuSnapshot(scenario.serverPid);
  samples.sort((a, b) => a - b);
  const total = res['2xx'] + res.non2xx;
  const perReq = (k) => (total > 0 ? ((cpuAfter[k] - cpuBefore[k]) * 1000) / total : Number.NaN);
  const out = {
    id: scenario.id,
    name: scenario.name,
    target: scenario.target,
    targetSpec: scenario.targetSpec,
    reqPerSec: res.requests.average,
    reqPerSecTotal: total / res.duration,
    p50: percentile(samples, 50),
    p90: percentile(samples, 90),
    p99: percentile(samples, 99),
    max: samples.at(-1) ?? Number.NaN,
    ok2xx: res['2xx'],
    non2xx: res.non2xx,
    statusCodes: res.statusCodeStats,
    errors: res.errors,
    timeouts: res.timeouts,
    durationSecs: res.duration,
    bytesPerResponse: total > 0 ? res.throughput.total / total : Number.NaN,
    cpuUsPerRequest: { server: perReq('server'), postgres: perReq('postgres'), loadgen: perReq('loadgen') },
    loadavg1mBefore: load,
    autocannon: { requests: res.requests, latency: res.latency },
    adjacentBaseline,
  };
  const cpu = out.cpuUsPerRequest;
  progress(
    `${scenario.name}: ${fmt(out.reqPerSec, 0)} req/s, p50 ${fmt(out.p50)} ms, p99 ${fmt(out.p99)} ms, non-2xx ${out.non2xx}, errors ${out.errors}, timeouts ${out.timeouts}; ` +
      `CPU µs/req server ${fmt(cpu.server, 0)}, postgres ${fmt(cpu.postgres, 0)}, load generator ${fmt(cpu.loadgen, 0)}`,
  );
  return out;
}

// --- setup via the API ---------------------------------------------------------------------------

const STATUS_BODIES = [JSON.stringify({ activity: 'thinking' }), JSON.stringify({ activity: 'executing', detail: 'npm test' })];

function statusRequests(agentId, token) {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const path = `/api/v1/agents/${agentId}/status`;
  return STATUS_BODIES.map((body) => ({ method: 'POST', path, headers, body }));
}

/** Creates an agent, mints its token and reports it through created → provisioning → starting → running. */
async function runningAgent(hubUrl, adminToken, projectId, templateName, name) {
  const agent = await api(hubUrl, adminToken, 'POST', '/api/v1/agents', { projectId, name, template: templateName });
  const { token } = await api(hubUrl, adminToken, 'POST', `/api/v1/agents/${agent.id}/token`);
  for (const phase of ['provisioning', 'starting', 'running']) {
    await api(hubUrl, token, 'POST', `/api/v1/agents/${agent.id}/status`, { phase });
  }
  const now = await api(hubUrl, adminToken, 'GET', `/api/v1/agents/${agent.id}`);
  if (now.phase !== 'running') throw new Error(`agent ${name} should be running after its status reports, is ${now.phase}`);
  return { agent: now, token };
}

async function setUp(hubUrl, adminToken) {
  const { project } = await api(hubUrl, adminToken, 'POST', '/api/v1/projects/register', { name: 'bench' });
  const template = await api(hubUrl, adminToken, 'POST', '/api/v1/templates', {
    name: 'bench-template',
    projectId: project.id,
    harness: 'command',
    command: ['sleep', 'infinity'],
  });
  const main = await runningAgent(hubUrl, adminToken, project.id, template.name, 'bench-agent');
  return { project, template, agent: main.agent, agentToken: main.token };
}

async function devLogin(hubUrl, email) {
  return api(hubUrl, undefined, 'POST', '/api/v1/auth/dev-login', { email });
}

async function seedAgents(client, { projectId, templateId, createdBy, count }) {
  const BATCH = 5000;
  // Spread ids over the `count` ms before now so they are time-ordered like real UUIDv7 ids.
  const startMs = Date.now() - count - 1000;
  const started = Date.now();
  let lastReported = 0;
  for (let from = 0; from < count; from += BATCH) {
    const n = Math.min(BATCH, count - from);
    const ids = new Array(n);
    for (let i = 0; i < n; i++) ids[i] = uuidv7(startMs + from + i);
    // A realistic mix of phases, so per-phase indexes and statistics are not degenerate.
    await client.query(
      `INSERT INTO agents (id, project_id, name, template_id, template_version, phase, activity, desired_state,
                           pending_reason, task, labels, created_by, created_at, updated_at)
       SELECT t.id, $1, 'seed-' || lpad((($4 + t.n)::int)::text, 7, '0'), $2, 1, p.phase,
              CASE WHEN p.phase = 'running' THEN 'idle' END,
              CASE p.phase WHEN 'stopped' THEN 'stopped' WHEN 'suspended' THEN 'suspended' ELSE 'running' END,
              CASE WHEN p.phase = 'created' THEN 'no_broker' END,
              'seeded by bench-api', '{"bench":"seed"}'::jsonb, $3,
              to_timestamp(($5::bigint + $4 + t.n) / 1000.0), to_timestamp(($5::bigint + $4 + t.n) / 1000.0)
       FROM unnest($6::uuid[]) WITH ORDINALITY AS t(id, n)
       CROSS JOIN LATERAL (SELECT (ARRAY['running', 'stopped', 'suspended', 'created'])[1 + (($4 + t.n)::int % 4)] AS phase) p`,
      [projectId, templateId, createdBy, from, startMs, ids],
    );
    const done = from + n;
    if (done - lastReported >= 20_000 || done === count) {
      lastReported = done;
      progress(`seeding: ${done.toLocaleString('en-US')} / ${count.toLocaleString('en-US')} agents (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    }
  }
  return Date.now() - started;
}

// --- report --------------------------------------------------------------------------------------

function judge(result, baseline) {
  const against = result.adjacentBaseline ?? baseline;
  result.ratio = against ? result.reqPerSec / against.reqPerSec : Number.NaN;
  if (!result.targetSpec) return;
  const checks = [result.non2xx === 0 && result.errors === 0 && result.timeouts === 0];
  if (result.targetSpec.minRatio !== undefined) checks.push(result.ratio >= result.targetSpec.minRatio);
  if (result.targetSpec.maxP99 !== undefined) checks.push(result.p99 < result.targetSpec.maxP99);
  result.pass = checks.every(Boolean);
}

function markdownTables(results, settings, extra) {
  const lines = [
    `autocannon, ${settings.connections} connections, ${settings.duration} s measured after a ${settings.warmup} s warmup per scenario; ` +
      `p50/p99 over every 2xx response${extra.agentRows ? `; list scenarios run with ${extra.agentRows.toLocaleString('en-US')} agents in the database` : ''}.`,
    '',
    '| scenario | req/s | p50 ms | p99 ms | ratio vs baseline | target | pass/fail |',
    '|---|---:|---:|---:|---:|---|---|',
  ];
  for (const r of results) {
    const verdict = r.pass === undefined ? '—' : r.pass ? 'pass' : '**FAIL**';
    const ratio = r.id === 'baseline' ? '1.00×' : r.adjacentBaseline ? `${fmt(r.ratio)}× (of ${fmt(r.adjacentBaseline.reqPerSec, 0)} measured just before)` : `${fmt(r.ratio)}×`;
    lines.push(`| ${r.name} | ${fmt(r.reqPerSec, 0)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${ratio} | ${r.target ?? '—'} | ${verdict} |`);
  }
  lines.push('', '| scenario | non-2xx | errors / timeouts | server CPU µs/req | Postgres CPU µs/req | load generator CPU µs/req | bytes/response |', '|---|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const c = r.cpuUsPerRequest;
    const codes = r.non2xx > 0 ? ` (${Object.entries(r.statusCodes).filter(([code]) => !code.startsWith('2')).map(([code, v]) => `${v.count}× ${code}`).join(', ')})` : '';
    lines.push(`| ${r.id} | ${r.non2xx}${codes} | ${r.errors} / ${r.timeouts} | ${fmt(c.server, 0)} | ${r.id === 'baseline' ? '—' : fmt(c.postgres, 0)} | ${fmt(c.loadgen, 0)} | ${fmt(r.bytesPerResponse, 0)} |`);
  }
  return lines.join('\n');
}

// --- main ----------------------------------------------------------------------------------------

async function main() {
  const settings = parseOptionsOrExit('bench-api', parseOptions, HELP);
  requireBuiltWorkspace('api', ['apps/hub/dist/main.js', 'packages/testkit/dist/index.js', 'packages/db/dist/index.js']);

  const [{ default: autocannon }, { startTestPostgres, startHubFixture }, { default: pg }] = await Promise.all([
    import('autocannon'),
    import('@graft/testkit'),
    import('pg'),
  ]);
  const interrupted = installExitHandlers({ killNow: killChildrenNow, cleanup, stopping: 'hub, baseline and Postgres' });
  const ctx = { autocannon, settings };
  const startedAt = new Date();
  const machine = machineInfo();
  const git = gitState();
  reportMachine(machine);

  const results = [];
  const extra = {};
  const listTarget = { target: 'p99 < 20 ms, 0 non-2xx', targetSpec: { maxP99: 20 } };
  const statusTarget = { target: '≥ 0.5× baseline req/s, p99 < 25 ms, 0 non-2xx', targetSpec: { minRatio: 0.5, maxP99: 25 } };
  try {
    // 1. Baseline, alone on the machine (apart from the load generator).
    progress('baseline: starting a bare express hello-world in a child process');
    const baseline = await startBaseline();
    progress(`baseline: listening on ${baseline.url} (pid ${baseline.pid})`);
    results.push(
      await measure(ctx, { id: 'baseline', name: 'baseline: express hello-world GET /hello', url: `${baseline.url}/hello`, serverPid: baseline.pid, cannon: {} }),
    );
    // Kept running (idle) so every scenario with a ratio target is compared with a baseline
    // measured right before it: on this shared 2-core VM the same request rate drifts by ±30%
    // over a few minutes, and adjacent pairs cancel most of that drift.
    ctx.baseline = { url: `${baseline.url}/hello`, pid: baseline.pid };

    // 2. Postgres, a hub on a fresh database, and one running agent with its token.
    progress('postgres: starting a throwaway Postgres');
    resources.postgres = await startTestPostgres();
    progress(`hub: starting the hub process on a fresh database${Object.keys(settings.hubEnv).length ? ` with ${JSON.stringify(settings.hubEnv)}` : ''}`);
    // Long agent tokens, so a long --duration cannot outlive the tokens minted at setup.
    const hubEnv = { GRAFT_LOG_LEVEL: 'info', GRAFT_AGENT_TOKEN_TTL_SECS: '86400', ...settings.hubEnv };
    resources.fixture = await startHubFixture(resources.postgres.adminUrl, { env: hubEnv });
    const { hub, database } = resources.fixture;
    progress(`hub: listening on ${hub.url} (pid ${hub.pid})`);
    const adminToken = hub.adminToken;
    const authAdmin = { authorization: `Bearer ${adminToken}` };
    const setup = await setUp(hub.url, adminToken);
    const agentId = setup.agent.id;
    progress(`setup: project ${setup.project.id}, agent ${agentId} running, agent token minted`);

    // 3. One agent by id.
    if (settings.only.has('get-agent')) {
      results.push(
        await measure(ctx, {
          id: 'get-agent',
          name: 'GET /api/v1/agents/:id (admin API key)',
          url: `${hub.url}/api/v1/agents/${agentId}`,
          serverPid: hub.pid,
          cannon: { headers: authAdmin },
        }),
      );
    }

    // 4. Status reports; each connection alternates the two bodies.
    if (settings.only.has('status')) {
      results.push(
        await measure(ctx, {
          id: 'status',
          name: 'POST /api/v1/agents/:id/status (agent token, 1 agent)',
          url: hub.url,
          serverPid: hub.pid,
          cannon: { requests: statusRequests(agentId, setup.agentToken) },
          ...statusTarget,
        }),
      );
      const after = await api(hub.url, adminToken, 'GET', `/api/v1/agents/${agentId}`);
      if (after.phase !== 'running' || !['thinking', 'executing'].includes(after.activity)) {
        throw new Error(`agent state after the status load is ${after.phase}/${after.activity}, expected running/thinking|executing`);
      }
    }
    if (settings.only.has('status-spread')) {
      // One agent per connection: measures the status path without every writer racing for one row.
      progress(`status-spread: creating ${settings.connections} more running agents`);
      const spread = [];
      for (let i = 0; i < settings.connections; i++) {
        spread.push(await runningAgent(hub.url, adminToken, setup.project.id, setup.template.name, `bench-spread-${i}`));
      }
      let nextClient = 0;
      results.push(
        await measure(ctx, {
          id: 'status-spread',
          name: `POST /api/v1/agents/:id/status (agent token, ${settings.connections} agent${settings.connections === 1 ? '' : 's'}, 1 per connection)`,
          url: hub.url,
          serverPid: hub.pid,
          cannon: {
            requests: statusRequests(agentId, setup.agentToken),
            setupClient: (client) => {
              const a = spread[nextClient++ % spread.length];
              client.setRequests(statusRequests(a.agent.id, a.token));
            },
          },
          ...statusTarget,
        }),
      );
    }

    // 5. Lists over many agents.
    const listIds = ['list-admin', 'list-admin-1c', 'list-member', 'list-member-small', 'list-deep'].filter((id) => settings.only.has(id));
    if (listIds.length > 0) {
      resources.pgClient = new pg.Client({ connectionString: database.url });
      await resources.pgClient.connect();
      progress(`seeding: ${settings.agents.toLocaleString('en-US')} agents into project ${setup.project.id} (batches of 5,000)`);
      extra.seedMs = await seedAgents(resources.pgClient, {
        projectId: setup.project.id,
        templateId: setup.template.id,
        createdBy: setup.project.createdBy,
        count: settings.agents,
      });
      let smallMember;
      if (settings.only.has('list-member-small')) {
        // A second project with a handful of agents made through the API, and a user who is a member of it only.
        const { project: small } = await api(hub.url, adminToken, 'POST', '/api/v1/projects/register', { name: 'bench-small' });
        const tpl = await api(hub.url, adminToken, 'POST', '/api/v1/templates', { name: 'small-template', projectId: small.id, harness: 'command', command: ['true'] });
        for (let i = 0; i < 10; i++) await api(hub.url, adminToken, 'POST', '/api/v1/agents', { projectId: small.id, name: `small-${i}`, template: tpl.name });
        smallMember = await devLogin(hub.url, 'bench-small-member@example.com');
        await api(hub.url, adminToken, 'PUT', `/api/v1/projects/${small.id}/members/${smallMember.user.id}`, { role: 'member' });
      }
      progress('seeding: ANALYZE agents');
      await resources.pgClient.query('ANALYZE agents');
      const { rows: countRows } = await resources.pgClient.query('SELECT count(*)::int AS n FROM agents');
      extra.agentRows = countRows[0].n;
      progress(`seeding: done, ${extra.agentRows.toLocaleString('en-US')} agent rows (${(extra.seedMs / 1000).toFixed(1)} s to seed)`);
      const rows = extra.agentRows.toLocaleString('en-US');

      const firstPage = await api(hub.url, adminToken, 'GET', '/api/v1/agents?limit=50');
      if (firstPage.items.length !== Math.min(50, extra.agentRows) || (extra.agentRows > 50 && !firstPage.nextCursor)) {
        throw new Error(`admin list returned ${firstPage.items.length} items, nextCursor ${firstPage.nextCursor}`);
      }

      if (settings.only.has('list-admin')) {
        results.push(
          await measure(ctx, {
            id: 'list-admin',
            name: `GET /api/v1/agents?limit=50 (admin API key, ${rows} agents)`,
            url: `${hub.url}/api/v1/agents?limit=50`,
            serverPid: hub.pid,
            cannon: { headers: authAdmin },
            ...listTarget,
          }),
        );
      }

      if (settings.only.has('list-admin-1c')) {
        // The same request with no queueing in front of it: what one list costs with 100k agents.
        results.push(
          await measure(ctx, {
            id: 'list-admin-1c',
            name: `GET /api/v1/agents?limit=50 (admin API key, ${rows} agents, 1 connection)`,
            url: `${hub.url}/api/v1/agents?limit=50`,
            serverPid: hub.pid,
            cannon: { headers: authAdmin, connections: 1 },
            ...listTarget,
          }),
        );
      }

      if (settings.only.has('list-member')) {
        const member = await devLogin(hub.url, 'bench-member@example.com');
        await api(hub.url, adminToken, 'PUT', `/api/v1/projects/${setup.project.id}/members/${member.user.id}`, { role: 'member' });
        const page = await api(hub.url, member.token, 'GET', '/api/v1/agents?limit=50');
        if (page.items.length !== 50) throw new Error(`member list returned ${page.items.length} items, expected 50`);
        results.push(
          await measure(ctx, {
            id: 'list-member',
            name: 'GET /api/v1/agents?limit=50 (member of the big project, user JWT)',
            url: `${hub.url}/api/v1/agents?limit=50`,
            serverPid: hub.pid,
            cannon: { headers: { authorization: `Bearer ${member.token}` } },
            ...listTarget,
          }),
        );
      }

      if (settings.only.has('list-member-small')) {
        const page = await api(hub.url, smallMember.token, 'GET', '/api/v1/agents?limit=50');
        if (page.items.length !== 10) throw new Error(`small-project member list returned ${page.items.length} items, expected 10`);
        results.push(
          await measure(ctx, {
            id: 'list-member-small',
            name: 'GET /api/v1/agents?limit=50 (member of a 10-agent project only, user JWT)',
            url: `${hub.url}/api/v1/agents?limit=50`,
            serverPid: hub.pid,
            cannon: { headers: { authorization: `Bearer ${smallMember.token}` } },
            ...listTarget,
          }),
        );
      }

      if (settings.only.has('list-deep')) {
        const { rows: mid } = await resources.pgClient.query('SELECT id FROM agents ORDER BY id OFFSET $1 LIMIT 1', [Math.floor(extra.agentRows / 2)]);
        const cursor = Buffer.from(mid[0].id, 'utf8').toString('base64url');
        const deep = await api(hub.url, adminToken, 'GET', `/api/v1/agents?limit=50&cursor=${cursor}`);
        if (deep.items.length === 0 || !(deep.items[0].id > mid[0].id)) throw new Error('the deep page does not continue after its cursor');
        results.push(
          await measure(ctx, {
            id: 'list-deep',
            name: 'GET /api/v1/agents?limit=50&cursor=<middle> (admin API key, deep page)',
            url: `${hub.url}/api/v1/agents?limit=50&cursor=${cursor}`,
            serverPid: hub.pid,
            cannon: { headers: authAdmin },
            ...listTarget,
          }),
        );
      }
    }
    const warnings = resources.fixture.hub.logs.filter((l) => l.level === 'error' || l.level === 'warn');
    if (warnings.length > 0) extra.hubWarnings = warnings.slice(0, 20);
  } catch (err) {
    if (interrupted()) {
      // The signal handler is already cleaning up and will exit.
      await cleanup();
      return;
    }
    process.stderr.write(`\nbench-api: failed: ${err?.stack ?? err}\n`);
    const out = resources.fixture?.hub.output();
    if (out) process.stderr.write(`--- hub output (last 4000 characters) ---\n${out.slice(-4000)}\n`);
    await cleanup();
    process.exit(1);
  }

  progress('stopping the hub and Postgres');
  await cleanup();

  const baseline = results.find((r) => r.id === 'baseline');
  for (const r of results) judge(r, baseline);
  const tables = markdownTables(results, settings, extra);
  process.stdout.write(`\n## API benchmark, ${startedAt.toISOString()}\n\n${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}\n\n${tables}\n`);
  printVerdict(
    results.filter((r) => r.pass === false).map((r) => r.id),
    'scenario(s) missed the target',
  );

  const report = {
    ...reportBase(startedAt, machine, git, settings),
    ...extra,
    results,
    markdown: tables,
  };
  writeResults(settings.outDir, 'api', startedAt, report);
  process.exit(0);
}

// --- entry ---------------------------------------------------------------------------------------
// The baseline runs in its own process (this same file) so it never shares an event loop with
// autocannon, just as the hub does not.
if (process.argv[2] === BASELINE_FLAG) {
  const { default: express } = await import('express');
  const app = express();
  app.get('/hello', (_req, res) => res.json({ ok: true }));
  const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  });
  // The parent holds our stdin open; when it dies (even by SIGKILL) the pipe closes and we follow.
  process.stdin.resume();
  process.stdin.on('close', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
} else {
  await main();
}
