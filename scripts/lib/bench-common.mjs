// Shared by the `pnpm bench:*` scripts: the command line, progress lines, statistics, the hub API,
// CPU accounting from /proc, the `running` listener, and stopping what a run started. Each script
// keeps its own phases, report, options and --help.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, freemem, loadavg, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { ROOT } from './workspace.mjs';

// --- command line --------------------------------------------------------------------------------

/** A bad command line: the script prints it with its --help and exits 2. */
export class UsageError extends Error {}

/** parseArgs (strict) of `options` plus the two every bench has, --out and -h/--help; --help prints `help` and exits 0. */
export function parseBenchArgs(options, help) {
  const { values } = parseArgs({
    options: {
      ...options,
      out: { type: 'string', default: join(ROOT, 'bench-results') },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(help);
    process.exit(0);
  }
  return values;
}

/**
 * The number in option `--name` (a whole one with `integer`), at least `min`; anything else is a
 * UsageError. An empty value counts as 0 unless `allowBlank` is false.
 */
export function numberOption(values, name, min, { integer = false, allowBlank = true } = {}) {
  const v = Number(values[name]);
  const blank = !allowBlank && values[name].trim() === '';
  if (blank || !(integer ? Number.isInteger(v) : Number.isFinite(v)) || v < min) {
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min} (got ${values[name]})`);
  }
  return v;
}

/** The ids --only selects, all of `known` without it; an unknown one is a UsageError naming what it is (`noun`). */
export function parseOnly(value, known, noun) {
  const only = value ? value.split(',').map((s) => s.trim()) : known;
  for (const id of only) if (!known.includes(id)) throw new UsageError(`--only: unknown ${noun} ${id} (known: ${known.join(', ')})`);
  return only;
}

/** Repeated `--flag KEY=VALUE` options as an object; a value without `KEY=` is a UsageError. */
export function keyValues(list, flag) {
  const out = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} takes KEY=VALUE (got ${kv})`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** Refuses GRAFT_LOG_LEVEL warn/error in `--flag` environment: the fixtures learn ports (and timings) from info-level lines. */
export function requireInfoLogLevel(env, flag, reason = 'the harness reads info-level log lines') {
  if (env.GRAFT_LOG_LEVEL === 'warn' || env.GRAFT_LOG_LEVEL === 'error') throw new UsageError(`${flag} GRAFT_LOG_LEVEL must be debug or info: ${reason}`);
}

/** The settings from `parse()`; a UsageError (or node:util's parseArgs refusing an option) prints `help` and exits 2. */
export function parseOptionsOrExit(script, parse, help) {
  try {
    return parse();
  } catch (err) {
    process.stderr.write(`${script}: ${err.message}\n\n${help}`);
    process.exit(2);
  }
}

/** Exits 1 with a hint to run `pnpm build` when a dist/ file is missing or `stale` names another build problem. */
export function requireBuiltWorkspace(name, paths, stale) {
  const missing = paths.filter((p) => !existsSync(join(ROOT, p)));
  const problem = missing.length > 0 ? `missing ${missing.join(', ')}` : stale;
  if (problem === undefined) return;
  process.stderr.write(`bench-${name}: the workspace is not built (${problem}).\nRun \`pnpm build\` first, then \`pnpm bench:${name}\`.\n`);
  process.exit(1);
}

// --- progress and numbers ------------------------------------------------------------------------

const t0 = Date.now();

/** A progress line on stderr, stamped with the seconds since the bench started (stdout is the report). */
export function progress(message) {
  const secs = ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench +${secs}s] ${message}\n`);
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** Count, min, p50/p90/p99, max and mean of the finite values (min, percentiles and max NaN when there are none). */
export function stats(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const mean = sorted.reduce((s, v) => s + v, 0) / (sorted.length || 1);
  return { n: sorted.length, min: sorted[0] ?? Number.NaN, p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN, mean };
}

/** A number for the report with `digits` decimals, or an em dash when there is none. */
export function fmt(n, digits = 2) {
  return Number.isFinite(n) ? n.toFixed(digits) : '—';
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `task(i)` for i in [0, n) with at most `limit` at once; stops at the first failure. */
export async function pool(n, limit, task) {
  let next = 0;
  let failed;
  const worker = async () => {
    while (failed === undefined && next < n) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  if (failed !== undefined) throw failed;
}

/** pool() over `n` agent creations with a progress line every 2 s; resolves with the performance.now() it started at. */
export async function poolWithProgress(label, n, limit, task) {
  let done = 0;
  const started = performance.now();
  const ticker = setInterval(() => {
    const secs = (performance.now() - started) / 1000;
    progress(`${label}: ${done}/${n} running after ${secs.toFixed(1)} s (${fmt(done / secs, 1)} agents/s so far)`);
  }, 2_000);
  try {
    await pool(n, limit, async (i) => {
      await task(i);
      done++;
    });
  } finally {
    clearInterval(ticker);
  }
  return started;
}

// --- the hub's API -------------------------------------------------------------------------------

/**
 * A JSON caller `(baseUrl, token, method, path, body)` of the hub's API; a non-2xx answer throws, and
 * with `urlInErrors` the message names the base URL too (with several replicas: which one).
 */
export function hubApi({ urlInErrors = false } = {}) {
  return async (baseUrl, token, method, path, body) => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${urlInErrors ? baseUrl : ''}${path} -> ${res.status}: ${text}`);
    return text === '' ? undefined : JSON.parse(text);
  };
}

// --- the machine and the code measured -----------------------------------------------------------

/** Which code was measured: the commit, and whether the tree had uncommitted changes. */
export function gitState() {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return { commit, dirty };
  } catch {
    return undefined;
  }
}

/** The machine the numbers come from, at the start of the run; `note` (optional) says what shares its CPUs. */
export function machineInfo(note) {
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    memTotalGiB: +(totalmem() / 2 ** 30).toFixed(1),
    memFreeGiB: +(freemem() / 2 ** 30).toFixed(1),
    loadavgAtStart: loadavg(),
    ...(note === undefined ? {} : { note }),
  };
}

/** Progress lines about the machine, with a warning when it is already busy (the numbers will be noisy). */
export function reportMachine(machine) {
  progress(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}, load average ${machine.loadavgAtStart.map((l) => l.toFixed(2)).join(' ')}`);
  if (machine.note !== undefined) progress(`machine: ${machine.note}`);
  if (machine.loadavgAtStart[0] > machine.cpus * 0.5) {
    progress(`warning: the machine is already busy (1-min load ${machine.loadavgAtStart[0].toFixed(2)} on ${machine.cpus} CPUs); expect noisy numbers`);
  }
}

/** The last line of the report on stdout: the ids that missed their target, or that all were met (the exit code stays 0). */
export function printVerdict(failedIds, missed = 'target(s) not met') {
  if (failedIds.length > 0) {
    process.stdout.write(`\nFAIL: ${failedIds.length} ${missed}: ${failedIds.join(', ')} (a measurement: the exit code stays 0)\n`);
  } else {
    process.stdout.write('\nAll targets met.\n');
  }
}

/** The fields every results file starts with: when, on what machine, which code, and the settings (`only` as a list). */
export function reportBase(startedAt, machine, git, settings) {
  const { only, ...plainSettings } = settings;
  return { startedAt, finishedAt: new Date(), machine: { ...machine, loadavgAtEnd: loadavg() }, git, settings: { ...plainSettings, only: [...only] } };
}

/** Writes `report` to `<outDir>/<name>-<startedAt>.json` and says where. */
export function writeResults(outDir, name, startedAt, report) {
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${name}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  progress(`results written to ${relative(process.cwd(), file) || file}`);
}

// --- CPU accounting from /proc (Linux; elsewhere the figures are NaN) ----------------------------

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // keep the Linux default
}

/** The fields after a /proc stat line's parenthesised command name: state ppid ... utime(11) stime(12) cutime(13) cstime(14). */
function statFields(stat) {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime+stime of a /proc stat file (a process's or one thread's), in ms; NaN when it is gone. */
function statCpuMs(file) {
  try {
    const f = statFields(readFileSync(file, 'utf8'));
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks;
  } catch {
    return Number.NaN;
  }
}

/** utime+stime of one process (not its children), in ms; NaN when it is gone or there is no /proc. */
export function processCpuMs(pid) {
  return statCpuMs(`/proc/${pid}/stat`);
}

/** utime+stime of a process's main thread (a Node process's event loop), in ms; NaN when gone. */
export function mainThreadCpuMs(pid) {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

/** This process's CPU ms so far (user + system): the load generator's, and whatever else runs in the bench. */
export function ownCpuMs() {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1000;
}

/** Every process in /proc by pid: parent, command name, its own CPU ticks, and those with its reaped children added. */
export function processTable() {
  const out = new Map();
  let entries;
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = statFields(s);
      const ticks = Number(f[11]) + Number(f[12]);
      out.set(Number(e), { ppid: Number(f[1]), comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')), ticks, ticksWithReaped: ticks + Number(f[13]) + Number(f[14]) });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** CPU ms used so far by a process tree of `table`, including reaped children (Postgres forks a backend per connection). */
export function treeCpuMsIn(table, rootPid) {
  if (!rootPid || !table.has(rootPid)) return Number.NaN;
  let ticks = 0;
  const stack = [rootPid];
  while (stack.length > 0) {
    const pid = stack.pop();
    ticks += table.get(pid)?.ticksWithReaped ?? 0;
    for (const [child, st] of table) if (st.ppid === pid) stack.push(child);
  }
  return (ticks * 1000) / clockTicks;
}

/** treeCpuMsIn() on /proc as it is now. */
export function treeCpuMs(rootPid) {
  if (!rootPid) return Number.NaN;
  return treeCpuMsIn(processTable(), rootPid);
}

/** The first line of /proc/stat: user nice system idle iowait irq softirq steal, in ticks. */
function machineTicks() {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  } catch {
    return [];
  }
}

/** CPU ms the whole machine spent busy (all cores, kernel included). */
export function machineBusyMs() {
  const f = machineTicks();
  if (f.length < 8) return Number.NaN;
  return ((f[0] + f[1] + f[2] + f[5] + f[6]) * 1000) / clockTicks;
}

/** CPU ms the hypervisor gave to someone else while this VM wanted to run (steal). */
export function machineStealMs() {
  const f = machineTicks();
  return f.length < 8 ? Number.NaN : (f[7] * 1000) / clockTicks;
}

/**
 * Machine-wide CPU use over a short idle window (% of one core) apart from `ownPids` and this process,
 * and the busiest processes in it: on a shared box this says whether the phase that follows will be
 * disturbed, and by what. `treePid` (Postgres) is counted with its children.
 */
export async function backgroundCpu(label, ownPids, treePid, ms = 2_000) {
  const ownCpu = () => ownPids.reduce((sum, pid) => sum + (pid === treePid ? treeCpuMs(pid) : processCpuMs(pid)), 0) + ownCpuMs();
  const before = processTable();
  const a = machineBusyMs() - ownCpu();
  const started = performance.now();
  await sleep(ms);
  const elapsed = performance.now() - started;
  // Our own idle processes still settle after startup (JIT, GC): only the rest counts as background.
  // /proc counts in 10 ms ticks per process, so a quiet window can come out slightly below zero.
  const pct = Math.max(0, ((machineBusyMs() - ownCpu() - a) / elapsed) * 100);
  const busiest = [];
  for (const [pid, p] of processTable()) {
    const d = p.ticks - (before.get(pid)?.ticks ?? 0);
    if (d > 0 && !ownPids.includes(pid) && pid !== process.pid) busiest.push({ pid, comm: p.comm, percent: (d * 1000 * 100) / clockTicks / elapsed });
  }
  busiest.sort((x, y) => y.percent - x.percent);
  const top = busiest.slice(0, 3);
  const named = top.map((b) => `${b.comm} ${b.pid} ${fmt(b.percent, 0)}%`).join(', ');
  progress(
    `${label}: background CPU (everything but this benchmark's processes) ${fmt(pct, 0)}% of one core` +
      `${pct > 20 ? ` (expect noisy numbers; busiest other processes: ${named || 'none still running'})` : ''}`,
  );
  return { percent: pct, busiest: top };
}

// --- observing `running` -------------------------------------------------------------------------

/**
 * Listens on a connected pg client for agents reaching phase `running`: a trigger on this (throwaway)
 * database sends a NOTIFY when the hub's UPDATE that sets phase = 'running' commits, and the client
 * timestamps its arrival. Push, not polling: no requests are added to the hub, and the resolution is
 * the delivery delay of a notification to an idle connection on the same machine (well under a ms).
 */
export async function listenForRunning(client) {
  await client.query(`CREATE OR REPLACE FUNCTION bench_notify_running() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('bench_running', NEW.id::text); RETURN NULL; END $$`);
  await client.query(`CREATE TRIGGER bench_running AFTER UPDATE ON agents FOR EACH ROW
    WHEN (NEW.phase = 'running' AND OLD.phase IS DISTINCT FROM 'running') EXECUTE FUNCTION bench_notify_running()`);
  const seen = new Map(); // agent id -> performance.now() of the notification
  const waiters = new Map(); // agent id -> resolve
  client.on('notification', (n) => {
    const at = performance.now();
    if (n.channel !== 'bench_running' || !n.payload || seen.has(n.payload)) return;
    seen.set(n.payload, at);
    const w = waiters.get(n.payload);
    if (w) {
      waiters.delete(n.payload);
      w(at);
    }
  });
  await client.query('LISTEN bench_running');
  return {
    /** Resolves with the performance.now() at which the agent was seen running. */
    running(agentId, timeoutMs = 30_000) {
      const at = seen.get(agentId);
      if (at !== undefined) return Promise.resolve(at);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(agentId);
          reject(new Error(`agent ${agentId} was not running within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.set(agentId, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
    },
  };
}

// --- stopping what a run started -----------------------------------------------------------------

/** Runs named async cleanup steps in order; a failing step is reported on stderr and the rest still run. */
export async function runCleanupSteps(steps) {
  for (const [name, fn] of steps) {
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`[bench] cleanup of ${name} failed: ${err?.message ?? err}\n`);
    }
  }
}

/** Drops simulated brokers' tunnels at once; synchronous, so it also works from the 'exit' event. */
export function killSims(sims) {
  for (const s of sims) {
    try {
      s.kill();
    } catch {
      // not connected
    }
  }
}

/** Sends `signal` to each pid, skipping missing ones; a process already gone is fine. */
export function killPids(pids, signal) {
  for (const pid of pids) {
    if (!pid || pid <= 0) continue;
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * On exit, `killNow('SIGKILL')` (nothing async runs there); on SIGINT/SIGTERM, `cleanup()` and exit
 * 130/143. Returns whether a signal came: the main flow then fails on purpose and must not report it.
 */
export function installExitHandlers({ killNow, cleanup, stopping }) {
  let interrupted = false;
  process.on('exit', () => killNow('SIGKILL'));
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      interrupted = true;
      process.stderr.write(`\n[bench] ${sig}: stopping ${stopping}…\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  return () => interrupted;
}
