import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { readdir, readlink } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Terminal } from './agent-runtime.js';

/** Where util-linux `script` and coreutils `stty` are; absolute, so the agent's PATH never picks them. */
export interface ScriptTerminalTools {
  script: string;
  stty: string;
}

/** The Debian/most-distros locations. */
export const DEFAULT_SCRIPT_TERMINAL_TOOLS: ScriptTerminalTools = { script: '/usr/bin/script', stty: '/usr/bin/stty' };

/** How long `script` may take to open its pseudo-terminal. */
const PTY_WAIT_MS = 5_000;
const PTY_POLL_MS = 5;

/** Quotes one word for `sh -c`. */
function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The `/dev/pts/N` that `script` (pid) holds: its child's terminal. */
async function ptsOf(pid: number): Promise<string | null> {
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (/^\/dev\/pts\/\d+$/.test(target)) return target;
  }
  return null;
}

function runStty(stty: string, pts: string, cols: number, rows: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // TIOCSWINSZ on the slave: the kernel sends SIGWINCH to the terminal's foreground process group.
    execFile(stty, ['-F', pts, 'rows', String(rows), 'cols', String(cols)], { timeout: 5_000 }, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * A pseudo-terminal for runtimes whose agents are host processes (process, bwrap), without a native
 * module: util-linux `script` allocates the pty and relays it over pipes (`-q` no banner, `-f` flush
 * at once; its echo mode stays `auto`, which keeps the pty's echo on since its stdin is a pipe, as a
 * viewer's terminal expects). `command` runs on the pty as the session leader (for bwrap, an
 * nsenter into the sandbox). Resizes run `stty -F <pts>` on the pty script holds, which signals the
 * foreground job with SIGWINCH like a terminal emulator's resize. Resolves once the pty has its
 * first size, so the shell's first `stty size` already sees it.
 */
export async function openScriptTerminal(
  command: string[],
  options: { cwd: string; env: Record<string, string>; cols: number; rows: number; tools?: ScriptTerminalTools },
): Promise<Terminal> {
  const tools = options.tools ?? DEFAULT_SCRIPT_TERMINAL_TOOLS;
  // script runs its command with $SHELL -c: the shell of the broker's choosing, not the agent's.
  // The agent's own SHELL (if any) is given back to the command.
  const line = `${options.env.SHELL !== undefined ? `SHELL=${shellQuote(options.env.SHELL)} ` : ''}${command.map(shellQuote).join(' ')}`;
  const child: ChildProcessWithoutNullStreams = spawn(tools.script, ['-qfc', line, '/dev/null'], {
    cwd: options.cwd,
    env: { ...options.env, SHELL: '/bin/sh' },
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exitListeners: Array<(reason: string) => void> = [];
  let exitReason: string | null = null;
  let errOutput = '';
  const done = (reason: string) => {
    if (exitReason !== null) return;
    exitReason = reason;
    for (const l of exitListeners) l(reason);
  };
  child.once('error', (err) => done(`could not start a terminal: ${err.message}`));
  child.once('close', (code, signal) => done(signal ? `shell ended by ${signal}` : `shell exited with code ${code ?? 'unknown'}`));
  child.stderr.on('data', (d: Buffer) => {
    if (errOutput.length < 4096) errOutput += d.toString('utf8');
  });
  // Input to a shell that is gone is dropped, not thrown.
  child.stdin.on('error', () => {});

  const pid = child.pid;
  let pts: string | null = null;
  if (pid !== undefined) {
    const deadline = Date.now() + PTY_WAIT_MS;
    while (pts === null && exitReason === null && Date.now() < deadline) {
      pts = await ptsOf(pid);
      if (pts === null) await delay(PTY_POLL_MS);
    }
  }
  const kill = (signal: NodeJS.Signals) => {
    try {
      if (pid !== undefined) process.kill(-pid, signal);
    } catch {
      // Already gone.
    }
  };
  if (pts === null) {
    kill('SIGKILL');
    const reason = exitReason ?? 'no pseudo-terminal appeared';
    throw new Error(`could not open a terminal: ${reason}${errOutput ? `: ${errOutput.trim()}` : ''}`);
  }
  const ptsPath = pts;
  let resizing: Promise<void> = runStty(tools.stty, ptsPath, options.cols, options.rows);
  await resizing.catch((err: unknown) => {
    kill('SIGKILL');
    throw new Error(`could not size the terminal: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  });
  let closed = false;
  // Input typed after a resize waits for it, so what it runs sees the new size.
  let pendingResizes = 0;
  const send = (data: Buffer) => {
    if (!closed && child.stdin.writable) child.stdin.write(data);
  };
  return {
    write: (data) => {
      if (pendingResizes === 0) send(data);
      else resizing = resizing.then(() => send(data));
    },
    resize: (cols, rows) => {
      // In order: the last size asked for is the one that stays.
      pendingResizes++;
      resizing = resizing
        .catch(() => {})
        .then(() => runStty(tools.stty, ptsPath, cols, rows).catch(() => {}))
        .finally(() => {
          pendingResizes--;
        });
    },
    onData: (listener) => child.stdout.on('data', listener),
    onExit: (listener) => {
      if (exitReason !== null) listener(exitReason);
      else exitListeners.push(listener);
    },
    pause: () => child.stdout.pause(),
    resume: () => child.stdout.resume(),
    close: () => {
      if (closed) return;
      closed = true;
      // As a terminal emulator closing its window: the pty's master goes, and the kernel hangs up the
      // shell's session (SIGHUP, which an interactive bash does not ignore, unlike script's SIGTERM).
      kill('SIGKILL');
    },
  };
}

/** The interactive shell a terminal runs: bash where there is one, else sh. */
export const TERMINAL_SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -i; else exec sh -i; fi'];
