import { randomBytes } from 'node:crypto';
import { GraftClient } from '@graft/client';
import type { Agent } from '@graft/protocol';
import { createFreshDatabase, type FreshDatabase, type HubProcess, startHubProcess, eventually, msSince } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { processCounts } from './support/agent-processes.js';
import { freePort } from './support/free-port.js';
import { localAgents, type TestBroker, TestBrokers } from './support/test-brokers.js';

// The hub killed while agent creates are in flight, and a new hub process started on the same
// port and database: the brokers reconnect and every agent the API accepted runs exactly once.
let database: FreshDatabase;
const hubs: HubProcess[] = [];
let brokers: TestBrokers;
let env: Record<string, string>;
let hubUrl: string;


beforeAll(async () => {
  database = await createFreshDatabase(inject('pgAdminUrl'));
  const port = await freePort();
  env = { GRAFT_HUB_PORT: String(port), GRAFT_ADMIN_TOKEN: randomBytes(32).toString('hex'), GRAFT_MASTER_KEY: randomBytes(32).toString('hex') };
  hubs.push(await startHubProcess({ databaseUrl: database.url, env }));
  hubUrl = `http://127.0.0.1:${port}`;
  expect(hubs[0]?.url).toBe(hubUrl);
  brokers = new TestBrokers(hubUrl, env.GRAFT_ADMIN_TOKEN ?? '');
});

afterAll(async () => {
  await brokers?.cleanup();
  for (const hub of hubs) await hub.stop('SIGKILL');
  await database?.drop();
});

/** Tunnels a broker has opened so far (each welcome logs `tunnel.connected`). */
function connects(b: TestBroker): number {
  return b.proc.logs.filter((l) => l.event === 'tunnel.connected').length;
}

describe('a hub restarted mid-dispatch', () => {
  it('loses no agent: every accepted create ends running on exactly one broker, once', async () => {
    const admin = new GraftClient({ baseUrl: hubUrl, token: env.GRAFT_ADMIN_TOKEN ?? '', timeoutMs: 5_000 });
    const projectId = (await admin.registerProject({ name: 'hub-restart' })).project.id;
    await admin.createTemplate({ name: 'sleeper', projectId, harness: 'command', command: ['sh', '-c', `sleep 300; : ${brokers.marker}`] });
    const nodes: TestBroker[] = await Promise.all([
      brokers.add('node-i', { register: { autoProvide: true }, maxAgents: 40 }),
      brokers.add('node-j', { register: { autoProvide: true }, maxAgents: 40 }),
    ]);
    const accepted: Agent[] = [];

    for (const [round, signal] of [
      [1, 'SIGKILL'],
      [2, 'SIGTERM'],
    ] as const) {
      // Sixteen creates at once; the hub is stopped as soon as half of them are answered.
      const creates = Array.from({ length: 16 }, (_, n) => admin.createAgent({ projectId, name: `round${round}-${n}`, template: 'sleeper' }));
      let answered = 0;
      const half = new Promise<void>((resolve) => {
        for (const c of creates)
          c.then(
            () => {
              if (++answered === 8) resolve();
            },
            () => {},
          );
      });
      await Promise.race([half, Promise.allSettled(creates)]);
      const connectsBefore = nodes.map(connects);
      const stoppedAt = performance.now();
      await hubs.at(-1)?.stop(signal);
      const settled = await Promise.allSettled(creates);
      const ok = settled.filter((x): x is PromiseFulfilledResult<Agent> => x.status === 'fulfilled').map((x) => x.value);
      accepted.push(...ok);
      // What reached the brokers before the hub went away; the rest can only come from reconciliation.
      const held = (await Promise.all(nodes.map(localAgents))).flat().filter((l) => l.name.startsWith(`round${round}-`)).length;

      hubs.push(await startHubProcess({ databaseUrl: database.url, env }));
      const hubUpMs = msSince(stoppedAt);
      const reconnectedMs = await eventually(
        () => {
          nodes.forEach((b, n) => {
            expect(connects(b)).toBeGreaterThan(connectsBefore[n] ?? 0);
          });
          return msSince(stoppedAt);
        },
        { timeoutMs: 15_000 },
      );
      const agents = await eventually(
        async () => {
          const all = (await admin.listAgents({ projectId, limit: 100 })).items;
          for (const a of all) expect([a.name, a.phase, a.activity]).toEqual([a.name, 'running', 'idle']);
          return all;
        },
        { timeoutMs: 20_000 },
      );
      const inRound = agents.filter((a) => a.name.startsWith(`round${round}-`)).length;
      console.log(
        `round ${round} (${signal}): ${ok.length}/16 creates answered 201, ${inRound} in the database, ${held} on brokers when the hub died; new hub up after ${hubUpMs} ms, both brokers reconnected after ${reconnectedMs} ms`,
      );

      // Every agent the database holds (every 201 among them) runs on exactly one broker, as exactly one process.
      expect(agents.map((a) => a.id)).toEqual(expect.arrayContaining(accepted.map((a) => a.id)));
      await eventually(() => expect(Object.fromEntries(processCounts(brokers.marker))).toEqual(Object.fromEntries(agents.map((a) => [a.id, 1]))), { timeoutMs: 5_000 });
      for (const b of nodes) {
        const expected = agents.filter((a) => a.brokerId === b.brokerId).map((a) => a.id);
        expect((await localAgents(b)).map((l) => [l.agentId, l.phase]).sort()).toEqual(expected.map((id) => [id, 'running']).sort());
      }
      expect(agents.every((a) => nodes.some((b) => b.brokerId === a.brokerId))).toBe(true);
    }
  });
});
