import type { Database } from '@graft/db';
import { type AgentStateView, type Activity, type DesiredState, GraftError, type Phase } from '@graft/protocol';
import type { Kysely, Updateable } from 'kysely';
import type { AgentsTable } from '@graft/db';

const MAX_ATTEMPTS = 5;

/** The current state row an update decision is made from. */
export interface AgentStateRow extends AgentStateView {
  id: string;
  projectId: string;
  brokerId: string | null;
  generation: number;
  stateVersion: string;
}

/**
 * Read-decide-write with optimistic concurrency: `decide` sees the current state and returns the
 * columns to write (or throws); the write only lands if nobody changed the row in between, else it
 * re-reads and decides again. Two round trips per change, no long-held row locks.
 */
export async function updateAgentState<T>(
  db: Kysely<Database>,
  agentId: string,
  decide: (current: AgentStateRow) => { set: Updateable<AgentsTable>; result: (written: AgentStateRow) => T } | { noop: T },
): Promise<T> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const row = await db
      .selectFrom('agents')
      .select(['id', 'project_id', 'phase', 'activity', 'detail', 'desired_state', 'generation', 'broker_id', 'state_version'])
      .where('id', '=', agentId)
      .executeTakeFirst();
    if (!row) throw new GraftError('not_found', 'agent not found');
    const current: AgentStateRow = {
      id: row.id,
      projectId: row.project_id,
      phase: row.phase as Phase,
      activity: row.activity as Activity | null,
      detail: row.detail,
      desiredState: row.desired_state as DesiredState,
      generation: Number(row.generation),
      brokerId: row.broker_id,
      stateVersion: row.state_version,
    };
    const decision = decide(current);
    if ('noop' in decision) return decision.noop;
    const written = await db
      .updateTable('agents')
      .set({ ...decision.set, state_version: Number(current.stateVersion) + 1, updated_at: new Date() })
      .where('id', '=', agentId)
      .where('state_version', '=', current.stateVersion)
      .returning(['phase', 'activity', 'detail', 'desired_state', 'generation', 'broker_id', 'state_version'])
      .executeTakeFirst();
    if (written) {
      return decision.result({
        ...current,
        phase: written.phase as Phase,
        activity: written.activity as Activity | null,
        detail: written.detail,
        desiredState: written.desired_state as DesiredState,
        generation: Number(written.generation),
        brokerId: written.broker_id,
        stateVersion: written.state_version,
      });
    }
  }
  throw new GraftError('conflict', 'agent is being changed concurrently; retry');
}
