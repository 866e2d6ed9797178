#!/usr/bin/env node
// `pnpm bench:logs`: agent log throughput, latency and fan-out through the real pipeline (agent →
// output file → broker spool → tunnel → hub → Postgres → event bus → reader), in one run:
//   pipe      baseline: a raw `ws` binary pipe on loopback (MB/s)
//   single    one agent writing as fast as it can, followed over HTTP (follow=1): MB/s, ratio to the pipe
//   latency   one agent writing timestamped lines at --rate MB/s, followed over SSE: p50/p99 write-to-reader
//   fanout    --agents agents × --agent-rate KB/s for --secs s, --followers followers: loss, hub CPU
// Everything it starts (Postgres, the hub, the broker, agents, temp dirs) is stopped on exit.
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, percentile, processCpuMs } from './lib/bench-common.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const HELP = `Usage: pnpm bench:logs [options]

Measures agent logs end to end with real processes (embedded Postgres, a hub, a broker with the
process runtime) and prints a Markdown summary; results also go to bench-results/logs-<time>.json.
Needs a built workspace (pnpm build).

Options:
  --pipe-mb <n>       MB through the raw ws pipe baseline (default 200)
  --single-mb <n>     MB one agent writes as fast as it can (default 100)
  --rate <n>          MB/s of the latency phase's agent (default 10)
  --latency-secs <n>  seconds of the latency phase (default 10)
  --agents <n>        agents in the fan-out phase (default 50)
  --agent-rate <n>    KB/s each fan-out agent writes (default 200)
  --followers <n>     followers in the fan-out phase, each following agents/followers agents (default 10)
  --secs <n>          seconds the fan-out agents write (default 10)
  --out <dir>         where to write the JSON results (default bench-results/)
  -h, --help          this text
`;

const values = parseBenchArgs(
  {
    'pipe-mb': { type: 'string', default: '200' },
    'single-mb': { type: 'string', default: '100' },
    rate: { type: 'string', default: '10' },
    'latency-secs': { type: 'string', default: '10' },
    agents: { type: 'string', default: '50' },
    'agent-rate': { type: 'string', default: '200' },
    followers: { type: 'string', default: '10' },
    secs: { type: 'string', default: '10' },
  },
  HELP,
);
const num = (k) => {
  const n = Number(values[k]);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`bench:logs: --${k} must be a positive number, got ${values[k]}\n`);
    process.exit(2);
  }
  return n;
};
const S = {
  pipeMb: num('pipe-mb'),
  singleMb: num('single-mb'),
  rate: num('rate'),
  latencySecs: num('latency-secs'),
  agents: Math.floor(num('agents')),
  agentRateKb: num('agent-rate'),
  followers: Math.floor(num('followers')),
  secs: num('secs'),
};

const progress = (m) => process.stderr.write(`[bench:logs] ${m}\n`);
const fmt = (n) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const pct = (values, p) => (values.length === 0 ? 0 : percentile([...values].sort((a, b) => a - b), p));
const cleanups = [];
async function cleanup() {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch((err) => progress(`cleanup: ${err.message}`));
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => void cleanup().then(() => process.exit(130)));

async function pipePhase() {
  const { WebSocketServer, WebSocket } = await import(join(ROOT, 'apps/hub/node_modules/ws/wrapper.mjs'));
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  cleanups.push(() => new Promise((r) => wss.close(r)));
  const total = S.pipeMb * 1024 * 1024;
  const frame = Buffer.alloc(256 * 1024, 97);
  const done = new Promise((resolve) => {
    wss.on('connection', (sock) => {
      let got = 0;
      let t0 = 0;
      sock.on('message', (d) => {
        if (t0 === 0) t0 = performance.now();
        got += d.length;
        if (got >= total) resolve({ bytes: got, ms: performance.now() - t0 });
      });
    });
  });
  const ws = new WebSocket(`ws://127.0.0.1:${wss.address().port}`);
  await new Promise((r) => ws.once('open', r));
  let sent = 0;
  while (sent < total) {
    if (ws.bufferedAmount > 8 * 1024 * 1024) {
      await new Promise((r) => setImmediate(r));
      continue;
    }
    ws.send(frame);
    sent += frame.length;
  }
  const r = await done;
  ws.close();
  return { mbPerSec: r.bytes / 1024 / 1024 / (r.ms / 1000) };
}

async function main() {
  const testkit = await import(join(ROOT, 'packages/testkit/dist/index.js'));
  const { GraftClient } = await import(join(ROOT, 'packages/client/dist/index.js'));
  progress(`pipe: ${S.pipeMb} MB through a raw ws pipe on loopback`);
  const pipe = await pipePhase();
  progress(`pipe: ${fmt(pipe.mbPerSec)} MB/s`);

  const pg = await testkit.startTestPostgres();
  cleanups.push(() => pg.stop());
  const db = await testkit.createFreshDatabase(pg.adminUrl);
  cleanups.push(() => db.drop());
  const hub = await testkit.startHubProcess({ databaseUrl: db.url });
  cleanups.push(() => hub.stop('SIGKILL'));
  const admin = new GraftClient({ baseUrl: hub.url, token: hub.adminToken, timeoutMs: 30_000 });
  const projectId = (await admin.registerProject({ name: 'bench-logs' })).project.id;
  const brokerDir = mkdtempSync(join(tmpdir(), 'graft-bench-logs-broker-'));
  cleanups.push(() => rmSync(brokerDir, { recursive: true, force: true }));
  const credentials = await testkit.registerAndJoinBroker(hub.url, hub.adminToken, { name: 'bench-logs', projectIds: [projectId] }, { maxAgents: 200 });
  const broker = await testkit.startBrokerProcess({ dataDir: brokerDir, credentials, env: { GRAFT_BROKER_MAX_AGENTS: '200', GRAFT_BROKER_STOP_GRACE_MS: '500' } });
  cleanups.push(() => broker.stop('SIGKILL'));
  await broker.waitForLog((l) => l.event === 'tunnel.connected', 30_000);
  const scripts = mkdtempSync(join(tmpdir(), 'graft-bench-logs-scripts-'));
  cleanups.push(() => rmSync(scripts, { recursive: true, force: true }));
  const agentIds = [];
  cleanups.push(async () => {
    for (const id of agentIds) await admin.deleteAgent(id).catch(() => {});
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && (await admin.listAgents({ projectId, limit: 200 })).items.length > 0) await new Promise((r) => setTimeout(r, 200));
  });
  const agent = async (name, source, task = null) => {
    const file = join(scripts, `${name}.mjs`);
    writeFileSync(file, source);
    await admin.createTemplate({ name, projectId, harness: 'command', command: [process.execPath, file] });
    const a = await admin.createAgent({ projectId, name, template: name, ...(task ? { task } : {}) });
    agentIds.push(a.id);
    return a.id;
  };
  const headers = { authorization: `Bearer ${hub.adminToken}` };

  // --- single: as fast as it can, followed with follow=1 -----------------------------------------
  progress(`single: one agent writes ${S.singleMb} MB as fast as it can; a follower reads it through the hub`);
  const singleBytes = S.singleMb * 1024 * 1024;
  const singleId = await agent(
    'single',
    `const line = 'x'.repeat(1023) + '\\n'; const block = line.repeat(256); let left = ${singleBytes};
     const write = () => { while (left > 0) { left -= block.length; if (!process.stdout.write(block)) return process.stdout.once('drain', write); } };
     write();`,
  );
  const t0 = performance.now();
  let got = 0;
  let firstAt = 0;
  const hash = createHash('sha256');
  const res = await fetch(`${hub.url}/api/v1/agents/${singleId}/logs?follow=1`, { headers });
  for await (const piece of res.body) {
    if (firstAt === 0) firstAt = performance.now();
    got += piece.length;
    hash.update(piece);
  }
  const lastAt = performance.now();
  const expectedHash = createHash('sha256').update(`${'x'.repeat(1023)}\n`.repeat(256).repeat(Math.ceil(singleBytes / (1024 * 256)))).digest('hex');
  const single = {
    bytes: got,
    lossless: got === singleBytes && hash.digest('hex') === expectedHash,
    mbPerSec: got / 1024 / 1024 / ((lastAt - firstAt) / 1000),
    mbPerSecFromStart: got / 1024 / 1024 / ((lastAt - t0) / 1000),
  };
  progress(`single: ${fmt(single.mbPerSec)} MB/s (${fmt(single.mbPerSec / pipe.mbPerSec)}× the pipe), ${single.lossless ? 'byte-identical' : 'NOT byte-identical'}`);

  // --- latency: paced at --rate MB/s, timestamped lines, SSE follower ----------------------------
  progress(`latency: one agent writes ${S.rate} MB/s for ${S.latencySecs} s; an SSE follower measures write-to-reader latency`);
  const latencyId = await agent(
    'latency',
    `const rate = ${S.rate * 1024 * 1024}; const secs = ${S.latencySecs}; const pad = 'y'.repeat(200);
     const start = Date.now(); let written = 0; let n = 0;
     const tick = () => {
       const due = Math.min(rate * secs, ((Date.now() - start) / 1000) * rate);
       let out = '';
       while (written + out.length < due) { n++; out += 'T ' + n + ' ' + (performance.timeOrigin + performance.now()).toFixed(3) + ' ' + pad + '\\n'; }
       if (out) { process.stdout.write(out); written += out.length; }
       if (written < rate * secs) setTimeout(tick, 5); };
     tick();`,
  );
  const latencies = [];
  let lines = 0;
  let partial = '';
  const sse = await fetch(`${hub.url}/api/v1/agents/${latencyId}/logs`, { headers: { ...headers, accept: 'text/event-stream' } });
  const decoder = new TextDecoder();
  let buffered = '';
  outer: for await (const piece of sse.body) {
    buffered += decoder.decode(piece, { stream: true });
    for (let sep = buffered.indexOf('\n\n'); sep >= 0; sep = buffered.indexOf('\n\n')) {
      const event = buffered.slice(0, sep);
      buffered = buffered.slice(sep + 2);
      if (event.startsWith('event: end')) break outer;
      const data = /^data: (.*)$/m.exec(event)?.[1];
      if (!data) continue;
      const now = performance.timeOrigin + performance.now();
      const text = partial + JSON.parse(data).data;
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        const m = /^T (\d+) (\d+\.\d+) /.exec(line);
        if (!m) continue;
        lines++;
        if (Number(m[1]) !== lines) throw new Error(`latency: line ${m[1]} arrived as number ${lines} (gap or repeat)`);
        latencies.push(now - Number(m[2]));
      }
    }
  }
  const latency = { lines, p50Ms: pct(latencies, 50), p99Ms: pct(latencies, 99), maxMs: latencies.reduce((m, v) => Math.max(m, v), 0) };
  progress(`latency: ${lines} lines, p50 ${fmt(latency.p50Ms)} ms, p99 ${fmt(latency.p99Ms)} ms`);

  // --- fanout -------------------------------------------------------------------------------------
  progress(`fanout: ${S.agents} agents × ${S.agentRateKb} KB/s for ${S.secs} s, ${S.followers} followers`);
  const perAgentBytes = Math.floor(S.agentRateKb * 1024 * S.secs);
  const fanSource = `const rate = ${S.agentRateKb * 1024}; const total = ${perAgentBytes}; const start = Date.now(); let written = 0; let n = 0;
    const tick = () => { const due = Math.min(total, ((Date.now() - start) / 1000) * rate); let out = '';
      while (written + out.length < due) { n++; const l = 'F ' + n + ' ' + 'z'.repeat(100) + '\\n'; if (written + out.length + l.length > total) break; out += l; }
      if (out) { process.stdout.write(out); written += out.length; }
      if (total - written > 110) setTimeout(tick, 20); };
    tick();`;
  const fanFile = join(scripts, 'fan.mjs');
  writeFileSync(fanFile, fanSource);
  await admin.createTemplate({ name: 'fan', projectId, harness: 'command', command: [process.execPath, fanFile] });
  const hubCpu0 = processCpuMs(hub.pid);
  const fanStart = performance.now();
  const fanIds = [];
  for (let i = 0; i < S.agents; i++) {
    const a = await admin.createAgent({ projectId, name: `fan-${i}`, template: 'fan' });
    agentIds.push(a.id);
    fanIds.push(a.id);
  }
  // What each fan-out agent writes, by the same rule as its script: lines until the byte budget.
  let expectedFan = '';
  for (let n = 1, written = 0; ; n++) {
    const l = `F ${n} ${'z'.repeat(100)}\n`;
    if (written + l.length > perAgentBytes) break;
    expectedFan += l;
    written += l.length;
  }
  const expectedFanHash = createHash('sha256').update(expectedFan).digest('hex');
  const followOne = async (id) => {
    const r = await fetch(`${hub.url}/api/v1/agents/${id}/logs?follow=1`, { headers });
    const h = createHash('sha256');
    let bytes = 0;
    for await (const piece of r.body) {
      h.update(piece);
      bytes += piece.length;
    }
    const exact = h.digest('hex') === expectedFanHash;
    if (!exact) {
      // Tell a reader problem from a storage one: read the stored log again, whole.
      const again = await fetch(`${hub.url}/api/v1/agents/${id}/logs`, { headers });
      const stored = Buffer.from(await again.arrayBuffer());
      const phase = (await admin.getAgent(id)).phase;
      progress(`fanout: agent ${id} (${phase}): follower got ${bytes} bytes, stored log has ${stored.length}, expected ${Buffer.byteLength(expectedFan)}; stored ${createHash('sha256').update(stored).digest('hex') === expectedFanHash ? 'matches' : 'differs'}`);
    }
    return { bytes, exact };
  };
  const groups = Array.from({ length: S.followers }, (_, f) => fanIds.filter((_, i) => i % S.followers === f));
  const results = (await Promise.all(groups.map((ids) => Promise.all(ids.map(followOne))))).flat();
  const fanMs = performance.now() - fanStart;
  const hubCpu = processCpuMs(hub.pid) - hubCpu0;
  const fanout = {
    agents: S.agents,
    followers: S.followers,
    bytesExpectedPerAgent: perAgentBytes,
    lost: results.filter((r) => !r.exact).length,
    totalMb: results.reduce((n, r) => n + r.bytes, 0) / 1024 / 1024,
    wallSecs: fanMs / 1000,
    hubCpuPercent: (hubCpu / fanMs) * 100,
  };
  progress(`fanout: ${fmt(fanout.totalMb)} MB read, ${fanout.lost} agents with loss, hub CPU ${fmt(fanout.hubCpuPercent)}%`);

  await cleanup();
  const verdict = (ok) => (ok ? 'ok' : 'FAIL');
  const lines2 = [
    `## Logs (${new Date().toISOString()})`,
    '',
    '| phase | figure | target | |',
    '|---|---|---|---|',
    `| pipe (raw ws, loopback) | ${fmt(pipe.mbPerSec)} MB/s | baseline | |`,
    `| single agent, follow=1 | ${fmt(single.mbPerSec)} MB/s = ${fmt(single.mbPerSec / pipe.mbPerSec)}× the pipe (${fmt(single.mbPerSecFromStart)} MB/s from create), ${single.lossless ? 'byte-identical' : 'NOT identical'} | ≥ 0.5× | ${verdict(single.mbPerSec / pipe.mbPerSec >= 0.5 && single.lossless)} |`,
    `| latency at ${S.rate} MB/s (SSE) | p50 ${fmt(latency.p50Ms)} ms, p99 ${fmt(latency.p99Ms)} ms, max ${fmt(latency.maxMs)} ms, ${latency.lines} lines in order | p99 < 100 ms | ${verdict(latency.p99Ms < 100)} |`,
    `| fan-out ${S.agents} × ${S.agentRateKb} KB/s, ${S.followers} followers | ${fanout.lost} agents with loss, ${fmt(fanout.totalMb)} MB read in ${fmt(fanout.wallSecs)} s, hub CPU ${fmt(fanout.hubCpuPercent)}% of one core | zero loss | ${verdict(fanout.lost === 0)} |`,
  ];
  process.stdout.write(`${lines2.join('\n')}\n`);
  mkdirSync(values.out, { recursive: true });
  const file = join(values.out, `logs-${new Date().toISOString().replaceAll(':', '-')}.json`);
  writeFileSync(file, JSON.stringify({ settings: S, pipe, single, latency, fanout, id: randomUUID() }, null, 2));
  progress(`results: ${file}`);
}

main().catch(async (err) => {
  process.stderr.write(`bench:logs: ${err.stack ?? err.message}\n`);
  await cleanup();
  process.exit(1);
});
