import {
  Agent,
  AgentHeartbeatResponse,
  AgentStatusRequest,
  AgentStatusResponse,
  AgentToken,
  applyStatus,
  CreateAgentRequest,
  decideAction,
  GraftError,
  IdParams,
  type LifecycleAction,
  ListAgentsQuery,
  AgentMessage,
  PageQuery,
  pageOf,
  type ProjectRole,
  SendMessageRequest,
  type TemplateSpec,
} from '@graft/protocol';
import type { AgentMessagesTable } from '@graft/db';
import { type Selectable, sql } from 'kysely';
import type { Principal } from '../auth/principal.js';
import { asUser, hasRole, requireProjectRole } from '../domain/access.js';
import { decodeCursor, isUuidKey, rawJsonPage, toPage } from '../domain/cursor.js';
import { applyLifecycleAction } from '../domain/lifecycle-action.js';
import { agentJsonSql } from '../domain/mappers.js';
import { isUniqueViolation } from '../domain/pg-errors.js';
import { uuidv7 } from '../domain/uuid.js';
import type { HubContext } from '../hub-context.js';
import { RawJson, route, type RouteSpec } from '../http/route.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A stored message as the API shows it. */
function toAgentMessage(r: Selectable<AgentMessagesTable>): AgentMessage {
  return {
    id: r.id,
    agentId: r.agent_id,
    body: r.body,
    wake: r.wake,
    interrupt: r.interrupt,
    state: r.state as AgentMessage['state'],
    attempts: r.attempts,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    deliveredAt: r.delivered_at?.toISOString() ?? null,
  };
}

/** Agents: create, read, lifecycle actions, status reports, messages and agent tokens. */
export function agentRoutes(ctx: HubContext): RouteSpec[] {
  const { db } = ctx;

  /** Loads an agent the caller may act on with at least `min`; agents may only touch themselves. */
  const loadAgent = async (principal: Principal, id: string, min: ProjectRole) => {
    if (principal.kind === 'agent') {
      if (principal.agentId !== id) throw new GraftError('forbidden', 'agent tokens may only act on their own agent');
      if (min !== 'viewer') throw new GraftError('forbidden', 'agent tokens cannot change their own lifecycle');
    }
    const user = principal.kind === 'user' ? principal : undefined;
    const row = await db
      .selectFrom('agents as a')
      .select(['a.id', 'a.project_id', 'a.phase', 'a.desired_state', agentJsonSql('a').as('json')])
      .$if(user !== undefined, (q) =>
        q.select((eb) => eb.selectFrom('project_members as m').select('m.role').whereRef('m.project_id', '=', 'a.project_id').where('m.user_id', '=', user?.userId ?? '').as('role')),
      )
      .where('a.id', '=', id)
      .executeTakeFirst();
    if (!row) throw new GraftError('not_found', 'agent not found');
    if (user && !user.isAdmin) {
      const role = ((row as { role?: ProjectRole | null }).role ?? null) as ProjectRole | null;
      if (role === null) throw new GraftError('not_found', 'agent not found');
      if (!hasRole(role, min)) throw new GraftError('forbidden', `requires role ${min} in the agent's project (you are ${role})`, { required: min, role });
    }
    return row;
  };

  /** The agent as the API shows it, read after a write. */
  const agentJson = async (id: string): Promise<RawJson> => {
    const row = await db.selectFrom('agents as a').select(agentJsonSql('a').as('json')).where('a.id', '=', id).executeTakeFirst();
    // Gone meanwhile (its broker removed it after a concurrent delete).
    if (!row) throw new GraftError('not_found', 'agent not found');
    return new RawJson(row.json);
  };

  const lifecycle = (action: Exclude<LifecycleAction, 'delete'>, summary: string) =>
    route({
      method: 'post',
      path: `/api/v1/agents/:id/${action}`,
      summary,
      tag: 'agents',
      auth: 'user',
      params: IdParams,
      responses: { 200: Agent },
      handler: async ({ params, principal }) => {
        await loadAgent(principal, params.id, 'member');
        await applyLifecycleAction(ctx.agentWriter, params.id, action);
        ctx.log.info('agent.action', { agentId: params.id, action });
        const body = await agentJson(params.id);
        // Restart is a start of a new generation that does not resume.
        void ctx.dispatcher.push(params.id, action === 'restart' ? 'start' : action);
        return { status: 200, body };
      },
    });

  return [
    route({
      method: 'get',
      path: '/api/v1/agents',
      summary: 'List agents the caller may see, filtered by projectId, userId (creator), phase or brokerId',
      tag: 'agents',
      auth: 'user',
      query: PageQuery.extend(ListAgentsQuery.shape),
      responses: { 200: pageOf(Agent) },
      handler: async ({ query, principal }) => {
        const user = asUser(principal);
        if (query.projectId) await requireProjectRole(db, principal, query.projectId, 'viewer');
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db.selectFrom('agents as a').select(['a.id', agentJsonSql('a').as('json')]);
        if (query.projectId) q = q.where('a.project_id', '=', query.projectId);
        else if (!user.isAdmin) {
          // The ids as literal parameters, not a subquery: the planner then uses each project's
          // real row count, instead of guessing and walking the whole id index for a small project.
          const memberOf = await db.selectFrom('project_members').select('project_id').where('user_id', '=', user.userId).execute();
          if (memberOf.length === 0) return { status: 200, body: { items: [], nextCursor: null } };
          q = q.where(
            'a.project_id',
            'in',
            memberOf.map((m) => m.project_id),
          );
        }
        if (query.userId) q = q.where('a.created_by', '=', query.userId);
        if (query.phase) q = q.where('a.phase', '=', query.phase);
        if (query.brokerId) q = q.where('a.broker_id', '=', query.brokerId);
        if (after) q = q.where('a.id', '>', after);
        const rows = await q.orderBy('a.id').limit(query.limit + 1).execute();
        return { status: 200, body: rawJsonPage(rows, query.limit) };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/agents',
      summary: 'Create an agent from a template (project member) and dispatch it to a broker; with none fitting it waits in phase created with a pendingReason',
      tag: 'agents',
      auth: 'user',
      body: CreateAgentRequest,
      responses: { 201: Agent },
      handler: async ({ body, principal }) => {
        const user = asUser(principal);
        await requireProjectRole(db, principal, body.projectId, 'member');
        if (body.brokerId !== undefined) {
          const broker = await db.selectFrom('brokers').select('id').where('id', '=', body.brokerId).executeTakeFirst();
          if (!broker) throw new GraftError('not_found', `broker ${body.brokerId} not found`, { field: 'brokerId' });
        }
        const [ref = '', pinned] = body.template.split('@');
        const byId = UUID_RE.test(ref);
        // The template and the spec of the wanted version in one query (the version row is absent when pinned too high).
        const template = await db
          .selectFrom('templates as t')
          .leftJoin('template_versions as v', (j) => j.onRef('v.template_id', '=', 't.id').on('v.version', '=', pinned ? Number(pinned) : sql<number>`t.latest_version`))
          .select(['t.id', 't.latest_version', 't.project_id', 'v.spec'])
          .$if(byId, (q) => q.where('t.id', '=', ref.toLowerCase()))
          .$if(!byId, (q) => q.where('t.name', '=', ref))
          .where((eb) => eb.or([eb('t.project_id', '=', body.projectId), eb('t.project_id', 'is', null)]))
          // A project's own template shadows a global one of the same name.
          .orderBy(sql`t.project_id IS NULL`)
          .executeTakeFirst();
        if (!template) throw new GraftError('not_found', `template ${ref} not found in this project or among global templates`, { field: 'template' });
        const version = pinned ? Number(pinned) : template.latest_version;
        if (template.spec === null) throw new GraftError('not_found', `template ${ref} has no version ${version} (latest is ${template.latest_version})`, { field: 'template' });
        const spec = template.spec as unknown as TemplateSpec;
        // Placed before the insert, so a placed agent is written once, already on its broker.
        const placement = await ctx.dispatcher.choose(body.projectId, spec, body.brokerId ?? null);
        const id = uuidv7();
        try {
          const row = await db
            .insertInto('agents')
            .values({
              id,
              project_id: body.projectId,
              name: body.name,
              template_id: template.id,
              template_version: version,
              phase: 'created',
              desired_state: 'running',
              pending_reason: placement.ok ? null : placement.pendingReason,
              broker_id: placement.ok ? placement.brokerId : null,
              // Honoured by placement: the agent then waits for this broker only.
              requested_broker_id: body.brokerId ?? null,
              task: body.task ?? null,
              env: JSON.stringify(body.env ?? {}),
              labels: JSON.stringify(body.labels ?? {}),
              created_by: user.userId,
            })
            .returning(agentJsonSql('agents').as('json'))
            .executeTakeFirstOrThrow();
          if (placement.ok) {
            // Sent from what is in hand (no read back): the create is on its way before the response is.
            void ctx.dispatcher.createOn(placement.brokerId, placement.runtime, {
              id,
              projectId: body.projectId,
              name: body.name,
              spec,
              env: body.env ?? {},
              labels: body.labels ?? {},
              task: body.task ?? null,
            });
          }
          ctx.log.info('agent.created', {
            agentId: id,
            projectId: body.projectId,
            templateId: template.id,
            templateVersion: version,
            brokerId: placement.ok ? placement.brokerId : null,
            pendingReason: placement.ok ? null : placement.pendingReason,
          });
          return { status: 201, body: new RawJson(row.json) };
        } catch (err) {
          if (isUniqueViolation(err)) throw new GraftError('conflict', `an agent named ${body.name} already exists in this project`, { field: 'name' });
          throw err;
        }
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/agents/:id',
      summary: 'One agent (project viewer, or the agent itself)',
      tag: 'agents',
      auth: 'any',
      params: IdParams,
      responses: { 200: Agent },
      handler: async ({ params, principal }) => ({ status: 200, body: new RawJson((await loadAgent(principal, params.id, 'viewer')).json) }),
    }),
    lifecycle('suspend', 'Suspend: keep workspace and harness session for a later resume (project member)'),
    lifecycle('start', 'Start: resume a suspended agent, or start a stopped/error one fresh (project member)'),
    lifecycle('stop', 'Stop the agent, keeping its record (project member)'),
    lifecycle('restart', 'Restart: stop, then start fresh (project member)'),
    route({
      method: 'delete',
      path: '/api/v1/agents/:id',
      summary: 'Delete: 204 when removed now; 202 while its broker stops and removes it',
      tag: 'agents',
      auth: 'user',
      params: IdParams,
      responses: { 204: null, 202: Agent },
      handler: async ({ params, principal }) => {
        await loadAgent(principal, params.id, 'member');
        const removeNow = await ctx.agentWriter.update(params.id, (cur) => {
          if (cur.brokerId === null) return { noop: true };
          const out = decideAction(cur, 'delete');
          if (!out.ok) throw new GraftError('invalid_transition', out.message, { phase: cur.phase });
          return { set: { desired_state: 'deleted', generation: out.bumpGeneration ? cur.generation + 1 : cur.generation, resume: false }, result: () => false };
        });
        if (removeNow) {
          await db.deleteFrom('agents').where('id', '=', params.id).where('broker_id', 'is', null).execute();
          ctx.agentWriter.forget(params.id);
          ctx.log.info('agent.deleted', { agentId: params.id });
          return { status: 204 };
        }
        // Read before the command goes out: a quick broker may remove the row before a later read.
        const body = await agentJson(params.id);
        void ctx.dispatcher.push(params.id, 'delete');
        return { status: 202, body };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/agents/:id/status',
      summary: "Report the agent's own phase/activity/detail (agent token, self only)",
      tag: 'agents',
      auth: 'agent',
      params: IdParams,
      body: AgentStatusRequest,
      responses: { 200: AgentStatusResponse },
      handler: async ({ params, body, principal }) => {
        if (principal.kind !== 'agent' || principal.agentId !== params.id) throw new GraftError('forbidden', 'agent tokens may only report on their own agent');
        const now = new Date();
        const out = await ctx.agentWriter.update(params.id, (cur) => {
          const r = applyStatus(cur, { phase: body.phase, activity: body.activity, detail: body.detail }, body.source);
          if (!r.ok) {
            throw new GraftError(r.reason === 'platform_only' ? 'forbidden' : 'invalid_transition', r.message, { phase: cur.phase, activity: cur.activity });
          }
          return {
            set: {
              phase: r.phase,
              activity: r.activity,
              detail: r.detail,
              last_seen_at: now,
              // A new activity of its own replaces what the platform kept while it was offline or stalled.
              ...(r.activityChanged || r.phase !== 'running' ? { prior_activity: null } : {}),
              ...(r.activityChanged || r.phase !== cur.phase ? { activity_changed_at: now } : {}),
            },
            result: (w) => ({ phase: w.phase, activity: w.activity, detail: w.detail, generation: w.generation, desiredState: w.desiredState, ignored: r.ignored }),
          };
        });
        return { status: 200, body: out };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/agents/:id/heartbeat',
      summary: 'Record that the agent is alive (agent token, self only); answers its phase, activity and desired state',
      tag: 'agents',
      auth: 'agent',
      params: IdParams,
      responses: { 200: AgentHeartbeatResponse },
      handler: async ({ params, principal }) => {
        if (principal.kind !== 'agent' || principal.agentId !== params.id) throw new GraftError('forbidden', 'agent tokens may only send heartbeats for their own agent');
        const now = new Date();
        const out = await ctx.agentWriter.update(params.id, () => ({
          set: { last_seen_at: now },
          result: (w) => ({ phase: w.phase, activity: w.activity, desiredState: w.desiredState, generation: w.generation }),
        }));
        return { status: 200, body: out };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/agents/:id/messages',
      summary: 'Send a message to an agent (project member): stored first, delivered through its broker while it runs; wake resumes a suspended agent',
      tag: 'agents',
      auth: 'user',
      params: IdParams,
      body: SendMessageRequest,
      responses: { 201: AgentMessage },
      handler: async ({ params, body, principal }) => {
        await loadAgent(principal, params.id, 'member');
        const user = asUser(principal);
        const row = await db
          .insertInto('agent_messages')
          .values({ id: uuidv7(), agent_id: params.id, body: body.body, wake: body.wake ?? false, interrupt: body.interrupt ?? false, created_by: user.userId })
          .returningAll()
          .executeTakeFirstOrThrow();
        // Stored before anything else, so it waits for the agent whatever happens next.
        const resumed =
          body.wake === true &&
          (await ctx.agentWriter.update(params.id, (cur) => {
            if (cur.phase !== 'suspended' && cur.desiredState !== 'suspended') return { noop: false };
            const out = decideAction(cur, 'start');
            if (!out.ok) return { noop: false };
            return { set: { desired_state: out.desiredState, generation: cur.generation + 1, resume: out.resume }, result: () => true };
          }));
        if (resumed) {
          ctx.log.info('agent.action', { agentId: params.id, action: 'start', reason: 'message_wake' });
          void ctx.dispatcher.push(params.id, 'start');
        }
        ctx.log.info('message.stored', { agentId: params.id, messageId: row.id, wake: row.wake, resumed });
        void ctx.dispatcher.deliverMessages(params.id);
        return { status: 201, body: toAgentMessage(row) };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/agents/:id/messages',
      summary: 'Messages sent to an agent, oldest first, with their delivery state (project viewer, or the agent itself)',
      tag: 'agents',
      auth: 'any',
      params: IdParams,
      query: PageQuery,
      responses: { 200: pageOf(AgentMessage) },
      handler: async ({ params, query, principal }) => {
        await loadAgent(principal, params.id, 'viewer');
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = db.selectFrom('agent_messages').selectAll().where('agent_id', '=', params.id);
        if (after) q = q.where('id', '>', after);
        const rows = await q.orderBy('id').limit(query.limit + 1).execute();
        return { status: 200, body: toPage(rows, query.limit, (r) => r.id, toAgentMessage) };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/agents/:id/token',
      summary: "Mint the agent's short-lived JWT (project admin)",
      tag: 'agents',
      auth: 'user',
      params: IdParams,
      responses: { 201: AgentToken },
      handler: async ({ params, principal }) => {
        const agent = await loadAgent(principal, params.id, 'admin');
        if (agent.desired_state === 'deleted') throw new GraftError('invalid_transition', 'agent is being deleted', { phase: agent.phase });
        const signed = ctx.jwt.sign({ typ: 'agent', sub: agent.id, prj: agent.project_id }, ctx.settings.agentTokenTtlSecs);
        ctx.log.info('agent.token_minted', { agentId: agent.id, by: asUser(principal).userId });
        return { status: 201, body: { token: signed.token, expiresAt: signed.expiresAt.toISOString(), agentId: agent.id } };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/agents/:id/token/refresh',
      summary: 'Exchange a still-valid agent token for a fresh one (agent token, self only)',
      tag: 'agents',
      auth: 'agent',
      params: IdParams,
      responses: { 201: AgentToken },
      handler: async ({ params, principal }) => {
        const agent = await loadAgent(principal, params.id, 'viewer');
        if (agent.desired_state === 'deleted') throw new GraftError('forbidden', 'agent is being deleted; no new tokens');
        const signed = ctx.jwt.sign({ typ: 'agent', sub: agent.id, prj: agent.project_id }, ctx.settings.agentTokenTtlSecs);
        return { status: 201, body: { token: signed.token, expiresAt: signed.expiresAt.toISOString(), agentId: agent.id } };
      },
    }),
  ];
}
