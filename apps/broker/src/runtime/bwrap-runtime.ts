import { existsSync, constants as fsConstants, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { access, appendFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { AgentSpec } from '@graft/protocol';
import type { AgentTools } from './agent-runtime.js';
import { type ProcessRuntimeOptions, ProcessRuntime, type ProcessSandbox, type SandboxCommand, type SandboxLaunch } from './process-runtime.js';

/** Options of {@link BwrapRuntime}: those of ProcessRuntime (its sandbox aside) and where the sandboxing tools are. */
export interface BwrapRuntimeOptions extends Omit<ProcessRuntimeOptions, 'sandbox'> {
  /** The bubblewrap binary; absolute, so the agent's PATH never decides which sandbox it gets. */
  bwrapPath?: string;
  /** util-linux nsenter, which exec() runs to enter a running sandbox. */
  nsenterPath?: string;
  /** util-linux setpriv as seen inside the sandbox (it lives in /usr), which drops exec's capabilities. */
  setprivPath?: string;
  /** More host paths agents see read-only at the same path, e.g. a node installed outside /usr. */
  readOnlyPaths?: string[];
}

/**
 * HOME inside every sandbox: `<agentDir>/home`, kept across runs (harnesses keep their sessions there,
 * which a resume continues) and wiped with a fresh workspace; the broker's own home stays out of reach.
 */
const SANDBOX_HOME = '/home/agent';
/** The agent's home on the host, under its agent directory. */
const HOME_DIR = 'home';
/** Files of /etc that only root may read on the host; the agent runs as (mapped) root, so they are masked. */
const MASKED_ETC = ['/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-', '/etc/sudoers', '/etc/security/opasswd'];

/**
 * The one directory of the agent dir the agent may write, bound at the same path: graft-agent keeps
 * its inbox read position there (GRAFT_INBOX_OFFSET; by default it would sit next to the read-only
 * inbox), written by rename, so a directory rather than a single bound file.
 */
const INBOX_STATE_DIR = 'inbox-state';
const INBOX_OFFSET_FILE = 'offset';

/** How long start() and exec() wait for a just-started sandbox to finish setting itself up. */
const SANDBOX_READY_MS = 5_000;
const SANDBOX_POLL_MS = 5;

/** Top-level system directories next to /usr: merged-usr symlinks on Debian and most distros, real directories elsewhere. */
const SYSTEM_LINKS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** The read-only system every sandbox gets: /usr, the top-level links or directories into it as on the host, /etc. */
function systemArgs(): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const name of SYSTEM_LINKS) {
    const path = `/${name}`;
    try {
      const info = lstatSync(path);
      if (info.isSymbolicLink()) args.push('--symlink', readlinkSync(path), path);
      else if (info.isDirectory()) args.push('--ro-bind', path, path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
  args.push('--ro-bind', '/etc', '/etc');
  for (const secret of MASKED_ETC) if (existsSync(secret)) args.push('--ro-bind', '/dev/null', secret);
  // systemd-resolved hosts (Ubuntu) link resolv.conf into /run, which the sandbox does not get: bind that one file.
  try {
    if (lstatSync('/etc/resolv.conf').isSymbolicLink()) {
      const target = resolve('/etc', readlinkSync('/etc/resolv.conf'));
      if (!isUnder(target, '/etc') && !isUnder(target, '/usr')) args.push('--ro-bind', realpathSync(target), target);
    }
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  return args;
}

/** The sandbox shows only the system's own directories: a PATH made of others (a broker's ~/bin, say) still finds sh and node. */
const SYSTEM_PATH = ['/usr/local/bin', '/usr/bin', '/bin'];

function withSystemPath(path: string | undefined): string {
  const entries = (path ?? '').split(':').filter((p) => p !== '');
  return [...entries, ...SYSTEM_PATH.filter((p) => !entries.includes(p))].join(':');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Host pids of `pid`'s children (/proc/<pid>/task/<pid>/children: every process involved is single-threaded). */
async function childrenOf(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text
      .split(' ')
      .filter((p) => p !== '')
      .map(Number);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return [];
    throw err;
  }
}

/** Whether `pid` still runs (a zombie has ended). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return false;
    throw err;
  }
}

/** Whether `pid` is PID 1 of its own pid namespace (the last NSpid entry is its pid in the innermost one). */
async function leadsPidNamespace(pid: number): Promise<boolean> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const nspid = status.split('\n').find((line) => line.startsWith('NSpid:'));
    return nspid?.trim().split(/\s+/).at(-1) === '1';
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return false;
    throw err;
  }
}

/** The bubblewrap confinement handed to ProcessRuntime; see {@link BwrapRuntime} for the layout. */
class BwrapSandbox implements ProcessSandbox {
  readonly name = 'bwrap' as const;
  private readonly bwrap: string;
  private readonly nsenter: string;
  private readonly setpriv: string;
  private readonly system: string[];
  private readonly extra: string[];
  private readonly tools: AgentTools | undefined;

  constructor(options: BwrapRuntimeOptions) {
    this.bwrap = options.bwrapPath ?? '/usr/bin/bwrap';
    this.nsenter = options.nsenterPath ?? '/usr/bin/nsenter';
    this.setpriv = options.setprivPath ?? '/usr/bin/setpriv';
    this.system = systemArgs();
    this.extra = (options.readOnlyPaths ?? []).flatMap((path) => ['--ro-bind', path, path]);
    this.tools = options.tools;
  }

  async confine(launch: SandboxLaunch & { spec: AgentSpec }): Promise<SandboxCommand> {
    await this.require(this.bwrap, 'bubblewrap');
    const stateDir = join(launch.agentDir, INBOX_STATE_DIR);
    await mkdir(stateDir, { recursive: true });
    await mkdir(join(launch.agentDir, HOME_DIR), { recursive: true });
    // No inbox yet (new agent, or a fresh prepare removed it): a read position kept from before would skip messages.
    if (!(await exists(launch.inbox))) await rm(join(stateDir, INBOX_OFFSET_FILE), { force: true });
    // A bind needs its source to exist; deliver() appends to this same file, so the bind shows every message.
    await appendFile(launch.inbox, '');
    return { command: [this.bwrap, ...this.args(launch, launch.spec.network), '--', ...launch.command], env: this.env(launch) };
  }

  async started(wrapperPid: number): Promise<void> {
    await this.sandboxInit(wrapperPid);
  }

  async enter(launch: SandboxLaunch & { wrapperPid: number }): Promise<SandboxCommand> {
    await Promise.all([this.require(this.nsenter, 'nsenter'), this.require(this.setpriv, 'setpriv')]);
    const init = await this.sandboxInit(launch.wrapperPid);
    if (init === null) throw new Error(`agent ${launch.agentId}: no running sandbox found under its wrapper (pid ${launch.wrapperPid})`);
    // nsenter (as the broker's user) would keep every capability inside the sandbox's namespaces, where
    // a command reading the agent's files could use them to escape: setpriv drops them as bwrap did.
    // `--wd` without a directory takes the init's cwd (bwrap's --chdir, the workspace) from inside; a
    // directory given here would be opened on the host, a cwd the sandbox's root does not reach.
    const command = [
      this.nsenter,
      `--target=${init}`,
      '--all',
      '--wd',
      '--',
      this.setpriv,
      '--inh-caps=-all',
      '--ambient-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
      '--',
      ...launch.command,
    ];
    return { command, env: this.env(launch) };
  }

  /**
   * Why these flags: `--unshare-all` gives the sandbox its own pid, mount, ipc, uts, cgroup, user and
   * (without `network`) net namespace, with only a loopback. `--cap-drop ALL`, because bwrap run by
   * root keeps root's capabilities by default, with which the agent could remount its binds. No
   * `--die-with-parent`: SIGTERM to the group ends bwrap's monitor at once, and the parent-death
   * SIGKILL would then kill an agent that handles SIGTERM before its grace period. No `--new-session`:
   * its setsid() would take the agent out of the wrapper's process group, so stop()'s group signals
   * would miss it; the wrapper already leads a session without a terminal, so the agent has no tty to
   * push input into (what --new-session guards against). Group signals reach processes in the child pid
   * namespace; bwrap's PID 1 there ignores SIGTERM but not SIGKILL, and its death kills everything left
   * in the namespace, including processes that left the group.
   */
  private args(launch: SandboxLaunch, network: boolean): string[] {
    const args = ['--unshare-all', ...(network ? ['--share-net'] : []), '--cap-drop', 'ALL', ...this.system];
    args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--bind', join(launch.agentDir, HOME_DIR), SANDBOX_HOME, ...this.extra);
    if (this.tools) args.push('--ro-bind', this.tools.binDir, this.tools.binDir, '--ro-bind', this.tools.runDir, this.tools.runDir);
    const stateDir = join(launch.agentDir, INBOX_STATE_DIR);
    args.push('--ro-bind', launch.inbox, launch.inbox, '--bind', stateDir, stateDir, '--bind', launch.workspace, launch.workspace);
    // Last: the sandbox's root (the directories bwrap made for the mount points) becomes read-only too.
    args.push('--remount-ro', '/', '--chdir', launch.workspace);
    return args;
  }

  /** The agent's env with the sandbox's HOME and inbox read position, unless the spec (or exec's caller) chose them. */
  private env(launch: SandboxLaunch): Record<string, string> {
    const env = { ...launch.env };
    if (launch.ownEnv.HOME === undefined) env.HOME = SANDBOX_HOME;
    if (launch.ownEnv.GRAFT_INBOX_OFFSET === undefined) env.GRAFT_INBOX_OFFSET = join(launch.agentDir, INBOX_STATE_DIR, INBOX_OFFSET_FILE);
    env.PATH = withSystemPath(env.PATH);
    return env;
  }

  private async require(path: string, what: string): Promise<void> {
    try {
      await access(path, fsConstants.X_OK);
    } catch (err) {
      throw new Error(`the bwrap runtime needs ${what}, which is not at ${path}`, { cause: err });
    }
  }

  /**
   * Host pid of the sandbox's PID 1 (bwrap's init: wrapper → bwrap monitor → init → agent) once the init
   * has forked the agent, which it does only after mounts and namespaces are in place; null when the
   * run ended first or the sandbox is not set up in time. Until then the init, as PID 1 of its
   * namespace, ignores SIGTERM and nothing must be entered.
   */
  private async sandboxInit(wrapperPid: number): Promise<number | null> {
    const deadline = Date.now() + SANDBOX_READY_MS;
    for (;;) {
      for (const monitor of await childrenOf(wrapperPid)) {
        for (const init of await childrenOf(monitor)) {
          if ((await leadsPidNamespace(init)) && (await childrenOf(init)).length > 0) return init;
        }
      }
      if (!(await isRunning(wrapperPid)) || Date.now() > deadline) return null;
      await delay(SANDBOX_POLL_MS);
    }
  }
}

/**
 * Adapter: runs each agent in a bubblewrap sandbox (DESIGN §5). A ProcessRuntime with a sandbox, so
 * agent directories, the exit-recording wrapper, stop, adoption after a broker restart and onExit are
 * the process runtime's; only the command the wrapper runs is `bwrap … -- <command>`.
 *
 * Inside, host paths keep their names, so GRAFT_AGENT_WORKSPACE, GRAFT_INBOX, PATH, GRAFT_AGENT_LIB
 * and GRAFT_HUB_SOCKET read the same on both sides:
 * - /usr, /etc and the top-level /bin, /sbin, /lib* links (or directories) as on the host: read-only;
 * - /proc of the sandbox's pid namespace, a minimal /dev, an empty tmpfs /tmp and HOME (/home/agent,
 *   unless the spec sets HOME), all private to the run;
 * - `<rootDir>/<id>/workspace`: the only host directory the agent can write, besides
 *   `<rootDir>/<id>/inbox-state/` where graft-agent keeps its inbox read position (GRAFT_INBOX_OFFSET);
 * - `<rootDir>/<id>/inbox.jsonl`, `tools.binDir` (graft-agent and its library; first on PATH) and `tools.runDir` (the relay socket
 *   `hub.sock`; a directory, so a re-created socket shows): read-only;
 * - `readOnlyPaths`: read-only. Nothing else of the host: not its home, not other agents, not the
 *   agent's own run.json, pid, exit and stdout.log, stderr.log.
 * The network is the host's with `network: true`, else a loopback of its own. exec() enters the
 * running sandbox's namespaces (nsenter) with no capabilities, so it shares the agent's /tmp, processes
 * and network.
 */
export class BwrapRuntime extends ProcessRuntime {
  declare readonly name: 'bwrap';

  constructor(options: BwrapRuntimeOptions) {
    super({ ...options, sandbox: new BwrapSandbox(options) });
  }
}
