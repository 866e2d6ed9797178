import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Terminal } from './agent-runtime.js';
import { openScriptTerminal, TERMINAL_SHELL } from './script-terminal.js';

/** Collects a terminal's output and waits for text to appear in it. */
function recorder(t: Terminal): { text: () => string; waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray> } {
  let out = '';
  const waiters: Array<() => void> = [];
  t.onData((d) => {
    out += d.toString('utf8');
    for (const w of waiters.splice(0)) w();
  });
  return {
    text: () => out,
    waitFor: async (re, ms = 5_000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = out.match(re);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in ${JSON.stringify(out)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 50);
        });
      }
    },
  };
}

describe('openScriptTerminal', () => {
  const dirs: string[] = [];
  const open: Terminal[] = [];
  afterEach(() => {
    for (const t of open.splice(0)) t.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  const start = async (cols = 100, rows = 30) => {
    const cwd = mkdtempSync(join(tmpdir(), 'graft-term-'));
    dirs.push(cwd);
    const t = await openScriptTerminal(TERMINAL_SHELL, { cwd, env: { PATH: '/usr/bin:/bin', TERM: 'xterm', HOME: cwd, GREETING: 'hi-there' }, cols, rows });
    open.push(t);
    return { t, cwd };
  };

  it('runs a real shell on a tty of the asked size, in the given directory and env, and resizes it', async () => {
    const { t, cwd } = await start(100, 30);
    const out = recorder(t);
    t.write(Buffer.from('echo "v=$((6*7))-$GREETING"; stty size; echo "at=$(pwd)"; test -t 0 && echo "is-$((1+1))-tty"\r'));
    await out.waitFor(/v=42-hi-there/);
    await out.waitFor(/30 100/);
    await out.waitFor(/is-2-tty/);
    expect(out.text()).toContain(`at=${cwd}`);
    t.resize(132, 43);
    t.write(Buffer.from('stty size\r'));
    await out.waitFor(/43 132/);
  });

  it('reports the shell exiting, and close ends a running foreground job', async () => {
    const { t } = await start();
    const exited = new Promise<string>((resolve) => t.onExit(resolve));
    t.write(Buffer.from('exit 3\r'));
    expect(await exited).toMatch(/exit|code/);

    const { t: t2 } = await start();
    const out = recorder(t2);
    t2.write(Buffer.from('echo started; sleep 300\r'));
    await out.waitFor(/started\r?\n/);
    const gone = new Promise<string>((resolve) => t2.onExit(resolve));
    t2.close();
    await gone;
  });
});
