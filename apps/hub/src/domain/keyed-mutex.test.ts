import { describe, expect, it } from 'vitest';
import { KeyedMutex } from './keyed-mutex.js';

const tick = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

describe('KeyedMutex', () => {
  it('runs tasks of one key strictly one after another, in arrival order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const task = (name: string, ms: number) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      log.push(`start ${name}`);
      await tick(ms);
      log.push(`end ${name}`);
      running--;
      return name;
    };
    const results = await Promise.all([m.run('a', task('1', 20)), m.run('a', task('2', 1)), m.run('a', task('3', 5))]);
    expect(results).toEqual(['1', '2', '3']);
    expect(maxRunning).toBe(1);
    expect(log).toEqual(['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3']);
    await tick(0);
    expect(m.size).toBe(0);
  });

  it('runs different keys concurrently and keeps going after a failure', async () => {
    const m = new KeyedMutex();
    let running = 0;
    let maxRunning = 0;
    const task = async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await tick(10);
      running--;
    };
    await Promise.all([m.run('a', task), m.run('b', task)]);
    expect(maxRunning).toBe(2);
    await expect(m.run('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(m.run('a', async () => 'after')).resolves.toBe('after');
  });
});
