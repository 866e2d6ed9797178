import type { ChildProcess } from 'node:child_process';

/** The JSON log lines a child process writes on stdout, plus its raw output. */
export interface ProcessLogs {
  /** Every JSON log line so far, parsed. */
  lines: Array<Record<string, unknown>>;
  /** Raw stdout and stderr so far. */
  output(): string;
  /** Resolves with the first line (seen or still to come) that matches; rejects after `timeoutMs`. */
  waitFor(test: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Collects a child's JSON log lines (one object per stdout line) from now on. */
export function collectProcessLogs(child: ChildProcess, name: string): ProcessLogs {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ test: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let raw = '';
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    raw += text;
    buffered += text;
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf('\n');
      if (!line.startsWith('{')) continue;
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // not a log line
      }
      lines.push(parsed);
      for (let i = waiters.length - 1; i >= 0; i--) {
        const w = waiters[i];
        if (w?.test(parsed)) {
          waiters.splice(i, 1);
          w.resolve(parsed);
        }
      }
    }
  });
  child.stderr?.on('data', (c: Buffer) => {
    raw += c.toString('utf8');
  });
  return {
    lines,
    output: () => raw,
    waitFor: (test, timeoutMs = 15_000) => {
      const found = lines.find(test);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: log line not seen within ${timeoutMs} ms:\n${raw.slice(-4000)}`)), timeoutMs);
        waiters.push({
          test,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}
