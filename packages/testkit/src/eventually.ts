import { setTimeout as delay } from 'node:timers/promises';

/** Options of {@link eventually}. */
export interface EventuallyOptions {
  timeoutMs: number;
  intervalMs?: number;
}

/**
 * Runs `probe` (which asserts) until it passes and returns its value; after `timeoutMs` the last
 * failure is thrown. How tests wait: poll a condition with a deadline, never sleep and then assert.
 */
export async function eventually<T>(probe: () => Promise<T> | T, options: EventuallyOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await delay(options.intervalMs ?? 100);
  }
}

/** Polls `probe` until it returns something other than undefined or false, and returns that; throws after `timeoutMs`. */
export async function waitUntil<T>(probe: () => Promise<T | undefined | false>, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await delay(intervalMs);
  }
}

/** Milliseconds since `start` (a `performance.now()` reading). */
export function msSince(start: number): number {
  return Math.round(performance.now() - start);
}
