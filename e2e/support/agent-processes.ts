import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One live process of an agent, as the kernel shows it. */
export interface AgentProcess {
  pid: number;
  /** Its process group: the runtime's wrapper, which leads one group per run. */
  pgid: number;
  /** GRAFT_AGENT_ID from its environment (null if it has none). */
  agentId: string | null;
  /** Its environment, for checks of what the agent was given. */
  env: Record<string, string>;
}

interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  argv: string[];
}

function readProc(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses; the fields after the last ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    return { pid, ppid: Number(fields[1]), pgid: Number(fields[2]), state: fields[0] ?? '?', argv };
  } catch {
    return null; // gone while we looked
  }
}

function readEnv(pid: number): Record<string, string> {
  try {
    const entries = readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter((e) => e.includes('='))
      .map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] as const);
    return Object.fromEntries(entries);
  } catch {
    return {};
  }
}

function liveProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (p && p.state !== 'Z' && p.state !== 'X') out.push(p);
  }
  return out;
}

/**
 * Live agent processes of this test file: `sh -c '<script mentioning marker>'` exactly as the
 * template's command says. The runtime's wrapper runs as `/bin/sh -c <wrapper> ... sh -c <script>`,
 * so it (and its fork before the exec) never matches; nor does the agent shell's own fork before it
 * execs a command (a child of a match): one match is one running agent command.
 */
export function findAgentProcesses(marker: string): AgentProcess[] {
  const shells = liveProcesses().filter((p) => p.argv[0] === 'sh' && p.argv[1] === '-c' && (p.argv[2] ?? '').includes(marker));
  const pids = new Set(shells.map((p) => p.pid));
  return shells
    .filter((p) => !pids.has(p.ppid))
    .map((p) => {
      const env = readEnv(p.pid);
      return { pid: p.pid, pgid: p.pgid, agentId: env.GRAFT_AGENT_ID ?? null, env };
    });
}

/** How many agent processes run per agent id. */
export function processCounts(marker: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of findAgentProcesses(marker)) {
    const id = p.agentId ?? '(no agent id)';
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

function killGroup(pgid: number): void {
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Kills what agents a broker left behind (they are detached process groups that outlive it): the
 * groups named by the runtime's pid files under `<dataDir>/agents/{process,bwrap}/<id>/pid`, and every group with a
 * process whose command line mentions `marker`.
 */
export function killLeftoverAgents(marker: string, dataDirs: readonly string[]): void {
  for (const root of dataDirs.flatMap((dataDir) => ['process', 'bwrap'].map((runtime) => join(dataDir, 'agents', runtime)))) {
    if (!existsSync(root)) continue;
    for (const id of readdirSync(root)) {
      try {
        const pid = Number(readFileSync(join(root, id, 'pid'), 'utf8').trim());
        if (pid > 1) killGroup(pid);
      } catch {
        // no pid file: nothing ran
      }
    }
  }
  const own = readProc(process.pid)?.pgid;
  for (const p of liveProcesses()) {
    if (p.argv.some((a) => a.includes(marker)) && p.pgid !== own) killGroup(p.pgid);
  }
}
