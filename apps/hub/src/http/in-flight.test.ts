import { describe, expect, it } from 'vitest';
import { InFlight } from './in-flight.js';

const tick = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

describe('InFlight', () => {
  it('drains only when every tracked task has settled, failures included', async () => {
    const f = new InFlight();
    let drained = false;
    const slow = f.track(async () => {
      await tick(30);
      return 'done';
    });
    const failing = f.track(async () => {
      await tick(10);
      throw new Error('boom');
    });
    // Handled from the start: it may reject before the assertion below gets to it.
    failing.catch(() => {});
    const waiting = f.drained(5000).then(() => {
      drained = true;
    });
    await tick(15);
    expect(drained).toBe(false);
    await expect(failing).rejects.toThrow('boom');
    expect(drained).toBe(false);
    await expect(slow).resolves.toBe('done');
    await waiting;
    expect(drained).toBe(true);
  });

  it('gives up waiting after the timeout', async () => {
    const f = new InFlight();
    void f.track(() => tick(500));
    const started = Date.now();
    await f.drained(50);
    expect(Date.now() - started).toBeLessThan(400);
  });
});
