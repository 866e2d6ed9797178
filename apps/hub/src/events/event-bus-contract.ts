import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventBus } from './event-bus.js';

/** What every EventBus adapter must show (the Redis adapter of cluster mode runs the same suite). */
export function eventBusContract(name: string, make: () => Promise<EventBus>): void {
  describe(`EventBus contract: ${name}`, () => {
    let bus: EventBus;
    beforeEach(async () => {
      bus = await make();
    });
    afterEach(async () => {
      await bus.close();
    });

    const collect = (topic: string) => {
      const got: string[] = [];
      const off = bus.subscribe(topic, (m) => got.push(m.toString('utf8')));
      return { got, off };
    };
    const settle = () => delay(50);

    it('delivers a message to every subscriber of its topic, in publish order, and to no other topic', async () => {
      const a = collect('t1');
      const b = collect('t1');
      const other = collect('t2');
      await settle();
      for (let i = 0; i < 100; i++) bus.publish('t1', Buffer.from(`m${i}`));
      await settle();
      const expected = Array.from({ length: 100 }, (_, i) => `m${i}`);
      expect(a.got).toEqual(expected);
      expect(b.got).toEqual(expected);
      expect(other.got).toEqual([]);
    });

    it('stops delivering after unsubscribe, and keeps delivering to the others', async () => {
      const a = collect('t');
      const b = collect('t');
      await settle();
      bus.publish('t', Buffer.from('one'));
      await settle();
      a.off();
      bus.publish('t', Buffer.from('two'));
      await settle();
      expect(a.got).toEqual(['one']);
      expect(b.got).toEqual(['one', 'two']);
    });

    it('carries binary messages unchanged', async () => {
      const got: Buffer[] = [];
      bus.subscribe('bin', (m) => got.push(m));
      await settle();
      const bytes = Buffer.from([0, 255, 1, 128, 10, 13]);
      bus.publish('bin', bytes);
      await settle();
      expect(got).toEqual([bytes]);
    });

    it('a subscriber that throws does not keep the message from the others', async () => {
      bus.subscribe('x', () => {
        throw new Error('bad subscriber');
      });
      const ok = collect('x');
      await settle();
      bus.publish('x', Buffer.from('still'));
      await settle();
      expect(ok.got).toEqual(['still']);
    });
  });
}
