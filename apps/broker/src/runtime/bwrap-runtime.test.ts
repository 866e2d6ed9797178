import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '@graft/log';
import type { AgentSpec } from '@graft/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AgentTools, RuntimeState } from './agent-runtime.js';
import { BwrapRuntime, type BwrapRuntimeOptions } from './bwrap-runtime.js';
import { type RuntimeUnderTest, runtimeContract } from './runtime-contract.js';

/** A home of the broker's own that agents must not see (the sandbox gives them an empty one). */
let hostHome: string;

beforeAll(async () => {
  hostHome = await mkdtemp(join(tmpdir(), 'graft-bwrap-host-home-'));
  await writeFile(join(hostHome, 'secret'), 'broker secret\n');
});

afterAll(async () => {
  await rm(hostHome, { recursive: true, force: true });
});

const baseEnv = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', SHARED: 'from-base', HOME: hostHome });

/** Pids of live processes whose cwd lies under `rootDir`, sandboxed ones included (they see the same paths); zombies have no cwd. */
async function agentProcesses(rootDir: string): Promise<number[]> {
  const root = `${await realpath(rootDir)}/`;
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => null);
    if (cwd?.startsWith(root)) pids.push(Number(name));
  }
  return pids;
}

interface BwrapSubject extends RuntimeUnderTest {
  rootDir: string;
  runtime: BwrapRuntime;
  reopen(): Promise<BwrapRuntime>;
}

async function makeBwrapRuntime(tools?: AgentTools, options: Partial<BwrapRuntimeOptions> = {}): Promise<BwrapSubject> {
  const rootDir = await mkdtemp(join(tmpdir(), 'graft-bwrap-runtime-'));
  const logLines: string[] = [];
  const log = createLogger({ level: 'debug', sink: (line) => logLines.push(line) });
  const instances: BwrapRuntime[] = [];
  const open = (removeGraceMs?: number) => {
    const runtime = new BwrapRuntime({ rootDir, baseEnv: baseEnv(), log, pollIntervalMs: 50, removeGraceMs, ...(tools ? { tools } : {}), ...options });
    instances.push(runtime);
    return runtime;
  };
  return {
    rootDir,
    runtime: open(),
    reopen: async () => open(),
    cleanup: async () => {
      for (const runtime of instances) await runtime.close();
      const janitor = open(200);
      for (const id of await janitor.list()) await janitor.remove(id);
      await janitor.close();
      // Anything still running in an agent workspace (bwrap's init included) escaped stop/remove: kill it, then fail.
      const strays = await agentProcesses(rootDir);
      for (const pid of strays) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {}
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      await rm(rootDir, { recursive: true, force: true });
      expect(strays, 'stray agent processes after cleanup').toEqual([]);
      const errors = logLines.filter((line) => (JSON.parse(line) as { level: string }).level === 'error');
      expect(errors, 'runtime logged errors').toEqual([]);
    },
  };
}

runtimeContract('bwrap', makeBwrapRuntime);

describe('BwrapRuntime', () => {
  let subject: BwrapSubject;
  let rt: BwrapRuntime;
  let toolsRoot: string;
  let tools: AgentTools;
  let relay: Server;

  // A graft-agent that is a node script talking to the relay socket, as the real one does.
  beforeAll(async () => {
    toolsRoot = await mkdtemp(join(tmpdir(), 'graft-bwrap-tools-'));
    tools = { binDir: join(toolsRoot, 'bin'), runDir: join(toolsRoot, 'run') };
    for (const dir of [tools.binDir, tools.runDir]) await mkdir(dir);
    const tool = [
      '#!/usr/bin/env node',
      "const socket = require('node:net').connect(process.env.GRAFT_HUB_SOCKET);",
      "socket.on('data', (d) => process.stdout.write('node ' + process.versions.node.split('.')[0] + ': ' + d));",
      "socket.on('error', (err) => { console.log('relay error ' + err.code); process.exitCode = 1; });",
    ].join('\n');
    await writeFile(join(tools.binDir, 'graft-agent'), `${tool}\n`);
    await chmod(join(tools.binDir, 'graft-agent'), 0o755);
    relay = createServer((socket) => socket.end('relay here\n'));
    await new Promise<void>((resolve) => relay.listen(join(tools.runDir, 'hub.sock'), resolve));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => relay.close(() => resolve()));
    await rm(toolsRoot, { recursive: true, force: true });
  });

  beforeEach(async () => {
    subject = await makeBwrapRuntime(tools);
    rt = subject.runtime;
  });

  afterEach(async () => {
    await subject.cleanup();
  });

  const spec = (script: string, env: Record<string, string> = {}, extra: Partial<AgentSpec> = {}): AgentSpec => ({
    projectId: randomUUID(),
    name: 'bwrap-agent',
    harness: 'command',
    runtime: 'bwrap',
    image: null,
    command: ['sh', '-c', script],
    env,
    task: null,
    labels: {},
    network: true,
    resources: {},
    repository: null,
      secretEnv: [],
    ...extra,
  });

  const launch = async (script: string, env: Record<string, string> = {}, extra: Partial<AgentSpec> = {}) => {
    const id = randomUUID();
    await rt.prepare(id, spec(script, env, extra), { fresh: false });
    await rt.start(id, spec(script, env, extra), { resume: false, generation: 1 });
    return id;
  };

  const waitFor = async <T>(probe: () => Promise<T>, accept: (value: T) => boolean): Promise<T> => {
    const deadline = Date.now() + 4_000;
    let last = await probe();
    while (!accept(last)) {
      if (Date.now() > deadline) throw new Error(`timed out; last value: ${JSON.stringify(last)}`);
      await delay(10);
      last = await probe();
    }
    return last;
  };

  const exited = (id: string) =>
    waitFor(
      () => rt.inspect(id),
      (s) => s.state === 'exited',
    ) as Promise<Extract<RuntimeState, { state: 'exited' }>>;

  const output = async (id: string) => (await rt.tail(id, 100)).split('\n');

  /** Shell that reports, per path, whether the agent could write it. */
  const tryWrite = 'try() { if (echo hacked > "$1") 2>/dev/null; then echo "written $1"; else echo "refused $1"; fi; }';
  /** Shell that reports, per path, whether the agent sees it. */
  const probe = 'probe() { if [ -e "$1" ]; then echo "visible $1"; else echo "hidden $1"; fi; }';

  it('lets the agent write its workspace only: not /usr, /etc, /, the tools, its inbox', async () => {
    const id = await launch(
      `${tryWrite}; for t in /usr/graft-probe /etc/graft-probe /graft-probe "$BIN/graft-agent" "$GRAFT_INBOX" "$GRAFT_AGENT_WORKSPACE/probe"; do try "$t"; done`,
      { BIN: tools.binDir },
    );
    expect((await exited(id)).exitCode).toBe(0);
    const inbox = join(subject.rootDir, id, 'inbox.jsonl');
    const workspace = rt.workspace(id);
    expect(await output(id)).toEqual([
      'refused /usr/graft-probe',
      'refused /etc/graft-probe',
      'refused /graft-probe',
      `refused ${tools.binDir}/graft-agent`,
      `refused ${inbox}`,
      `written ${workspace}/probe`,
    ]);
    expect(await readFile(join(workspace, 'probe'), 'utf8')).toBe('hacked\n');
    expect(await readFile(inbox, 'utf8')).toBe('');
    expect(await readFile(join(tools.binDir, 'graft-agent'), 'utf8')).toMatch(/^#!\/usr\/bin\/env node/);
  });

  it("hides the rest of the host: other agents' workspaces, its own run files, the broker's home", async () => {
    const other = await launch('sleep 30');
    await writeFile(join(rt.workspace(other), 'secret'), 'not for you\n');
    const agentDir = (id: string) => join(subject.rootDir, id);
    const id = await launch(
      [
        probe,
        'AGENT_DIR=$(dirname "$GRAFT_INBOX")',
        'probe "$OTHER/secret"; probe "$AGENT_DIR/run.json"; probe "$AGENT_DIR/stdout.log"; probe "$HOST_HOME/secret"',
        'echo "agent dir: $(ls -A "$AGENT_DIR" | tr "\\n" " ")"',
        'echo "home: $HOME, $(ls -A "$HOME" | wc -l) entries"; echo mine > "$HOME/file" && echo "home writable"',
        // The agent dir lies in the sandbox's own /tmp here: what is written there stays in the sandbox.
        'echo hacked > "$AGENT_DIR/run.json" || true',
      ].join('; '),
      { OTHER: rt.workspace(other), HOST_HOME: hostHome },
    );
    // run.json is written around the spawn: read the agent dir name only once it runs.
    expect((await exited(id)).exitCode).toBe(0);
    const lines = await output(id);
    expect(lines).toEqual([
      `hidden ${rt.workspace(other)}/secret`,
      `hidden ${agentDir(id)}/run.json`,
      `hidden ${agentDir(id)}/stdout.log`,
      `hidden ${hostHome}/secret`,
      'agent dir: inbox-state inbox.jsonl workspace ',
      'home: /home/agent, 0 entries',
      'home writable',
    ]);
    expect(JSON.parse(await readFile(join(agentDir(id), 'run.json'), 'utf8'))).toMatchObject({ pid: expect.any(Number) });
    expect(existsSync(join(hostHome, 'file'))).toBe(false);
  });

  it("keeps graft-agent's inbox read position across runs, writable beside the read-only inbox, and drops it with a fresh workspace", async () => {
    // What graft-agent does with GRAFT_INBOX_OFFSET: write a temporary file next to it, rename it over.
    const write = 'echo 42 > "$GRAFT_INBOX_OFFSET.$$.tmp" && mv "$GRAFT_INBOX_OFFSET.$$.tmp" "$GRAFT_INBOX_OFFSET" && echo written';
    const read = 'echo "offset $(cat "$GRAFT_INBOX_OFFSET" 2>/dev/null || echo none)"';
    const id = await launch(write);
    expect((await exited(id)).exitCode).toBe(0);
    expect(await readFile(join(subject.rootDir, id, 'inbox-state', 'offset'), 'utf8')).toBe('42\n');
    await rt.prepare(id, spec(read), { fresh: false });
    await rt.start(id, spec(read), { resume: true, generation: 2 });
    await exited(id);
    expect(await rt.tail(id, 1)).toBe('offset 42');
    await rt.prepare(id, spec(read), { fresh: true });
    await rt.start(id, spec(read), { resume: false, generation: 3 });
    await exited(id);
    expect(await rt.tail(id, 1)).toBe('offset none');
  });

  it('keeps HOME across runs (a resumed harness finds its session) and wipes it with a fresh workspace', async () => {
    const note = 'if [ -f "$HOME/session" ]; then echo "session: $(cat "$HOME/session")"; else echo "session: none"; echo s1 > "$HOME/session"; fi';
    const id = await launch(note);
    await exited(id);
    expect(await rt.tail(id, 1)).toBe('session: none');
    await rt.prepare(id, spec(note), { fresh: false });
    await rt.start(id, spec(note), { resume: true, generation: 2 });
    await exited(id);
    expect(await rt.tail(id, 1)).toBe('session: s1');
    await rt.prepare(id, spec(note), { fresh: true });
    await rt.start(id, spec(note), { resume: false, generation: 3 });
    await exited(id);
    expect(await rt.tail(id, 1)).toBe('session: none');
  });

  it('finds the system commands even when the PATH it inherits names only directories the sandbox does not show', async () => {
    const id = randomUUID();
    const s = spec('echo "sh at $(command -v sh)"', { PATH: '/opt/nowhere/bin' });
    await rt.prepare(id, s, { fresh: false });
    await rt.start(id, s, { resume: false, generation: 1 });
    expect((await exited(id)).exitCode).toBe(0);
    expect(await output(id)).toEqual([expect.stringMatching(/^sh at (\/usr)?\/bin\/sh$/)]);
  });

  it('masks the files of /etc only root may read (the agent runs as mapped root)', async () => {
    expect(existsSync('/etc/shadow')).toBe(true);
    // Masked by /dev/null, which a user namespace cannot open as a device: unreadable either way.
    const id = await launch('if grep -q "^root:" /etc/shadow 2>/dev/null; then echo "shadow readable"; else echo "shadow masked"; fi; head -c 4 /etc/passwd; echo');
    expect((await exited(id)).exitCode).toBe(0);
    expect(await output(id)).toEqual(['shadow masked', 'root']);
  });

  it('runs the agent in a pid namespace of its own, without capabilities', async () => {
    const hostPids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).length;
    const id = await launch('echo "pid $$"; ls /proc | grep -c "^[0-9]"; grep CapEff /proc/self/status');
    expect((await exited(id)).exitCode).toBe(0);
    const [pid, count, caps] = await output(id);
    expect(Number(pid?.replace('pid ', ''))).toBeLessThanOrEqual(3);
    expect(Number(count)).toBeLessThan(6);
    expect(hostPids).toBeGreaterThan(Number(count));
    expect(caps).toBe('CapEff:\t0000000000000000');
  });

  it('runs node, and graft-agent on PATH reaches the relay socket, also without network', async () => {
    const id = await launch('graft-agent; node -e "console.log(require(\'node:os\').homedir())"', {}, { network: false });
    expect((await exited(id)).exitCode).toBe(0);
    expect(await output(id)).toEqual([`node ${process.versions.node.split('.')[0]}: relay here`, '/home/agent']);
  });

  it("exec() runs inside the agent's sandbox: its /tmp, its processes, no capabilities, read-only system", async () => {
    const marker = `graft-exec-${randomUUID()}`;
    const id = await launch(`echo "agent tmp" > /tmp/${marker}; echo ready; exec sleep 30`);
    await waitFor(
      () => rt.tail(id, 10),
      (text) => text === 'ready',
    );
    const result = await rt.exec(id, [
      'sh',
      '-c',
      `${tryWrite}; cat /tmp/${marker}; cat /proc/[0-9]*/comm | grep -c '^sleep$'; grep CapEff /proc/self/status; echo "$HOME $PWD"; try /usr/graft-probe`,
    ]);
    expect(result).toEqual({ exitCode: 0, output: `agent tmp\n1\nCapEff:\t0000000000000000\n/home/agent ${rt.workspace(id)}\nrefused /usr/graft-probe\n` });
    expect(existsSync(join('/tmp', marker))).toBe(false);
  });

  it('stop() leaves nothing of the sandbox running, not even processes that left the group', async () => {
    const id = await launch('setsid sleep 30 & trap "" TERM; echo ready; while :; do sleep 0.02; done');
    await waitFor(
      () => rt.tail(id, 10),
      (text) => text === 'ready',
    );
    expect((await agentProcesses(subject.rootDir)).length).toBeGreaterThan(3);
    await rt.stop(id, { graceMs: 100 });
    expect(await agentProcesses(subject.rootDir)).toEqual([]);
  });

  it('an agent that ends takes what it left running in its sandbox with it', async () => {
    const id = await launch('setsid sleep 30 & exit 0');
    expect((await exited(id)).exitCode).toBe(0);
    expect(await waitFor(() => agentProcesses(subject.rootDir), (pids) => pids.length === 0)).toEqual([]);
  });

  it('start() resolves once the command runs in its sandbox, so an immediate stop() needs no grace period', async () => {
    // Until bwrap's init has forked the command, SIGTERM to the group reaches only the init, which ignores it.
    for (let i = 0; i < 8; i++) {
      const id = await launch('sleep 30');
      const t0 = Date.now();
      await rt.stop(id, { graceMs: 5_000 });
      expect(Date.now() - t0).toBeLessThan(1_000);
    }
  });

  it('refuses to start when bubblewrap is missing, instead of running the agent unconfined', async () => {
    const missing = await makeBwrapRuntime(tools, { bwrapPath: join(toolsRoot, 'no-bwrap') });
    try {
      const id = randomUUID();
      await missing.runtime.prepare(id, spec('echo ran > ran'), { fresh: false });
      await expect(missing.runtime.start(id, spec('echo ran > ran'), { resume: false, generation: 1 })).rejects.toThrow(/bubblewrap/);
      expect(await missing.runtime.inspect(id)).toEqual({ state: 'idle' });
      expect(existsSync(join(missing.runtime.workspace(id), 'ran'))).toBe(false);
    } finally {
      await missing.cleanup();
    }
  });
});
