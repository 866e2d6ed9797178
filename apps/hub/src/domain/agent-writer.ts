import type { AgentsTable } from '@graft/db';
import { type Activity, type AgentStateView, type DesiredState, GraftError, type Phase } from '@graft/protocol';
import type { Updateable } from 'kysely';
import type pg from 'pg';

/** Optimistic attempts before falling back to a row lock (a conflict means another replica wrote). */
const OPTIMISTIC_ATTEMPTS = 2;

const STATE_COLUMNS = ['id', 'project_id', 'phase', 'activity', 'detail', 'desired_state', 'generation', 'broker_id', 'state_version'] as const;

/**
 * The hot path's two statements, fixed in shape and named, so each pooled connection has Postgres
 * parse and plan them once (and the hub builds no query per write). Every column a decision may
 * set is written from the state after the batch; the others keep their value unless given.
 */
const SELECT_STATE = `SELECT ${STATE_COLUMNS.join(', ')} FROM agents WHERE id = $1`;
const WRITE_STATE = `UPDATE agents SET phase = $3, activity = $4, detail = $5, desired_state = $6, generation = $7, broker_id = $8,
  pending_reason = CASE WHEN $9::boolean THEN $10 ELSE pending_reason END,
  last_seen_at = COALESCE($11, last_seen_at), activity_changed_at = COALESCE($12, activity_changed_at),
  state_version = state_version + 1, updated_at = now()
  WHERE id = $1 AND state_version = $2 RETURNING state_version`;

/** Columns a decision may set; anything else is a programming error, not silently dropped. */
const WRITABLE = new Set(['phase', 'activity', 'detail', 'desired_state', 'generation', 'broker_id', 'pending_reason', 'last_seen_at', 'activity_changed_at']);

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

/** A change to one agent's state: pure, so it can be re-run against a fresher row. */
export type AgentDecide<T> = (current: AgentStateRow) => AgentDecision<T>;

type Row = { [K in (typeof STATE_COLUMNS)[number]]: K extends 'activity' | 'detail' | 'broker_id' ? string | null : string };

interface Pending {
  decide: AgentDecide<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

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

/** The state a decision's columns produce, so the next decision in a batch sees it. */
function applySet(cur: AgentStateRow, set: Updateable<AgentsTable>): AgentStateRow {
  return {
    ...cur,
    ...(set.phase !== undefined ? { phase: set.phase as Phase } : {}),
    ...(set.activity !== undefined ? { activity: set.activity as Activity | null } : {}),
    ...(set.detail !== undefined ? { detail: set.detail } : {}),
    ...(set.desired_state !== undefined ? { desiredState: set.desired_state as DesiredState } : {}),
    ...(set.generation !== undefined ? { generation: Number(set.generation) } : {}),
    ...(set.broker_id !== undefined ? { brokerId: set.broker_id } : {}),
  };
}

/**
 * Every change of an agent's state goes through here (status reports, lifecycle actions).
 *
 * Read-decide-write with optimistic concurrency: a write lands only if the row's state_version is
 * still the one the decision was made from. Changes to one agent on this replica queue; when a
 * write finishes, everything queued behind it is decided in arrival order, each against the state
 * the previous one produced, and written as one UPDATE. Each caller gets the state after its own
 * change, exactly as if they had run one by one, but a burst of reports costs two round trips,
 * not two each. A conflict can only come from another replica; after two, the batch is retried
 * under `SELECT ... FOR UPDATE`, which always makes progress.
 *
 * The row as last written here is remembered (bounded LRU), so the next change to a busy agent
 * skips the read: one round trip. A stale entry cannot lose an update (the version check refuses
 * the write and the batch is re-read), and since refusals and no-ops write nothing, a batch
 * decided from memory is only answered when all of it wrote; otherwise it is decided again from a
 * fresh read.
 */
export class AgentStateWriter {
  private readonly queued = new Map<string, Pending[]>();
  private readonly draining = new Set<string>();
  /** Last row written per agent, oldest first (Map keeps insertion order). */
  private readonly known = new Map<string, AgentStateRow>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxKnown = 10_000,
  ) {}

  /** Applies `decide` to the agent's current state; resolves with its answer. */
  update<T>(agentId: string, decide: AgentDecide<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const q = this.queued.get(agentId) ?? [];
      q.push({ decide, resolve: resolve as (v: unknown) => void, reject });
      this.queued.set(agentId, q);
      if (!this.draining.has(agentId)) void this.drain(agentId);
    });
  }

  private async drain(agentId: string): Promise<void> {
    this.draining.add(agentId);
    try {
      for (let batch = this.queued.get(agentId); batch; batch = this.queued.get(agentId)) {
        this.queued.delete(agentId);
        await this.writeBatch(agentId, batch).catch((err: unknown) => {
          for (const p of batch ?? []) p.reject(err);
        });
      }
    } finally {
      this.draining.delete(agentId);
    }
  }

  private async writeBatch(agentId: string, batch: Pending[]): Promise<void> {
    if (await this.attempt(this.pool, agentId, batch, 'remembered')) return;
    for (let attempt = 0; attempt < OPTIMISTIC_ATTEMPTS; attempt++) {
      if (await this.attempt(this.pool, agentId, batch, 'read')) return;
    }
    const client = await this.pool.connect();
    let done = false;
    try {
      await client.query('BEGIN');
      done = await this.attempt(client, agentId, batch, 'lock');
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
    // Unreachable while the row is locked; kept so a future change cannot silently drop writes.
    if (!done) throw new GraftError('conflict', 'agent is being changed concurrently; retry');
  }

  /**
   * One decide-write round from the remembered row, a fresh read, or a locked read; false when
   * it must be tried again (another writer got in between, or a remembered row was not enough).
   */
  private async attempt(db: pg.Pool | pg.PoolClient, agentId: string, batch: Pending[], source: 'remembered' | 'read' | 'lock'): Promise<boolean> {
    let read: AgentStateRow;
    if (source === 'remembered') {
      const known = this.known.get(agentId);
      if (!known) return false;
      read = known;
    } else {
      const { rows } = await (source === 'lock'
        ? db.query<Row>({ name: 'agent_state_lock', text: `${SELECT_STATE} FOR UPDATE`, values: [agentId] })
        : db.query<Row>({ name: 'agent_state_read', text: SELECT_STATE, values: [agentId] }));
      const row = rows[0];
      if (!row) {
        this.known.delete(agentId);
        for (const p of batch) p.reject(new GraftError('not_found', 'agent not found'));
        return true;
      }
      read = toStateRow(row);
    }
    let cur = read;
    let wroteAll = true;
    let set: Updateable<AgentsTable> = {};
    const settle: Array<() => void> = [];
    for (const p of batch) {
      let d: AgentDecision<unknown>;
      try {
        d = p.decide(cur);
      } catch (err) {
        wroteAll = false;
        settle.push(() => p.reject(err));
        continue;
      }
      if ('noop' in d) {
        wroteAll = false;
        const value = d.noop;
        settle.push(() => p.resolve(value));
        continue;
      }
      set = { ...set, ...d.set };
      cur = applySet(cur, d.set);
      const after = cur;
      const answer = d.result;
      settle.push(() => p.resolve(answer(after)));
    }
    // Refusals and no-ops are never checked against the database by a write: not from memory.
    if (source === 'remembered' && !wroteAll) return false;
    const keys = Object.keys(set);
    if (keys.length > 0) {
      const unknown = keys.filter((k) => !WRITABLE.has(k));
      if (unknown.length > 0) throw new Error(`AgentStateWriter cannot write ${unknown.join(', ')}`);
      const { rows } = await db.query<{ state_version: string }>({
        name: 'agent_state_write',
        text: WRITE_STATE,
        values: [
          agentId,
          read.stateVersion,
          cur.phase,
          cur.activity,
          cur.detail,
          cur.desiredState,
          cur.generation,
          cur.brokerId,
          'pending_reason' in set,
          set.pending_reason ?? null,
          set.last_seen_at ?? null,
          set.activity_changed_at ?? null,
        ],
      });
      const written = rows[0];
      if (!written) {
        this.known.delete(agentId);
        return false;
      }
      this.remember({ ...cur, stateVersion: written.state_version });
    } else {
      this.remember(read);
    }
    for (const s of settle) s();
    return true;
  }

  private remember(row: AgentStateRow): void {
    this.known.delete(row.id);
    this.known.set(row.id, row);
    if (this.known.size > this.maxKnown) {
      const oldest = this.known.keys().next();
      if (!oldest.done) this.known.delete(oldest.value);
    }
  }
}
