import type { AgentsTable } from '@graft/db';
import { type Activity, type AgentStateView, type DesiredState, GraftError, type Phase } from '@graft/protocol';
import type { Updateable } from 'kysely';
import type pg from 'pg';

/** Optimistic re-reads of a conflicting agent before falling back to a row lock. */
const OPTIMISTIC_ATTEMPTS = 2;
/** Most agents one flush writes; the rest wait for the next one. */
const MAX_FLUSH = 500;

const STATE_COLUMNS = [
  'id',
  'project_id',
  'phase',
  'activity',
  'detail',
  'desired_state',
  'generation',
  'broker_id',
  'state_version',
  'resume',
  'observed_generation',
  'prior_activity',
] as const;

/**
 * The hot path's statements, fixed in shape and named, so each pooled connection has Postgres
 * parse and plan them once (and the hub builds no query per write). One UPDATE writes any number
 * of agents, each only if its state_version is still the one its decisions were made from.
 */
const SELECT_STATES = `SELECT ${STATE_COLUMNS.join(', ')} FROM agents WHERE id = ANY($1::uuid[])`;
const WRITE_STATES = `UPDATE agents a SET phase = v.phase, activity = v.activity, detail = v.detail,
  desired_state = v.desired_state, generation = v.generation, broker_id = v.broker_id,
  pending_reason = CASE WHEN v.set_pending THEN v.pending_reason ELSE a.pending_reason END,
  last_seen_at = COALESCE(v.last_seen_at, a.last_seen_at),
  activity_changed_at = COALESCE(v.activity_changed_at, a.activity_changed_at),
  resume = v.resume, observed_generation = v.observed_generation, prior_activity = v.prior_activity,
  state_version = a.state_version + 1, updated_at = now()
  FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::uuid[],
              $9::boolean[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::boolean[], $14::bigint[], $15::text[])
    AS v(id, expected, phase, activity, detail, desired_state, generation, broker_id, set_pending, pending_reason, last_seen_at,
         activity_changed_at, resume, observed_generation, prior_activity)
  WHERE a.id = v.id AND a.state_version = v.expected
  RETURNING a.id, a.state_version`;

/** Columns a decision may set; anything else is a programming error, not silently dropped. */
const WRITABLE = new Set([
  'phase',
  'activity',
  'detail',
  'desired_state',
  'generation',
  'broker_id',
  'pending_reason',
  'last_seen_at',
  'activity_changed_at',
  'resume',
  'observed_generation',
  'prior_activity',
]);

/** The current state row an update decision is made from. */
export interface AgentStateRow extends AgentStateView {
  id: string;
  projectId: string;
  brokerId: string | null;
  generation: number;
  stateVersion: string;
  /** Whether the broker should resume (not start fresh) when it next starts the agent. */
  resume: boolean;
  /** Generation of the last broker report accepted; 0 before any. */
  observedGeneration: number;
  /** Activity before the platform set `offline`, restored when the broker is back. */
  priorActivity: Activity | null;
}

/** What a decision returns: columns to write and how to answer, or an answer without a write. */
export type AgentDecision<T> = { set: Updateable<AgentsTable>; result: (written: AgentStateRow) => T } | { noop: T };

/** A change to one agent's state: pure, so it can be re-run against a fresher row. */
export type AgentDecide<T> = (current: AgentStateRow) => AgentDecision<T>;

type Row = {
  [K in (typeof STATE_COLUMNS)[number]]: K extends 'activity' | 'detail' | 'broker_id' | 'prior_activity' ? string | null : K extends 'resume' ? boolean : string;
};

interface Pending {
  decide: AgentDecide<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** One agent's queued changes decided against one base row. */
interface Decided {
  id: string;
  base: AgentStateRow;
  after: AgentStateRow;
  set: Updateable<AgentsTable>;
  /** False when any change was refused or a no-op: those were never checked by a write. */
  wroteAll: boolean;
  settle: Array<() => void>;
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
    resume: row.resume,
    observedGeneration: Number(row.observed_generation),
    priorActivity: row.prior_activity as Activity | null,
  };
}

/** The state a decision's columns produce, so the next decision sees it. */
function applySet(cur: AgentStateRow, set: Updateable<AgentsTable>): AgentStateRow {
  return {
    ...cur,
    ...(set.phase !== undefined ? { phase: set.phase as Phase } : {}),
    ...(set.activity !== undefined ? { activity: set.activity as Activity | null } : {}),
    ...(set.detail !== undefined ? { detail: set.detail } : {}),
    ...(set.desired_state !== undefined ? { desiredState: set.desired_state as DesiredState } : {}),
    ...(set.generation !== undefined ? { generation: Number(set.generation) } : {}),
    ...(set.broker_id !== undefined ? { brokerId: set.broker_id } : {}),
    ...(set.resume !== undefined ? { resume: set.resume } : {}),
    ...(set.observed_generation !== undefined ? { observedGeneration: Number(set.observed_generation) } : {}),
    ...(set.prior_activity !== undefined ? { priorActivity: set.prior_activity as Activity | null } : {}),
  };
}

/** Decides one agent's queued changes in arrival order, each against the state the previous produced. */
function decideAll(base: AgentStateRow, pendings: Pending[]): Decided {
  let after = base;
  let set: Updateable<AgentsTable> = {};
  let wroteAll = true;
  const settle: Array<() => void> = [];
  for (const p of pendings) {
    let d: AgentDecision<unknown>;
    try {
      d = p.decide(after);
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
    const unknown = Object.keys(d.set).filter((k) => !WRITABLE.has(k));
    if (unknown.length > 0) throw new Error(`AgentStateWriter cannot write ${unknown.join(', ')}`);
    set = { ...set, ...d.set };
    after = applySet(after, d.set);
    const state = after;
    const answer = d.result;
    settle.push(() => p.resolve(answer(state)));
  }
  return { id: base.id, base, after, set, wroteAll, settle };
}

async function readStates(db: pg.Pool | pg.PoolClient, ids: string[], lock: boolean): Promise<Map<string, AgentStateRow>> {
  const { rows } = lock
    ? await db.query<Row>({ name: 'agent_states_lock', text: `${SELECT_STATES} FOR UPDATE`, values: [ids] })
    : await db.query<Row>({ name: 'agent_states_read', text: SELECT_STATES, values: [ids] });
  return new Map(rows.map((r) => [r.id, toStateRow(r)]));
}

/** Writes every decided agent whose row is unchanged; returns the new versions of those written. */
async function writeStates(db: pg.Pool | pg.PoolClient, decided: Decided[]): Promise<Map<string, string>> {
  const col = <T>(f: (d: Decided) => T) => decided.map(f);
  const { rows } = await db.query<{ id: string; state_version: string }>({
    name: 'agent_states_write',
    text: WRITE_STATES,
    values: [
      col((d) => d.id),
      col((d) => d.base.stateVersion),
      col((d) => d.after.phase),
      col((d) => d.after.activity),
      col((d) => d.after.detail),
      col((d) => d.after.desiredState),
      col((d) => d.after.generation),
      col((d) => d.after.brokerId),
      col((d) => 'pending_reason' in d.set),
      col((d) => d.set.pending_reason ?? null),
      col((d) => d.set.last_seen_at ?? null),
      col((d) => d.set.activity_changed_at ?? null),
      col((d) => d.after.resume),
      col((d) => d.after.observedGeneration),
      col((d) => d.after.priorActivity),
    ],
  });
  return new Map(rows.map((r) => [r.id, r.state_version]));
}

/**
 * Every change of an agent's state goes through here (status reports, lifecycle actions).
 *
 * Read-decide-write with optimistic concurrency: a write lands only if the row's state_version is
 * still the one the decision was made from. Changes queue here and are written in flushes, one at
 * a time: a flush takes every agent with queued changes, decides each agent's changes in arrival
 * order (each against the state the previous one produced, so every caller gets exactly what
 * running one by one would give) and writes all of them with one UPDATE: group commit, so a
 * burst of reports from many agents costs one round trip, not one each.
 *
 * The row as last written here is remembered (bounded LRU), so a busy agent needs no read. A
 * stale entry cannot lose an update (the version check refuses that row), and since refusals and
 * no-ops write nothing, changes decided from memory are only answered when all of them wrote;
 * otherwise the agent goes the slow way: a fresh read, twice, then `SELECT ... FOR UPDATE`, which
 * always makes progress.
 */
export class AgentStateWriter {
  private readonly queued = new Map<string, Pending[]>();
  private flushing = false;
  /** Last row written per agent, oldest first (Map keeps insertion order). */
  private readonly known = new Map<string, AgentStateRow>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxKnown = 10_000,
    /** Told of every written change (after it is written), e.g. to publish it to live readers. */
    private readonly onChanged: (row: AgentStateRow) => void = () => {},
  ) {}

  /** Applies `decide` to the agent's current state; resolves with its answer. */
  update<T>(agentId: string, decide: AgentDecide<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const q = this.queued.get(agentId) ?? [];
      q.push({ decide, resolve: resolve as (v: unknown) => void, reject });
      this.queued.set(agentId, q);
      this.kick();
    });
  }

  /** Drops what is remembered of an agent whose row is gone. */
  forget(agentId: string): void {
    this.known.delete(agentId);
  }

  private kick(): void {
    if (this.flushing || this.queued.size === 0) return;
    this.flushing = true;
    const batch = new Map<string, Pending[]>();
    for (const [id, pendings] of this.queued) {
      if (batch.size >= MAX_FLUSH) break;
      batch.set(id, pendings);
    }
    for (const id of batch.keys()) this.queued.delete(id);
    void this.flush(batch)
      .catch((err: unknown) => {
        for (const pendings of batch.values()) for (const p of pendings) p.reject(err);
      })
      .finally(() => {
        this.flushing = false;
        this.kick();
      });
  }

  private async flush(batch: Map<string, Pending[]>): Promise<void> {
    const bases = new Map<string, AgentStateRow>();
    const fresh = new Set<string>();
    const unknown: string[] = [];
    for (const id of batch.keys()) {
      const k = this.known.get(id);
      if (k) bases.set(id, k);
      else unknown.push(id);
    }
    if (unknown.length > 0) {
      const read = await readStates(this.pool, unknown, false);
      for (const id of unknown) {
        const row = read.get(id);
        if (row) {
          bases.set(id, row);
          fresh.add(id);
        } else {
          this.rejectMissing(id, batch.get(id) ?? []);
          batch.delete(id);
        }
      }
    }
    const slow: string[] = [];
    const writes: Decided[] = [];
    for (const [id, pendings] of batch) {
      const base = bases.get(id);
      if (!base) continue;
      const d = decideAll(base, pendings);
      if (!fresh.has(id) && !d.wroteAll) slow.push(id);
      else if (Object.keys(d.set).length === 0) this.finish(d, base.stateVersion);
      else writes.push(d);
    }
    if (writes.length > 0) {
      const written = await writeStates(this.pool, writes);
      for (const d of writes) {
        const version = written.get(d.id);
        if (version !== undefined) this.finish(d, version);
        else {
          this.known.delete(d.id);
          slow.push(d.id);
        }
      }
    }
    for (const id of slow) await this.slowPath(id, batch.get(id) ?? []);
  }

  /** One agent after a conflict: fresh reads first, then under a row lock. */
  private async slowPath(id: string, pendings: Pending[]): Promise<void> {
    for (let attempt = 0; attempt < OPTIMISTIC_ATTEMPTS; attempt++) {
      const base = (await readStates(this.pool, [id], false)).get(id);
      if (!base) return this.rejectMissing(id, pendings);
      const d = decideAll(base, pendings);
      if (Object.keys(d.set).length === 0) return this.finish(d, base.stateVersion);
      const version = (await writeStates(this.pool, [d])).get(id);
      if (version !== undefined) return this.finish(d, version);
    }
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const base = (await readStates(client, [id], true)).get(id);
      if (!base) {
        await client.query('COMMIT');
        return this.rejectMissing(id, pendings);
      }
      const d = decideAll(base, pendings);
      const version = Object.keys(d.set).length === 0 ? base.stateVersion : (await writeStates(client, [d])).get(id);
      await client.query('COMMIT');
      // Unreachable while the row is locked; kept so a future change cannot silently drop writes.
      if (version === undefined) throw new GraftError('conflict', 'agent is being changed concurrently; retry');
      this.finish(d, version);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  private finish(d: Decided, stateVersion: string): void {
    const row = { ...d.after, stateVersion };
    this.remember(row);
    for (const s of d.settle) s();
    if (Object.keys(d.set).length > 0) {
      try {
        this.onChanged(row);
      } catch {
        // A listener's failure is not the writer's: the change is written and answered.
      }
    }
  }

  private rejectMissing(id: string, pendings: Pending[]): void {
    this.known.delete(id);
    for (const p of pendings) p.reject(new GraftError('not_found', 'agent not found'));
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
