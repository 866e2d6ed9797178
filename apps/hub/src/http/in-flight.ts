/**
 * Counts running request handlers. A handler can outlive its connection (the client went away
 * mid-request), so a stopping hub waits for this to reach zero, not just for sockets to close,
 * before it closes the database pool under them.
 */
export class InFlight {
  private count = 0;
  private waiters: Array<() => void> = [];

  /** Runs `task` counted as in flight. */
  async track<T>(task: () => Promise<T>): Promise<T> {
    this.count++;
    try {
      return await task();
    } finally {
      this.count--;
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    }
  }

  /** Resolves once nothing is in flight, or after `timeoutMs`, whichever comes first. */
  drained(timeoutMs: number): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((ok) => {
      const t = setTimeout(ok, timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        ok();
      });
    });
  }
}
