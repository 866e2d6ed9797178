import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { Agent } from '@graft/protocol';
import { type BrokerProcess, createFreshDatabase, eventually, type FreshDatabase, type HubProcess, registerAndJoinBroker, startBrokerProcess, startHubProcess } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { formatPrefixedLine, LineSplitter, prefixColour, useColour } from './commands/logs-command.js';
import { CLI_MAIN, ERROR_LINE, runCli, tempConfigDir } from './test-support/run-cli.js';

// `graft logs` against a real hub and a real broker running real agent processes; the hub is
// killed and started again on the same port and database under a follower.
let database: FreshDatabase;
let hub: HubProcess;
let hubEnv: Record<string, string>;
let hubUrl: string;
let broker: BrokerProcess;
let admin: GraftClient;
let cliEnv: Record<string, string>;
let projectId: string;
const dirs: string[] = [];
const children: ChildProcess[] = [];
/** In every agent's command, so leftovers can be found and killed. */
const MARKER = `graft-cli-logs-${randomBytes(6).toString('hex')}`;

const graft = (...args: string[]) => runCli(args, cliEnv);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function tempDirOf(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** A `graft` that keeps running: its output so far, and how it ended. */
function startCli(args: string[]): { child: ChildProcess; stdout: () => string; ended: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: { HOME: tmpdir(), ...cliEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const ended = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  return { child, stdout: () => stdout, ended };
}

/** An agent running `sh -c script` (with the marker appended), env as given. */
async function agentRunning(name: string, script: string, env: Record<string, string> = {}, project = projectId): Promise<Agent> {
  await admin.createTemplate({ name, projectId: project, harness: 'command', command: ['sh', '-c', `${script}; : ${MARKER}`] });
  return admin.createAgent({ projectId: project, name, template: name, env });
}

/** Resolves once the agent's run is over and its whole log is at the hub: a plain follow ends exactly then. */
async function logComplete(id: string): Promise<string> {
  const res = await fetch(`${hubUrl}/api/v1/agents/${id}/logs?follow=1`, { headers: { authorization: `Bearer ${hubEnv.GRAFT_ADMIN_TOKEN}` }, signal: AbortSignal.timeout(20_000) });
  return res.text();
}

/** Kills the process groups of agents the broker left (they outlive it), by its pid files and by the marker. */
function killAgents(): void {
  const groups = new Set<number>();
  for (const dataDir of dirs) {
    const roots = [join(dataDir, 'agents'), join(dataDir, 'agents', 'process')];
    for (const root of roots) {
      if (!existsSync(root)) continue;
      for (const id of readdirSync(root)) {
        try {
          groups.add(Number(readFileSync(join(root, id, 'pid'), 'utf8').trim()));
        } catch {
          // not an agent dir, or nothing ran
        }
      }
    }
  }
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(MARKER)) groups.add(Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[2]));
    } catch {
      // gone meanwhile
    }
  }
  for (const g of groups) {
    if (!Number.isInteger(g) || g <= 1 || g === process.pid) continue;
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

beforeAll(async () => {
  database = await createFreshDatabase(inject('pgAdminUrl'));
  const port = await freePort();
  hubEnv = {
    GRAFT_HUB_PORT: String(port),
    GRAFT_ADMIN_TOKEN: randomBytes(32).toString('hex'),
    GRAFT_MASTER_KEY: randomBytes(32).toString('hex'),
    // Shared by the hub processes of this file, so a log archived by one is readable by the next.
    GRAFT_LOG_ARCHIVE_DIR: tempDirOf('graft-cli-logs-archive-'),
  };
  hub = await startHubProcess({ databaseUrl: database.url, env: hubEnv });
  hubUrl = hub.url;
  admin = new GraftClient({ baseUrl: hubUrl, token: hub.adminToken, timeoutMs: 10_000 });
  projectId = (await admin.registerProject({ name: 'cli-logs' })).project.id;
  const credentials = await registerAndJoinBroker(hubUrl, hub.adminToken, { name: 'logs-node', autoProvide: true });
  broker = await startBrokerProcess({ dataDir: tempDirOf('graft-cli-logs-broker-'), credentials, env: { GRAFT_BROKER_RUNTIMES: 'process' } });
  await broker.waitForLog((l) => l.event === 'tunnel.connected');
  cliEnv = { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: hubUrl, GRAFT_TOKEN: hub.adminToken };
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await broker?.stop('SIGKILL');
  killAgents();
  await hub?.stop('SIGKILL');
  await database?.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('graft logs: prefixes (pure)', () => {
  it('pads the name, colours it only for a terminal, the same colour for the same name', () => {
    expect(formatPrefixedLine('web', 'hello', { width: 6, colour: false })).toBe('web    | hello\n');
    const coloured = formatPrefixedLine('web', 'hello', { width: 6, colour: true });
    expect(coloured).toBe(`\u001b[${prefixColour('web')}mweb    |\u001b[0m hello\n`);
    expect(prefixColour('web')).toBe(prefixColour('web'));
    // Names differing in one character spread over several colours.
    expect(new Set(['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map(prefixColour)).size).toBeGreaterThan(2);
    expect(useColour(true, undefined)).toBe(true);
    expect(useColour(true, '')).toBe(true);
    expect(useColour(true, '1')).toBe(false);
    expect(useColour(false, undefined)).toBe(false);
  });

  it('holds a partial line back until its newline, and hands it out on flush', () => {
    const lines = new LineSplitter();
    expect(lines.push('par')).toEqual([]);
    expect(lines.push('tial\nnext\nla')).toEqual(['partial', 'next']);
    expect(lines.push('\n')).toEqual(['la']);
    expect(lines.flush()).toBeUndefined();
    lines.push('no newline');
    expect(lines.flush()).toBe('no newline');
  });
});

describe('graft logs: usage', () => {
  it('exits 2 with one line for an agent and --project together, neither, a non-id and bad numbers', async () => {
    const id = '0196f0c4-0000-7000-8000-000000000000';
    const cases: Array<[string[], RegExp]> = [
      [['logs', id, '--project', 'p'], /either an agent id or --project, not both/],
      [['logs'], /missing agent id/],
      [['logs', 'not-an-id'], /not-an-id is not an agent id/],
      [['logs', '--project', 'p', '--since', '3'], /--since takes one agent/],
      [['logs', id, '--tail', 'x'], /--tail <n>.*must be an integer/],
      [['logs', id, '--since', '-1'], /--since <seq>.*must be a sequence number/],
      [['logs', id, '--stream', 'system'], /--stream <stream>.*Allowed choices are stdout, stderr/],
    ];
    const runs = await Promise.all(cases.map(([args]) => graft(...args)));
    runs.forEach((run, i) => {
      const [args, message] = cases[i] ?? [[], /./];
      expect(run.code, `graft ${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(/^graft: [^\n]+\n$/);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
    });
  });

  it('--help explains the command with examples', async () => {
    const run = await graft('logs', '--help');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: graft logs [options] [agent]');
    expect(run.stdout).toContain('$ graft logs --project web -f');
  });
});

describe('graft logs <agent>', () => {
  const OUT = 'out 1\nout 2\nout 3\nout 4\nout 5\n';
  const ERR = 'err 1\nerr 2\n';
  let talker: Agent;

  beforeAll(async () => {
    // Pauses between the streams, so the order they were captured in is the order they were written.
    talker = await agentRunning('talker', 'echo "out 1"; echo "out 2"; sleep 0.3; echo "err 1" >&2; sleep 0.3; echo "out 3"; echo "err 2" >&2; sleep 0.3; echo "out 4"; echo "out 5"');
    await logComplete(talker.id);
  });

  it('prints what the agent wrote, both streams in order; --stream picks one; --tail the last lines', async () => {
    const [all, out, err, tail, tailErr] = await Promise.all([
      graft('logs', talker.id),
      graft('logs', talker.id, '--stream', 'stdout'),
      graft('logs', talker.id, '--stream', 'stderr'),
      graft('logs', talker.id, '--tail', '2'),
      graft('logs', talker.id, '--tail', '1', '--stream', 'stderr'),
    ]);
    for (const r of [all, out, err, tail, tailErr]) expect([r.code, r.stderr]).toEqual([0, '']);
    expect(all.stdout).toBe('out 1\nout 2\nerr 1\nout 3\nerr 2\nout 4\nout 5\n');
    expect(out.stdout).toBe(OUT);
    expect(err.stdout).toBe(ERR);
    expect(tail.stdout).toBe('out 4\nout 5\n');
    expect(tailErr.stdout).toBe('err 2\n');
  });

  it('-f on a finished agent prints everything and ends; --since skips what was seen', async () => {
    const followed = await graft('logs', talker.id, '-f');
    expect([followed.code, followed.stderr, followed.stdout]).toEqual([0, '', 'out 1\nout 2\nerr 1\nout 3\nerr 2\nout 4\nout 5\n']);
    // The chunks as the hub numbered them: --since N prints exactly those after N.
    const sse = await (await fetch(`${hubUrl}/api/v1/agents/${talker.id}/logs`, { headers: { authorization: `Bearer ${hub.adminToken}`, accept: 'text/event-stream' } })).text();
    const chunks = [...sse.matchAll(/^data: (\{"seq".*)$/gm)].map((m) => JSON.parse(m[1] ?? '') as { seq: number; data: string });
    expect(chunks.length).toBeGreaterThan(2);
    const cut = chunks[1]?.seq ?? 0;
    const since = await graft('logs', talker.id, '--since', String(cut));
    expect(since.stdout).toBe(chunks.filter((c) => c.seq > cut).map((c) => c.data).join(''));
    expect(since.stdout.length).toBeLessThan(followed.stdout.length);
  });

  it('an unknown agent fails with the hub error line, exit 1', async () => {
    const run = await graft('logs', '0196f0c4-0000-7000-8000-000000000000');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toMatch(/code not_found/);
  });

  it('-f on a running agent prints its output as it comes and ends when it finishes', async () => {
    const ticker = await agentRunning('ticker', 'for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.3; done');
    const started = Date.now();
    const run = await graft('logs', ticker.id, '-f');
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(run.stdout).toBe('tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n');
    // It stayed open while the agent ran (about 1.5 s), rather than printing what there was and leaving.
    expect(Date.now() - started).toBeGreaterThan(1_000);
  });

  it('-f rides out a hub killed and started again: no gap, no repeat', async () => {
    const lines = Array.from({ length: 60 }, (_, i) => `line ${i + 1}`);
    const slow = await agentRunning('slow', 'for i in $(seq 1 60); do echo "line $i"; sleep 0.08; done');
    const follower = startCli(['logs', slow.id, '-f']);
    await eventually(() => expect(follower.stdout()).toContain('line 5\n'), { timeoutMs: 15_000 });
    await hub.stop('SIGKILL');
    const printedBeforeRestart = follower.stdout();
    hub = await startHubProcess({ databaseUrl: database.url, env: hubEnv });
    expect(hub.url).toBe(hubUrl);
    const end = await Promise.race([follower.ended, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`follower did not end: ${follower.stdout()}`)), 25_000))]);
    expect(end.code, end.stderr).toBe(0);
    expect(end.stdout).toBe(`${lines.join('\n')}\n`);
    // It was cut off midway and went on: the first connection did not carry it to the end.
    expect(printedBeforeRestart.length).toBeLessThan(end.stdout.length);
    expect(end.stderr).toMatch(/reconnecting/);
  }, 40_000);
});

describe('graft logs --project', () => {
  const linesOf = (who: string) => [`partial ${who}`, `${who} 1`, `${who} 2`, `${who} 3`, `${who} err`];
  // A line written in two pieces (it must come out whole), stdout lines, then a stderr line.
  const SCRIPT = 'printf "par"; sleep 0.3; printf "tial %s\\n" "$WHO"; for i in 1 2 3; do echo "$WHO $i"; sleep 0.2; done; echo "$WHO err" >&2';

  /** Lines of `name | text` output per agent name; fails on any line without a prefix padded to `width`. */
  function byAgent(stdout: string, width: number): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const line of stdout.split('\n').filter((l) => l !== '')) {
      expect(line.slice(width, width + 3), line).toBe(' | ');
      const name = line.slice(0, width).trimEnd();
      out.set(name, [...(out.get(name) ?? []), line.slice(width + 3)]);
    }
    return out;
  }

  it('-f prefixes each line with its agent, picks up agents created later, runs until Ctrl-C; without -f prints each log in turn', async () => {
    const project = (await admin.registerProject({ name: 'cli-logs-many' })).project.id;
    const first = [await agentRunning('alpha', SCRIPT, { WHO: 'alpha' }, project), await agentRunning('beta-longer', SCRIPT, { WHO: 'beta-longer' }, project)];
    const follower = startCli(['logs', '--project', 'cli-logs-many', '-f']);
    await eventually(() => expect(follower.stdout()).toMatch(/^alpha {7}\| /m), { timeoutMs: 15_000 });
    const late = await agentRunning('gamma', SCRIPT, { WHO: 'gamma' }, project);
    await Promise.all([...first, late].map((a) => logComplete(a.id)));
    await eventually(() => expect(follower.stdout()).toContain('gamma       | gamma err\n'), { timeoutMs: 10_000 });
    follower.child.kill('SIGINT');
    const end = await follower.ended;
    expect([end.code, end.stderr]).toEqual([0, '']);
    // Not a terminal: no colour codes.
    expect(end.stdout).not.toContain('\u001b');
    const seen = byAgent(end.stdout, 'beta-longer'.length);
    expect([...seen.keys()].sort()).toEqual(['alpha', 'beta-longer', 'gamma']);
    for (const who of ['alpha', 'beta-longer', 'gamma']) expect(seen.get(who), who).toEqual(linesOf(who));

    const all = await graft('logs', '--project', project);
    expect([all.code, all.stderr]).toEqual([0, '']);
    const pad = (who: string) => who.padEnd('beta-longer'.length);
    expect(all.stdout).toBe(['alpha', 'beta-longer', 'gamma'].map((who) => linesOf(who).map((l) => `${pad(who)} | ${l}\n`).join('')).join(''));
  }, 40_000);
});
