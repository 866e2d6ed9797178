import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import {
  runtimeNeeds,
  runtimeOnBroker,
  type AgentSpec,
  applyStatus,
  type CommandErrorCode,
  canTransition,
  type CommandName,
  type DesiredAgent,
  type DesiredState,
  type ObservedAgent,
  type PendingReason,
  Phase,
  type ResultMessage,
  type TemplateSpec,
} from '@graft/protocol';
import type { Kysely, } from 'kysely';
import type { JwtService } from '../auth/jwt-service.js';
import type { AgentStateWriter } from '../domain/agent-writer.js';
import { loadProjectSecrets } from '../domain/project-secrets.js';
import type { SecretBox } from '../domain/secret-box.js';
import { Placement } from './placement.js';

/** Phases after which an agent no longer holds a slot on its broker. */
const SLOT_FREEING: ReadonlySet<Phase> = new Set(['stopped', 'error', 'suspended']);
/** Agents looked at per placement pass; a pass that fills its batch runs again. */
const PLACEMENT_BATCH = 200;
/** Level-triggered safety net for this hub's tunnels: unconfirmed commands are resent this often even without an event (placement retries are the `placement` job's). */
const REDELIVER_EVERY_MS = 10_000;
/** A generation no broker confirmed for this long is sent again. */
const REDELIVER_AFTER_MS = 5_000;

/** Port: how the dispatcher reaches a broker's tunnel (owned here; the tunnel server implements it). */
export interface TunnelRouter {
  /** Sends a command and resolves with the broker's result; null when no tunnel of that broker is reachable from here. */
  request(brokerId: string, command: CommandName, agent: DesiredAgent, message?: string): Promise<ResultMessage | null>;
  /** Closes the broker's tunnel, if this hub holds it (the broker was deleted). */
  revoke(brokerId: string): void;
  /** Brokers whose tunnel this hub holds. */
  localBrokerIds(): string[];
}

/** What the dispatcher needs; wired in server.ts. */
export interface DispatcherDeps {
  db: Kysely<Database>;
  writer: AgentStateWriter;
  placement: Placement;
  jwt: JwtService;
  /** Opens project secrets, which go into agents' environments. */
  box: SecretBox;
  agentTokenTtlSecs: number;
  /** The URL agents use to reach the hub (known once the server listens). */
  hubUrl: () => string;
  log: Logger;
  /** Counts brokers' status reports by what became of them. */
  onStatus?: (outcome: 'applied' | 'stale' | 'rejected') => void;
}

/** One agent's desired entry and the broker that holds it. */
interface DesiredRow {
  brokerId: string | null;
  desired: DesiredAgent;
}

interface AgentRow {
  id: string;
  project_id: string;
  name: string;
  generation: string;
  desired_state: string;
  resume: boolean;
  phase: string;
  observed_generation: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  task: string | null;
  broker_id: string | null;
  spec: TemplateSpec;
  runtimes: string[] | null;
  clone_url: string | null;
}

/**
 * Level-triggered dispatch (DESIGN §4): Postgres holds every agent's desired state; commands over a
 * tunnel are hints carrying that whole state, and on every (re)connect a broker gets its full
 * desired set, so a lost command is repaired by reconciliation, never lost. Also places agents
 * waiting for a broker, and marks agents offline when their broker stops answering.
 */
export class Dispatcher {
  private router: TunnelRouter | undefined;
  /** The placement pass running now, and the one asked for meanwhile (it runs after). */
  private placing: Promise<void> | null = null;
  private placeNext: Promise<void> | null = null;
  /** Agents whose messages are being delivered by this hub now, and those to look at again after. */
  private readonly delivering = new Set<string>();
  private readonly deliverAgain = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly deps: DispatcherDeps) {}

  /** Connects the tunnel side and starts the periodic redelivery (it concerns only the tunnels this hub holds). */
  start(router: TunnelRouter): void {
    this.router = router;
    this.timers.push(setInterval(() => this.redeliver().catch((err: unknown) => this.deps.log.error('dispatch.redeliver_failed', { err })), REDELIVER_EVERY_MS));
    for (const t of this.timers) t.unref();
  }

  /** Stops the timers and waits for the placement passes under way. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([this.placing, this.placeNext]);
  }

  /** Places a new agent: a broker and its runtime, or why it must wait. */
  choose(projectId: string, spec: TemplateSpec, requestedBrokerId: string | null) {
    return this.deps.placement.choose(Placement.requestFor(projectId, spec, requestedBrokerId));
  }

  /**
   * Sends an agent's current desired state to its broker as `command`. Never throws: an agent
   * without a broker is left to placement, and a broker out of reach gets the same state when it reconnects.
   */
  async push(agentId: string, command: CommandName, message?: string): Promise<void> {
    try {
      const [row] = await this.desired({ agentIds: [agentId] });
      if (!row) return;
      if (row.brokerId === null) {
        if (row.desired.desiredState === 'running') this.schedulePlacement();
        return;
      }
      await this.send(row.brokerId, command, row.desired, message);
    } catch (err) {
      this.deps.log.error('dispatch.failed', { agentId, command, err });
    }
  }

  /** Sends `create` for an agent just inserted on `brokerId` (generation 1), built from what the caller holds. */
  async createOn(brokerId: string, runtime: string, a: { id: string; projectId: string; name: string; spec: TemplateSpec; env: Record<string, string>; labels: Record<string, string>; task: string | null }): Promise<void> {
    try {
      const [secrets, project] = await Promise.all([
        loadProjectSecrets(this.deps.db, this.deps.box, [a.projectId]),
        this.deps.db.selectFrom('projects').select('clone_url').where('id', '=', a.projectId).executeTakeFirst(),
      ]);
      const desired = this.toDesired({
        id: a.id,
        project_id: a.projectId,
        name: a.name,
        generation: '1',
        desired_state: 'running',
        resume: false,
        phase: 'created',
        observed_generation: '0',
        env: a.env,
        labels: a.labels,
        task: a.task,
        broker_id: brokerId,
        spec: a.spec,
        runtimes: [runtime],
        clone_url: project?.clone_url ?? null,
      }, secrets.get(a.projectId) ?? {});
      await this.send(brokerId, 'create', desired);
    } catch (err) {
      this.deps.log.error('dispatch.failed', { agentId: a.id, command: 'create', err });
    }
  }

  /** Sends one command and acts on a refusal. */
  private async send(brokerId: string, command: CommandName, desired: DesiredAgent, message?: string): Promise<void> {
    const result = (await this.router?.request(brokerId, command, desired, message)) ?? null;
    if (result === null) {
      this.deps.log.info('dispatch.deferred', { agentId: desired.agentId, brokerId, command, generation: desired.generation });
      return;
    }
    if (!result.ok && result.error) await this.refused(brokerId, desired, result.error.code, result.error.message);
    // The answer says what the broker holds after acting: it records that this generation arrived, even when no phase changed.
    else if (result.ok && result.agent) await this.statusReported(brokerId, result.agent);
  }

  /**
   * Sends an agent's pending messages to its broker, oldest first, while the agent runs there, and
   * marks each delivered once the broker confirms it. Stops at the first failure: the message stays
   * pending and is sent again when the agent next starts, and by the periodic sweep. Delivery is at
   * least once (a confirmation lost with a dropped tunnel means one more copy).
   */
  async deliverMessages(agentId: string): Promise<void> {
    if (this.delivering.has(agentId)) {
      this.deliverAgain.add(agentId);
      return;
    }
    this.delivering.add(agentId);
    try {
      do {
        this.deliverAgain.delete(agentId);
        const pending = await this.deps.db
          .selectFrom('agent_messages')
          .select(['id', 'body'])
          .where('agent_id', '=', agentId)
          .where('state', '=', 'pending')
          .orderBy('id')
          .limit(PLACEMENT_BATCH)
          .execute();
        if (pending.length === 0) return;
        const [entry] = await this.desired({ agentIds: [agentId] });
        if (!entry || entry.brokerId === null || entry.desired.observedPhase !== 'running') return;
        for (const m of pending) {
          await this.deps.db
            .updateTable('agent_messages')
            .set((eb) => ({ attempts: eb('attempts', '+', 1) }))
            .where('id', '=', m.id)
            .execute();
          const result = (await this.router?.request(entry.brokerId, 'message', entry.desired, m.body)) ?? null;
          if (!result?.ok) {
            this.deps.log.info('message.deferred', { agentId, messageId: m.id, reason: result?.error?.code ?? 'unreachable' });
            return;
          }
          await this.deps.db.updateTable('agent_messages').set({ state: 'delivered', delivered_at: new Date() }).where('id', '=', m.id).execute();
          this.deps.log.info('message.delivered', { agentId, messageId: m.id });
        }
      } while (this.deliverAgain.has(agentId));
    } catch (err) {
      this.deps.log.error('message.delivery_failed', { agentId, err });
    } finally {
      this.delivering.delete(agentId);
    }
  }

  /**
   * Level-triggered safety net for the tunnels this hub holds: an agent whose current generation no
   * broker has confirmed for a while (a command created on another hub replica, or one lost without
   * the tunnel dropping) gets its desired state sent again. Commands are idempotent, so a late
   * duplicate costs nothing.
   */
  async redeliver(): Promise<void> {
    const local = this.router?.localBrokerIds() ?? [];
    if (local.length === 0) return;
    // Only messages left waiting a while: a fresh one is being delivered by the replica that took it,
    // and a second copy sent from here meanwhile would reach the agent twice.
    await this.deliverWaitingMessages(local, REDELIVER_AFTER_MS);
    const stale = await this.deps.db
      .selectFrom('agents')
      .select('id')
      .where('broker_id', 'in', local)
      .whereRef('observed_generation', '<', 'generation')
      .where('updated_at', '<', new Date(Date.now() - REDELIVER_AFTER_MS))
      .limit(PLACEMENT_BATCH)
      .execute();
    if (stale.length === 0) return;
    for (const row of await this.desired({ agentIds: stale.map((r) => r.id) })) {
      if (row.brokerId === null) continue;
      const d = row.desired;
      const command: CommandName =
        d.desiredState === 'deleted' ? 'delete' : d.desiredState === 'stopped' ? 'stop' : d.desiredState === 'suspended' ? 'suspend' : d.observedGeneration === 0 ? 'create' : 'start';
      this.deps.log.info('dispatch.redeliver', { agentId: d.agentId, brokerId: row.brokerId, command, generation: d.generation });
      await this.send(row.brokerId, command, d);
    }
  }

  /** A broker refused a command: a placement it cannot honour goes back to waiting. */
  private async refused(brokerId: string, desired: DesiredAgent, code: CommandErrorCode, message: string): Promise<void> {
    this.deps.log.warn('dispatch.refused', { agentId: desired.agentId, brokerId, code, message, generation: desired.generation });
    if (code !== 'no_capacity' && code !== 'no_runtime') return;
    await this.deps.writer
      .update(desired.agentId, (cur) =>
        cur.brokerId === brokerId && cur.generation === desired.generation && cur.observedGeneration < cur.generation
          ? { set: { broker_id: null, pending_reason: code }, result: () => undefined }
          : { noop: undefined },
      )
      .catch(() => {});
  }

  /** Runs a placement pass soon, for an event (an agent created, a slot freed, a broker back). */
  schedulePlacement(): void {
    this.placementPass().catch((err: unknown) => this.deps.log.error('placement.failed', { err }));
  }

  /**
   * A placement pass that starts now or, while one runs, right after it (the running one may have
   * read the agents before the change that asks for this one); resolves when it is done, rejects
   * when it fails. Passes never overlap on this hub, and requests during one share the next. The
   * `placement` job calls this as the periodic retry.
   */
  placementPass(): Promise<void> {
    if (!this.placing) {
      const pass = this.place().finally(() => {
        if (this.placing === pass) this.placing = null;
      });
      this.placing = pass;
      return pass;
    }
    this.placeNext ??= this.placing
      .catch(() => {})
      .then(() => {
        this.placeNext = null;
        return this.placementPass();
      });
    return this.placeNext;
  }

  /** Tries every agent wanted running that no broker holds. */
  private async place(): Promise<void> {
    let after = '00000000-0000-0000-0000-000000000000';
    // Within one pass, agents that fit nowhere for the same reasons share one answer: a thousand
    // waiting agents of one project cost one diagnosis, not a thousand.
    const unplaceable = new Map<string, PendingReason>();
    for (;;) {
      const waiting = await this.deps.db
        .selectFrom('agents as a')
        .innerJoin('template_versions as tv', (j) => j.onRef('tv.template_id', '=', 'a.template_id').onRef('tv.version', '=', 'a.template_version'))
        .select(['a.id', 'a.project_id', 'a.requested_broker_id', 'a.pending_reason', 'tv.spec'])
        .where('a.broker_id', 'is', null)
        .where('a.desired_state', '=', 'running')
        .where('a.id', '>', after)
        .orderBy('a.id')
        .limit(PLACEMENT_BATCH)
        .execute();
      for (const a of waiting) {
        const spec = a.spec as unknown as TemplateSpec;
        const request = Placement.requestFor(a.project_id, spec, a.requested_broker_id);
        const key = JSON.stringify([request.projectId, request.needs, request.labels, request.requestedBrokerId]);
        const known = unplaceable.get(key);
        const decision = known ? ({ ok: false, pendingReason: known } as const) : await this.deps.placement.choose(request);
        if (!decision.ok) unplaceable.set(key, decision.pendingReason);
        const placed = await this.deps.writer
          .update(a.id, (cur) => {
            if (cur.brokerId !== null || cur.desiredState !== 'running') return { noop: false };
            if (!decision.ok) return decision.pendingReason === a.pending_reason ? { noop: false } : { set: { pending_reason: decision.pendingReason }, result: () => false };
            return { set: { broker_id: decision.brokerId, pending_reason: null }, result: () => true };
          })
          .catch(() => false);
        if (placed && decision.ok) {
          this.deps.log.info('agent.placed', { agentId: a.id, brokerId: decision.brokerId });
          void this.push(a.id, 'create');
        }
      }
      const last = waiting.at(-1);
      if (!last || waiting.length < PLACEMENT_BATCH) return;
      after = last.id;
    }
  }

  /** A broker said hello: apply what it holds, then answer its full desired set. */
  async brokerConnected(brokerId: string, inventory: readonly ObservedAgent[]): Promise<DesiredAgent[]> {
    const written = await Promise.all(inventory.map((obs) => this.statusReported(brokerId, obs, true)));
    // Refuse the connection rather than welcome a broker whose state was not recorded: it dials again and resends it all.
    if (written.includes(false)) throw new Error(`could not record ${written.filter((w) => !w).length} of the broker's ${written.length} agents`);
    const desired = await this.desired({ brokerId });
    this.schedulePlacement();
    return desired.map((d) => d.desired);
  }

  /** The broker has its desired set: messages that waited for its agents while it was away can go. */
  async brokerWelcomed(brokerId: string): Promise<void> {
    await this.deliverWaitingMessages([brokerId]);
  }

  /** Starts delivery for every running agent of these brokers that has messages waiting. */
  private async deliverWaitingMessages(brokerIds: string[], olderThanMs = 0): Promise<void> {
    const waiting = await this.deps.db
      .selectFrom('agent_messages as m')
      .innerJoin('agents as a', 'a.id', 'm.agent_id')
      .select('m.agent_id')
      .distinct()
      .where('m.state', '=', 'pending')
      .where('m.created_at', '<=', new Date(Date.now() - olderThanMs))
      .where('a.phase', '=', 'running')
      .where('a.broker_id', 'in', brokerIds)
      .limit(PLACEMENT_BATCH)
      .execute();
    for (const { agent_id } of waiting) void this.deliverMessages(agent_id);
  }

  /**
   * Applies a broker's observation of one agent (DESIGN §3): reports of an older generation than
   * the agent's are stale and dropped. An inventory
   * entry (`snapshot`) may skip phases: the reports in between can have been lost with a dropped
   * tunnel or a hub that died before writing them, so they count as passed. Resolves false when the
   * report could not be written (Postgres away): the caller must make the broker send it again.
   */
  async statusReported(brokerId: string, obs: ObservedAgent, snapshot = false): Promise<boolean> {
    const now = new Date();
    let outcome: 'applied' | 'stale' | 'rejected' = 'applied';
    try {
      const accepted = await this.deps.writer.update<boolean | 'started'>(obs.agentId, (cur) => {
        outcome = 'applied';
        if (cur.brokerId !== brokerId || obs.generation < cur.generation) {
          outcome = 'stale';
          return { noop: false };
        }
        const detail = obs.detail ?? (obs.phase !== cur.phase ? null : undefined);
        const from = snapshot ? phaseBefore(cur.phase, obs.phase) : cur.phase;
        const r = applyStatus({ ...cur, phase: from }, { phase: obs.phase, detail }, 'broker');
        if (!r.ok) {
          outcome = 'rejected';
          this.deps.log.warn('agent.status_rejected', { agentId: obs.agentId, brokerId, from: cur.phase, to: obs.phase, reason: r.message });
          return { noop: false };
        }
        // An agent marked offline stays so here: the liveness sweep restores it once its broker and its own reports are both fresh.
        return {
          set: {
            phase: r.phase,
            activity: r.activity,
            detail: r.detail,
            observed_generation: obs.generation,
            // Outside running there is no activity, so nothing to restore either.
            ...(r.phase !== 'running' ? { prior_activity: null } : {}),
            ...(r.activity !== cur.activity || r.phase !== cur.phase ? { activity_changed_at: now } : {}),
          },
          // Entering running: messages waiting for the agent can go now.
          result: () => (r.phase === 'running' && cur.phase !== 'running' ? 'started' : true),
        };
      });
      this.deps.onStatus?.(outcome);
      if (accepted && SLOT_FREEING.has(obs.phase)) this.schedulePlacement();
      if (accepted === 'started') void this.deliverMessages(obs.agentId);
      return true;
    } catch (err) {
      this.deps.log.warn('agent.status_dropped', { agentId: obs.agentId, brokerId, err });
      return false;
    }
  }

  /** A broker removed an agent that was wanted deleted: forget it. */
  async removed(brokerId: string, agentId: string, generation: number): Promise<void> {
    const r = await this.deps.db
      .deleteFrom('agents')
      .where('id', '=', agentId)
      .where('broker_id', '=', brokerId)
      .where('desired_state', '=', 'deleted')
      .where('generation', '<=', String(generation))
      .executeTakeFirst();
    if (r.numDeletedRows > 0n) {
      this.deps.writer.forget(agentId);
      this.deps.log.info('agent.deleted', { agentId, brokerId });
      this.schedulePlacement();
    }
  }

  /** The broker row is about to go: its agents lose their broker (and those wanted running are placed again). */
  async brokerDeleted(brokerId: string): Promise<void> {
    this.router?.revoke(brokerId);
    const agents = await this.deps.db.selectFrom('agents').select('id').where('broker_id', '=', brokerId).execute();
    await this.deps.db.deleteFrom('agents').where('broker_id', '=', brokerId).where('desired_state', '=', 'deleted').execute();
    for (const { id } of agents) {
      await this.deps.writer
        .update(id, (cur) => {
          if (cur.brokerId !== brokerId) return { noop: undefined };
          const r = applyStatus(cur, { phase: 'error', detail: `broker ${brokerId} was deleted` }, 'platform');
          return {
            set: {
              broker_id: null,
              ...(r.ok ? { phase: r.phase, activity: r.activity, detail: r.detail } : {}),
              pending_reason: cur.desiredState === 'running' ? 'no_broker' : null,
            },
            result: () => undefined,
          };
        })
        .catch(() => {});
    }
  }

  /** Desired entries of some agents, or of every agent a broker holds. */
  async desired(where: { agentIds: string[] } | { brokerId: string }): Promise<DesiredRow[]> {
    let q = this.deps.db
      .selectFrom('agents as a')
      .innerJoin('template_versions as tv', (j) => j.onRef('tv.template_id', '=', 'a.template_id').onRef('tv.version', '=', 'a.template_version'))
      .leftJoin('brokers as b', 'b.id', 'a.broker_id')
      .innerJoin('projects as p', 'p.id', 'a.project_id')
      .select([
        'a.id',
        'a.project_id',
        'a.name',
        'a.generation',
        'a.desired_state',
        'a.resume',
        'a.phase',
        'a.observed_generation',
        'a.env',
        'a.labels',
        'a.task',
        'a.broker_id',
        'tv.spec',
        'b.runtimes',
        'p.clone_url',
      ]);
    q = 'agentIds' in where ? q.where('a.id', 'in', where.agentIds) : q.where('a.broker_id', '=', where.brokerId);
    const rows = (await q.orderBy('a.id').execute()) as unknown as AgentRow[];
    const secrets = await loadProjectSecrets(this.deps.db, this.deps.box, rows.map((r) => r.project_id));
    return rows.map((r) => ({ brokerId: r.broker_id, desired: this.toDesired(r, secrets.get(r.project_id) ?? {}) }));
  }

  /** The agent's desired entry; its environment is the template's, then the agent's, then the project's secrets (named as variables), then the GRAFT_* variables. */
  private toDesired(r: AgentRow, secrets: Record<string, string>): DesiredAgent {
    const token = this.deps.jwt.sign({ typ: 'agent', sub: r.id, prj: r.project_id }, this.deps.agentTokenTtlSecs);
    const spec: AgentSpec = {
      projectId: r.project_id,
      name: r.name,
      harness: r.spec.harness,
      runtime: runtimeOnBroker(runtimeNeeds(r.spec), r.runtimes ?? []) ?? 'process',
      image: r.spec.image ?? null,
      command: r.spec.command ?? null,
      env: {
        ...(r.spec.env ?? {}),
        ...r.env,
        ...secrets,
        GRAFT_HUB_URL: this.deps.hubUrl(),
        GRAFT_AGENT_ID: r.id,
        GRAFT_PROJECT_ID: r.project_id,
        GRAFT_AGENT_TOKEN: token.token,
      },
      task: r.task,
      labels: r.labels,
      network: runtimeNeeds(r.spec).network,
      resources: r.spec.resources ?? {},
      repository: r.clone_url,
      secretEnv: Object.keys(secrets).sort(),
    };
    return {
      agentId: r.id,
      generation: Number(r.generation),
      desiredState: r.desired_state as DesiredState,
      resume: r.resume,
      observedPhase: r.phase as Phase,
      observedGeneration: Number(r.observed_generation),
      spec,
    };
  }
}

/**
 * The phase just before `to` on the shortest legal path from `from`: `from` itself when `to` may
 * follow directly, or when no path leads there (the state machine then refuses the report).
 */
function phaseBefore(from: Phase, to: Phase): Phase {
  if (canTransition(from, to)) return from;
  const seen = new Set<Phase>([from]);
  const queue: Phase[] = [from];
  for (let p = queue.shift(); p !== undefined; p = queue.shift()) {
    for (const next of Phase.options) {
      if (seen.has(next) || !canTransition(p, next)) continue;
      if (next === to) return p;
      seen.add(next);
      queue.push(next);
    }
  }
  return from;
}
