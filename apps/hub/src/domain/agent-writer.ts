import type { AgentsTable, Database } from '@graft/db';
import { type Activity, type AgentStateView, type DesiredState, GraftError, type Phase } from '@graft/protocol';
import type { Kysely, Transaction, Updateable } from 'kysely';
import { KeyedMutex } from './keyed-mutex.js';

/** Optimistic attempts before falling back to a row lock (contention on one agent is rare). */
const OPTIMISTIC_ATTEMPTS = 2;

const STATE_COLUMNS = ['id', 'project_id', 'phase', 'activity', 'detail', 'desired_state', 'generation', 'broker_id', 'state_version'] as const;

/** The current state row an update decision is made from. */
export interface AgentStateRow extends AgentStateView {
  id: string;
  projectId: string;
  brokerId: string | null;
  generation: number;
  stateVersion: string;
}

/** What a decision returns: columns to write and how to answer, or an answer without a write. */
export type AgentDecision<T> = { set: Updateable<AgentsTable>; result: (written: AgentStateRow) => T } | { noop: T };

type Row = {
  id: string;
  project_id: string;
  phase: string;
  activity: string | null;
  detail: string | null;
  desired_state: string;
  generation: string;
  broker_id: string | null;
  state_version: string;
};

function toStateRow(row: Row): AgentStateRow {
  return {
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
}

async function attempt<T>(
  db: Kysely<Database> | Transaction<Database>,
  agentId: string,
  decide: (current: AgentStateRow) => AgentDecision<T>,
  lock: boolean,
): Promise<{ done: true; value: T } | { done: false }> {
  const select = db.selectFrom('agents').select(STATE_COLUMNS).where('id', '=', agentId);
  const row = await (lock ? select.forUpdate() : select).executeTakeFirst();
  if (!row) throw new GraftError('not_found', 'agent not found');
  const current = toStateRow(row);
  const decision = decide(current);
  if ('noop' in decision) return { done: true, value: decision.noop };
  const written = await db
    .updateTable('agents')
    .set({ ...decision.set, state_version: Number(current.stateVersion) + 1, updated_at: new Date() })
    .where('id', '=', agentId)
    .where('state_version', '=', current.stateVersion)
    .returning(STATE_COLUMNS)
    .executeTakeFirst();
  return written ? { done: true, value: decision.result(toStateRow(written)) } : { done: false };
}

/**
 * Read-decide-write for every change of an agent's state. `decide` sees the current state and
 * returns the columns to write (or throws a GraftError). The fast path is optimistic: two round
 * trips and no lock, the write landing only if nobody changed the row in between. Writers on this
 * replica queue per agent; a conflict can then only come from another replica, and after two it
 * falls back to `SELECT ... FOR UPDATE` in a transaction, which always makes progress.
 */
export function updateAgentState<T>(db: Kysely<Database>, agentId: string, decide: (current: AgentStateRow) => AgentDecision<T>): Promise<T> {
  return localWriters.run(agentId, () => writeAgentState(db, agentId, decide));
}

/** Writes to one agent from this replica queue here, so they never collide with each other. */
const localWriters = new KeyedMutex();

async function writeAgentState<T>(db: Kysely<Database>, agentId: string, decide: (current: AgentStateRow) => AgentDecision<T>): Promise<T> {
  for (let i = 0; i < OPTIMISTIC_ATTEMPTS; i++) {
    const r = await attempt(db, agentId, decide, false);
    if (r.done) return r.value;
  }
  const locked = await db.transaction().execute((trx) => attempt(trx, agentId, decide, true));
  if (locked.done) return locked.value;
  // Unreachable while the row is locked; kept so a future change cannot silently drop a write.
  throw new GraftError('conflict', 'agent is being changed concurrently; retry');
}
