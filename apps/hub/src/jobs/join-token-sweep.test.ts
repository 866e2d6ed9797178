import { createDatabase, type DatabaseHandle } from '@graft/db';
import { createLogger } from '@graft/log';
import { apiRequest, expectApiError, type HubFixture, registerAndJoinBroker, startHubFixture } from '@graft/testkit';
import { GraftClient } from '@graft/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { sweepExpiredJoinTokens } from './join-token-sweep.js';

let fx: HubFixture;
let handle: DatabaseHandle;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  handle = createDatabase({ connectionString: fx.database.url, maxConnections: 2 });
});
afterAll(async () => {
  await handle?.destroy();
  await fx?.stop();
});

const hashOf = async (brokerId: string) => (await handle.db.selectFrom('brokers').select('join_token_hash').where('id', '=', brokerId).executeTakeFirstOrThrow()).join_token_hash;
const expire = (brokerId: string) => handle.db.updateTable('brokers').set({ join_expires_at: new Date(Date.now() - 1_000) }).where('id', '=', brokerId).execute();

it('clears the hash of expired tokens of brokers that never joined, keeps the brokers, and a join with such a token still says expired', async () => {
  const admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  const expired = await admin.registerBroker({ name: 'never-joined' });
  const fresh = await admin.registerBroker({ name: 'still-valid' });
  const joined = await registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: 'joined' });
  await expire(expired.brokerId);
  await expire(joined.brokerId);
  const lines: string[] = [];
  const log = createLogger({ sink: (l) => lines.push(l) });

  expect(await sweepExpiredJoinTokens(handle.db, log)).toBe(1);
  expect(await hashOf(expired.brokerId)).toBeNull();
  expect(await hashOf(fresh.brokerId)).not.toBeNull();
  // A joined broker's hash tells a reused token apart (join_token_consumed): it stays.
  expect(await hashOf(joined.brokerId)).not.toBeNull();
  expect(lines.map((l) => JSON.parse(l))).toContainEqual(expect.objectContaining({ event: 'brokers.join_tokens_expired', count: 1 }));
  expect(await admin.getBroker(expired.brokerId)).toMatchObject({ name: 'never-joined', joined: false });

  expect(await sweepExpiredJoinTokens(handle.db, log)).toBe(0);
  const join = await apiRequest(fx.hub.url, null, 'POST', '/api/v1/brokers/join', {
    brokerId: expired.brokerId,
    joinToken: expired.joinToken,
    hostname: 'node-1',
    version: '0.1.0',
    runtimes: ['process'],
    capacity: { maxAgents: 1 },
  });
  expectApiError(join, 401, 'join_token_expired');
});
