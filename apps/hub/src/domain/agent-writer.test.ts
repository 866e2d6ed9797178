import { createDatabase, type DatabaseHandle, migrate } from '@graft/db';
import { GraftError } from '@graft/protocol';
import { createFreshDatabase, type FreshDatabase } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AgentStateWriter } from './agent-writer.js';
import { uuidv7 } from './uuid.js';

let fresh: FreshDatabase;
let seq = 0;
let handle: DatabaseHandle;

beforeAll(async () => {
  fresh = await createFreshDatabase(inject('pgAdminUrl'));
  handle = createDatabase({ connectionString: fresh.url, maxConnections: 10 });
  await migrate(handle.pool);
});
afterAll(async () => {
  await handle?.destroy();
  await fresh?.drop();
});

async function newAgent(): Promise<string> {
  seq += 1;
  const db = handle.db;
  const projectId = uuidv7();
  const templateId = uuidv7();
  const id = uuidv7();
  await db.insertInto('projects').values({ id: projectId, name: `p${seq}`, git_remote: null, labels: '{}', created_by: null }).execute();
  await db.insertInto('templates').values({ id: templateId, name: 't', project_id: projectId, latest_version: 1, created_by: null }).execute();
  await db
    .insertInto('agents')
    .values({ id, project_id: projectId, name: 'a', template_id: templateId, template_version: 1, phase: 'created', desired_state: 'running', pending_reason: null, broker_id: null, task: null, env: '{}', labels: '{}', created_by: null })
    .execute();
  return id;
}

const increment = (cur: { generation: number }) => ({ set: { generation: cur.generation + 1 }, result: (w: { generation: number }) => w.generation });

describe('AgentStateWriter', () => {
  it('loses no update among concurrent writers, on one replica and across two', async () => {
    const id = await newAgent();
    const a = new AgentStateWriter(handle.pool);
    const b = new AgentStateWriter(handle.pool);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b).update(id, increment)));
    // generation starts at 1; every caller saw its own step, as if they had run one by one.
    expect([...results].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 2));
    const row = await handle.db.selectFrom('agents').select(['generation', 'state_version']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(Number(row.generation)).toBe(101);
    // Queued changes were coalesced: far fewer row versions than changes.
    expect(Number(row.state_version) - 1).toBeLessThan(100);
  });

  it('loses no update when many agents are written in the same flushes by two replicas', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await newAgent());
    const a = new AgentStateWriter(handle.pool);
    const b = new AgentStateWriter(handle.pool);
    const calls = ids.flatMap((id) => Array.from({ length: 10 }, (_, i) => ({ id, w: i % 2 === 0 ? a : b })));
    const results = await Promise.all(calls.map(({ id, w }) => w.update(id, increment).then((g) => ({ id, g }))));
    for (const id of ids) {
      const seen = results.filter((r) => r.id === id).map((r) => r.g);
      expect([...seen].sort((x, y) => x - y)).toEqual(Array.from({ length: 10 }, (_, i) => i + 2));
    }
    const rows = await handle.db.selectFrom('agents').select(['id', 'generation']).where('id', 'in', ids).execute();
    expect(rows.map((r) => Number(r.generation))).toEqual(ids.map(() => 11));
  });

  it('rejects only the caller whose decision refused, and later ones see the state before it', async () => {
    const id = await newAgent();
    const w = new AgentStateWriter(handle.pool);
    const refuse = () => {
      throw new GraftError('invalid_transition', 'no');
    };
    const [first, refused, third] = await Promise.allSettled([w.update(id, increment), w.update(id, refuse), w.update(id, increment)]);
    expect(first).toEqual({ status: 'fulfilled', value: 2 });
    expect(refused.status).toBe('rejected');
    expect(third).toEqual({ status: 'fulfilled', value: 3 });
  });

  it('never refuses on a remembered row that another replica has since changed', async () => {
    const id = await newAgent();
    const a = new AgentStateWriter(handle.pool);
    const b = new AgentStateWriter(handle.pool);
    const toPhase = (from: string, to: string) => (cur: { phase: string }) => {
      if (cur.phase !== from) throw new GraftError('invalid_transition', `phase is ${cur.phase}, not ${from}`);
      return { set: { phase: to }, result: () => to };
    };
    await a.update(id, toPhase('created', 'provisioning'));
    // b moves the agent on; a still remembers "provisioning".
    await b.update(id, toPhase('provisioning', 'starting'));
    // Decided from memory this would be refused; a must re-read and accept.
    await expect(a.update(id, toPhase('starting', 'running'))).resolves.toBe('running');
    // And a refusal that is real survives the re-read.
    await expect(a.update(id, toPhase('starting', 'running'))).rejects.toMatchObject({ code: 'invalid_transition' });
  });

  it('notices an agent deleted behind its back', async () => {
    const id = await newAgent();
    const w = new AgentStateWriter(handle.pool);
    await w.update(id, increment);
    await handle.db.deleteFrom('agents').where('id', '=', id).execute();
    await expect(w.update(id, increment)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('answers not_found for an agent that does not exist and writes nothing for a no-op', async () => {
    const w = new AgentStateWriter(handle.pool);
    await expect(w.update(uuidv7(), increment)).rejects.toMatchObject({ code: 'not_found' });
    const id = await newAgent();
    await expect(w.update(id, () => ({ noop: 'same' }))).resolves.toBe('same');
    const row = await handle.db.selectFrom('agents').select('state_version').where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.state_version).toBe('1');
  });
});
