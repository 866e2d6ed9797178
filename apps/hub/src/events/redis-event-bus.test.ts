import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, expect, inject, it } from 'vitest';
import { eventBusContract } from './event-bus-contract.js';
import { RedisEventBus } from './redis-event-bus.js';

// Against the run's real Redis; each bus gets its own prefix so tests never hear each other.
eventBusContract('redis', async () => new RedisEventBus(inject('redisUrl'), { prefix: `test-${randomUUID()}` }));

const open: RedisEventBus[] = [];
afterEach(async () => {
  for (const bus of open.splice(0)) await bus.close();
});

it('joins replicas: a message published on one bus reaches subscribers on another with the same prefix, and not another prefix', async () => {
  const prefix = `test-${randomUUID()}`;
  const a = new RedisEventBus(inject('redisUrl'), { prefix });
  const b = new RedisEventBus(inject('redisUrl'), { prefix });
  const other = new RedisEventBus(inject('redisUrl'), { prefix: `${prefix}-other` });
  open.push(a, b, other);
  const onB: string[] = [];
  const onOther: string[] = [];
  b.subscribe('log:x', (m) => onB.push(m.toString('utf8')));
  other.subscribe('log:x', (m) => onOther.push(m.toString('utf8')));
  await delay(100);
  a.publish('log:x', Buffer.from('from a'));
  await delay(100);
  expect(onB).toEqual(['from a']);
  expect(onOther).toEqual([]);
});
