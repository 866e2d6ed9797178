#!/usr/bin/env node
// `pnpm bench:runtimes`: start latency of each agent runtime on this machine, next to the hub's own
// dispatch overhead measured in the same run.
//   runtimes  for process, bwrap and docker (Podman): --agents agents started one at a time straight
//             through the runtime adapter the broker uses (prepare + start, resolved once the agent
//             runs), then removed; p50/p99 per runtime, and each as a ratio of the process runtime's.
//   hub       `pnpm bench:dispatch --only latency` with the same number of agents: POST /agents → the
//             hub shows `running`, split into the broker's runtime start and hub + tunnel overhead.
// Everything it starts (a private Podman service, containers, sandboxes, temp dirs) is stopped on exit.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, percentile } from './lib/bench-common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNTIMES = ['process', 'bwrap', 'docker'];
const HELP = `Usage: pnpm bench:runtimes [options]

Measures agent start latency per runtime (prepare + start through the broker's own adapters:
process, bwrap, docker against a private Podman service with a locally built image), then runs
\`pnpm bench:dispatch --only latency\` for the hub's overhead in the same run. Prints progress to
stderr and a Markdown summary to stdout, and writes bench-results/runtimes-<timestamp>.json.
Needs a built workspace (pnpm build) and podman, bubblewrap (npm test installs them).

Options:
  --agents <n>     agents per runtime, and in the hub phase (default 50)
  --warmup <n>     agents started and discarded first, per runtime (default 5)
  --only <list>    comma-separated runtimes (default ${RUNTIMES.join(',')})
  --no-hub         skip the hub phase
  --out <dir>      where to write the JSON results (default bench-results/)
  -h, --help       this text
`;

function options() {
  const values = parseBenchArgs(
    {
      agents: { type: 'string', default: '50' },
      warmup: { type: 'string', default: '5' },
      only: { type: 'string', default: RUNTIMES.join(',') },
      'no-hub': { type: 'boolean', default: false },
    },
    HELP,
  );
  const int = (name) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${values[name]}`);
    return n;
  };
  const only = values.only.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only.filter((r) => !RUNTIMES.includes(r));
  if (unknown.length > 0) throw new Error(`--only: unknown runtime ${unknown[0]} (one of ${RUNTIMES.join(', ')})`);
  return { agents: int('agents'), warmup: int('warmup'), only, hub: !values['no-hub'], out: values.out };
}

const progress = (m) => process.stderr.write(`[bench:runtimes] ${m}\n`);
const stats = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length, max: s.at(-1) };
};
const fmt = (n) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

const cleanups = [];
async function cleanup() {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch (err) {
      progress(`cleanup: ${err.message}`);
    }
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => void cleanup().then(() => process.exit(130)));

async function runtimePhase(name, settings, env) {
  const runtime = env.make(name);
  const spec = {
    projectId: randomUUID(),
    name: 'bench',
    harness: 'command',
    runtime: name,
    image: null,
    command: ['sleep', '600'],
    env: {},
    task: null,
    labels: {},
    network: true,
    resources: {},
    repository: null,
    secretEnv: [],
  };
  const ids = [];
  cleanups.push(async () => {
    for (const id of ids) await runtime.remove(id).catch(() => {});
    await runtime.close();
  });
  const samples = [];
  const total = settings.warmup + settings.agents;
  for (let i = 0; i < total; i++) {
    const id = randomUUID();
    ids.push(id);
    const t0 = performance.now();
    await runtime.prepare(id, spec, { fresh: false });
    await runtime.start(id, spec, { resume: false, generation: 1 });
    const ms = performance.now() - t0;
    const state = await runtime.inspect(id);
    if (state.state !== 'running') throw new Error(`${name}: agent ${id} is ${state.state} right after start`);
    if (i >= settings.warmup) samples.push(ms);
    if ((i + 1) % 10 === 0) progress(`${name}: ${i + 1}/${total} started`);
  }
  const removeStart = performance.now();
  for (const id of ids.splice(0)) await runtime.remove(id);
  const removeMs = (performance.now() - removeStart) / total;
  await runtime.close();
  return { ...stats(samples), removeMsPerAgent: removeMs };
}

function hubPhase(settings) {
  progress(`hub: pnpm bench:dispatch --only latency --agents ${settings.agents}`);
  const outDir = mkdtempSync(join(tmpdir(), 'graft-bench-runtimes-hub-'));
  cleanups.push(() => rmSync(outDir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/bench-dispatch.mjs'), '--only', 'latency', '--agents', String(settings.agents), '--warmup', String(settings.warmup), '--out', outDir], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`bench:dispatch exited with ${r.status ?? r.signal}`);
  const file = readdirSync(outDir).find((f) => f.startsWith('dispatch-') && f.endsWith('.json'));
  if (!file) throw new Error('bench:dispatch wrote no results');
  const latency = JSON.parse(readFileSync(join(outDir, file), 'utf8')).phases?.latency;
  if (!latency) throw new Error('bench:dispatch results have no latency phase');
  return latency;
}

async function main() {
  const settings = options();
  const broker = await import(join(ROOT, 'apps/broker/dist/index.js'));
  const testkit = await import(join(ROOT, 'packages/testkit/dist/index.js'));
  const { createLogger } = await import(join(ROOT, 'packages/log/dist/index.js'));
  // Warnings and errors only, on stderr: stdout is the Markdown summary.
  const log = createLogger({ level: 'warn', sink: (line) => process.stderr.write(`${line}\n`) });
  const work = mkdtempSync(join(tmpdir(), 'graft-bench-runtimes-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  const tools = { binDir: join(work, 'bin'), runDir: join(work, 'run') };
  mkdirSync(tools.binDir);
  mkdirSync(tools.runDir);
  writeFileSync(join(tools.binDir, 'graft-agent'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  writeFileSync(join(tools.binDir, 'graft-agent-lib.mjs'), 'export {};\n');
  const baseEnv = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: work };
  let docker = null;
  if (settings.only.includes('docker')) {
    progress('docker: starting a private Podman service and the test agent image');
    const image = await testkit.prepareTestAgentImage(join(ROOT, '.tools', 'podman-test-images'));
    const service = await testkit.startPodmanService({ imageStores: [image.store] });
    cleanups.push(() => service.stop());
    docker = { socketPath: service.socketPath, image: image.image };
  }
  const make = (name) => {
    const rootDir = join(work, 'agents', name);
    switch (name) {
      case 'process':
        return new broker.ProcessRuntime({ rootDir, baseEnv, tools, log });
      case 'bwrap':
        return new broker.BwrapRuntime({ rootDir, baseEnv, tools, log });
      case 'docker':
        return new broker.DockerRuntime({ engine: { socketPath: docker.socketPath }, rootDir, defaultImage: docker.image, brokerLabel: `bench-${randomUUID()}`, tools, log });
    }
  };
  const results = { runtimes: {}, hub: null };
  for (const name of settings.only) {
    progress(`${name}: ${settings.warmup} warm-up + ${settings.agents} agents, one at a time`);
    results.runtimes[name] = await runtimePhase(name, settings, { make });
  }
  if (settings.hub) results.hub = hubPhase(settings);
  await cleanup();

  const base = results.runtimes.process?.p50;
  const lines = [
    `## Runtime start latency (${settings.agents} agents each, one at a time; ${new Date().toISOString()})`,
    '',
    '| runtime | p50 ms | p99 ms | mean ms | max ms | p50 vs process | remove ms/agent |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...Object.entries(results.runtimes).map(
      ([name, s]) => `| ${name} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${fmt(s.mean)} | ${fmt(s.max)} | ${base ? `${(s.p50 / base).toFixed(1)}×` : '-'} | ${fmt(s.removeMsPerAgent)} |`,
    ),
  ];
  if (results.hub) {
    const { e2eMs: e, runtimeStartMs: r, overheadMs: o } = results.hub;
    lines.push(
      '',
      `Hub dispatch in the same run (bench:dispatch latency, process runtime, ${settings.agents} agents, POST → running):`,
      '',
      '| part | p50 ms | p99 ms |',
      '|---|---:|---:|',
      `| end to end | ${fmt(e.p50)} | ${fmt(e.p99)} |`,
      `| broker runtime start | ${fmt(r.p50)} | ${fmt(r.p99)} |`,
      `| hub + tunnel overhead | ${fmt(o.p50)} | ${fmt(o.p99)} |`,
    );
    for (const [name, s] of Object.entries(results.runtimes)) lines.push(`- ${name}: runtime p50 ${fmt(s.p50)} ms is ${(s.p50 / o.p50).toFixed(1)}× the hub's overhead p50`);
    results.hub = { e2eMs: e, runtimeStartMs: r, overheadMs: o };
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  mkdirSync(settings.out, { recursive: true });
  const file = join(settings.out, `runtimes-${new Date().toISOString().replaceAll(':', '-')}.json`);
  writeFileSync(file, JSON.stringify({ settings, git: execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim(), ...results }, null, 2));
  progress(`results: ${file}`);
}

main().catch(async (err) => {
  process.stderr.write(`bench:runtimes: ${err.stack ?? err.message}\n`);
  await cleanup();
  process.exit(1);
});
