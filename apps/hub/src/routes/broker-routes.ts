import { randomBytes } from 'node:crypto';
import {
  ACTIVE_PHASES,
  Broker,
  type BrokerRuntime,
  type BrokerStatus,
  GraftError,
  IdParams,
  JoinBrokerRequest,
  JoinBrokerResponse,
  PageQuery,
  pageOf,
  ProjectBrokerParams,
  RegisterBrokerRequest,
  RegisterBrokerResponse,
  RotatedBrokerSecret,
} from '@graft/protocol';
import { sql } from 'kysely';
import { brokerSecretAad } from '../auth/broker-authenticator.js';
import { hashToken } from '../auth/token-hash.js';
import { requireAdmin } from '../domain/access.js';
import { decodeCursor, isUuidKey, toPage } from '../domain/cursor.js';
import { isForeignKeyViolation, isUniqueViolation } from '../domain/pg-errors.js';
import { uuidv7 } from '../domain/uuid.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';
import { brokerAliveSql } from '../tunnel/broker-presence.js';


/** Brokers: two-phase registration (register by an operator, join from the node) and reads. */
export function brokerRoutes(ctx: HubContext): RouteSpec[] {
  const { db } = ctx;

  const brokerQuery = () =>
    db
      .selectFrom('brokers as b')
      .selectAll('b')
      .select((eb) => [
        brokerAliveSql('b', ctx.settings.heartbeatIntervalMs).as('alive'),
        sql<string[]>`array(select bp.project_id::text from broker_projects bp where bp.broker_id = ${eb.ref('b.id')} order by bp.project_id)`.as('project_ids'),
        eb
          .selectFrom('agents as a')
          .select(sql<string>`count(*)`.as('n'))
          .whereRef('a.broker_id', '=', 'b.id')
          .where('a.phase', 'in', [...ACTIVE_PHASES])
          .as('running_agents'),
      ]);
  type BrokerRow = Awaited<ReturnType<ReturnType<typeof brokerQuery>['executeTakeFirstOrThrow']>>;

  const toBroker = (r: BrokerRow): Broker => {
    const status: BrokerStatus = r.draining ? 'draining' : r.alive ? 'online' : 'offline';
    return {
      id: r.id,
      name: r.name,
      labels: r.labels,
      projectIds: r.project_ids,
      autoProvide: r.auto_provide,
      status,
      joined: r.joined_at !== null,
      joinExpiresAt: r.joined_at === null ? r.join_expires_at.toISOString() : null,
      hostname: r.hostname,
      version: r.version,
      runtimes: r.runtimes as BrokerRuntime[],
      capacity: { maxAgents: r.max_agents },
      load: { runningAgents: Number(r.running_agents ?? 0) },
      draining: r.draining,
      lastHeartbeatAt: r.last_heartbeat_at?.toISOString() ?? null,
      createdAt: r.created_at.toISOString(),
    };
  };

  /** One broker as the API shows it, or not_found. */
  const loadBroker = async (id: string): Promise<Broker> => {
    const row = await brokerQuery().where('b.id', '=', id).executeTakeFirst();
    if (!row) throw new GraftError('not_found', 'broker not found');
    return toBroker(row);
  };

  return [
    route({
      method: 'post',
      path: '/api/v1/brokers/register',
      summary: 'Phase 1: register a broker (platform admin); answers its id and a single-use join token, shown only here',
      tag: 'brokers',
      auth: 'user',
      body: RegisterBrokerRequest,
      responses: { 201: RegisterBrokerResponse },
      handler: async ({ body, principal }) => {
        const admin = requireAdmin(principal);
        const id = uuidv7();
        const joinToken = `gjt_${randomBytes(32).toString('base64url')}`;
        const expiresAt = new Date(Date.now() + ctx.settings.brokerJoinTtlSecs * 1000);
        try {
          await db.transaction().execute(async (trx) => {
            await trx
              .insertInto('brokers')
              .values({
                id,
                name: body.name,
                labels: JSON.stringify(body.labels ?? {}),
                auto_provide: body.autoProvide ?? false,
                join_token_hash: hashToken(joinToken),
                join_expires_at: expiresAt,
                created_by: admin.userId,
              })
              .execute();
            const projectIds = [...new Set(body.projectIds ?? [])];
            if (projectIds.length > 0) await trx.insertInto('broker_projects').values(projectIds.map((p) => ({ broker_id: id, project_id: p }))).execute();
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw new GraftError('conflict', `a broker named ${body.name} already exists`, { field: 'name' });
          if (isForeignKeyViolation(err)) throw new GraftError('not_found', 'one of projectIds does not exist', { field: 'projectIds' });
          throw err;
        }
        ctx.log.info('broker.registered', { brokerId: id, by: admin.userId, expiresAt: expiresAt.toISOString() });
        return { status: 201, body: { brokerId: id, joinToken, expiresAt: expiresAt.toISOString() } };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/brokers/join',
      summary: 'Phase 2: a broker node joins with its join token (consumed atomically) and receives its secret, shown only here',
      tag: 'brokers',
      auth: 'none',
      body: JoinBrokerRequest,
      responses: { 200: JoinBrokerResponse },
      handler: async ({ body, req }) => {
        const secret = randomBytes(32);
        const secretKey = secret.toString('base64url');
        // One conditional UPDATE consumes the token: of two concurrent joins exactly one matches.
        const joined = await db
          .updateTable('brokers')
          .set({
            joined_at: new Date(),
            secret_enc: ctx.box.seal(secretKey, brokerSecretAad(body.brokerId)),
            hostname: body.hostname,
            version: body.version,
            runtimes: body.runtimes,
            max_agents: body.capacity.maxAgents,
            updated_at: new Date(),
          })
          .where('id', '=', body.brokerId)
          .where('join_token_hash', '=', hashToken(body.joinToken))
          .where('joined_at', 'is', null)
          .where('join_expires_at', '>', new Date())
          .returning('id')
          .executeTakeFirst();
        if (!joined) {
          // Say precisely why, so an operator knows whether to re-register or check the command line.
          const b = await db.selectFrom('brokers').select(['join_token_hash', 'join_expires_at', 'joined_at']).where('id', '=', body.brokerId).executeTakeFirst();
          if (!b) throw new GraftError('not_found', 'no broker with this id: check the brokerId in the join command');
          // An expired token of a broker that never joined may have been swept (its hash cleared): still "expired".
          if (b.join_token_hash === null && b.joined_at === null && b.join_expires_at <= new Date()) {
            throw new GraftError('join_token_expired', `the join token expired at ${b.join_expires_at.toISOString()}; register the broker again`);
          }
          // The token is checked first, so a wrong token learns nothing about the broker's state.
          if (b.join_token_hash === null || !b.join_token_hash.equals(hashToken(body.joinToken))) throw new GraftError('join_token_invalid', 'the join token does not belong to this broker');
          if (b.joined_at !== null) throw new GraftError('join_token_consumed', 'this broker has already joined; its join token cannot be used again (register a new broker)');
          throw new GraftError('join_token_expired', `the join token expired at ${b.join_expires_at.toISOString()}; register the broker again`);
        }
        const hubUrl = ctx.settings.publicUrl ?? `${req.protocol}://${req.get('host') ?? 'localhost'}`;
        ctx.log.info('broker.joined', { brokerId: body.brokerId, hostname: body.hostname, version: body.version, runtimes: body.runtimes });
        return { status: 200, body: { brokerId: body.brokerId, secretKey, hubUrl } };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/brokers',
      summary: 'List brokers with status, version, runtimes, labels, capacity, load and last heartbeat (platform admin)',
      tag: 'brokers',
      auth: 'user',
      query: PageQuery,
      responses: { 200: pageOf(Broker) },
      handler: async ({ query, principal }) => {
        requireAdmin(principal);
        const after = decodeCursor(query.cursor, isUuidKey);
        let q = brokerQuery();
        if (after) q = q.where('b.id', '>', after);
        const rows = await q.orderBy('b.id').limit(query.limit + 1).execute();
        return { status: 200, body: toPage(rows, query.limit, (r) => r.id, toBroker) };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/brokers/self',
      summary: 'The calling broker as the hub sees it (HMAC-signed request): how a node checks its credentials',
      tag: 'brokers',
      auth: 'broker',
      responses: { 200: Broker },
      handler: async ({ principal }) => {
        if (principal.kind !== 'broker') throw new GraftError('forbidden', 'brokers only');
        return { status: 200, body: await loadBroker(principal.brokerId) };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/brokers/:id',
      summary: 'One broker (platform admin)',
      tag: 'brokers',
      auth: 'user',
      params: IdParams,
      responses: { 200: Broker },
      handler: async ({ params, principal }) => {
        requireAdmin(principal);
        return { status: 200, body: await loadBroker(params.id) };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/brokers/:id/rotate-secret',
      summary: 'Give a joined broker a new secret; the previous one keeps working for GRAFT_BROKER_SECRET_GRACE_SECS (platform admin)',
      tag: 'brokers',
      auth: 'user',
      params: IdParams,
      responses: { 200: RotatedBrokerSecret },
      handler: async ({ params, principal }) => {
        const admin = requireAdmin(principal);
        const secretKey = randomBytes(32).toString('base64url');
        const previousValidUntil = new Date(Date.now() + ctx.settings.brokerSecretGraceSecs * 1000);
        // One statement, so two concurrent rotations cannot both keep the same "previous".
        const rotated = await db
          .updateTable('brokers')
          .set((eb) => ({
            previous_secret_enc: eb.ref('secret_enc'),
            previous_secret_expires_at: previousValidUntil,
            secret_enc: ctx.box.seal(secretKey, brokerSecretAad(params.id)),
            updated_at: new Date(),
          }))
          .where('id', '=', params.id)
          .where('secret_enc', 'is not', null)
          .returning('id')
          .executeTakeFirst();
        if (!rotated) {
          const exists = await db.selectFrom('brokers').select('id').where('id', '=', params.id).executeTakeFirst();
          if (!exists) throw new GraftError('not_found', 'broker not found');
          throw new GraftError('conflict', 'this broker has not joined yet: it has no secret to rotate');
        }
        ctx.log.info('broker.secret_rotated', { brokerId: params.id, by: admin.userId, previousValidUntil: previousValidUntil.toISOString() });
        return { status: 200, body: { brokerId: params.id, secretKey, previousValidUntil: previousValidUntil.toISOString() } };
      },
    }),
    ...(['drain', 'undrain'] as const).map((action) =>
      route({
        method: 'post',
        path: `/api/v1/brokers/:id/${action}`,
        summary: action === 'drain' ? 'Stop placing new agents on a broker; running ones continue (platform admin)' : 'Place agents on a broker again (platform admin)',
        tag: 'brokers',
        auth: 'user',
        params: IdParams,
        responses: { 200: Broker },
        handler: async ({ params, principal }) => {
          const admin = requireAdmin(principal);
          const r = await db.updateTable('brokers').set({ draining: action === 'drain', updated_at: new Date() }).where('id', '=', params.id).executeTakeFirst();
          if (r.numUpdatedRows === 0n) throw new GraftError('not_found', 'broker not found');
          ctx.log.info(`broker.${action}ed`, { brokerId: params.id, by: admin.userId });
          if (action === 'undrain') ctx.dispatcher.schedulePlacement();
          return { status: 200, body: await loadBroker(params.id) };
        },
      }),
    ),
    route({
      method: 'delete',
      path: '/api/v1/brokers/:id',
      summary: "Remove a broker: its secret stops working and its tunnel closes at once; its agents wanted running are placed elsewhere (platform admin)",
      tag: 'brokers',
      auth: 'user',
      params: IdParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        const admin = requireAdmin(principal);
        const exists = await db.selectFrom('brokers').select('id').where('id', '=', params.id).executeTakeFirst();
        if (!exists) throw new GraftError('not_found', 'broker not found');
        // Its tunnel closes and its agents lose their broker before the row (and so its secret) goes.
        await ctx.dispatcher.brokerDeleted(params.id);
        const r = await db.deleteFrom('brokers').where('id', '=', params.id).executeTakeFirst();
        if (r.numDeletedRows === 0n) throw new GraftError('not_found', 'broker not found');
        ctx.log.info('broker.deleted', { brokerId: params.id, by: admin.userId });
        return { status: 204 };
      },
    }),
    route({
      method: 'put',
      path: '/api/v1/projects/:id/brokers/:brokerId',
      summary: "Allow a broker to run the project's agents (platform admin)",
      tag: 'brokers',
      auth: 'user',
      params: ProjectBrokerParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        requireAdmin(principal);
        try {
          await db.insertInto('broker_projects').values({ broker_id: params.brokerId, project_id: params.id }).onConflict((oc) => oc.doNothing()).execute();
          ctx.dispatcher.schedulePlacement();
        } catch (err) {
          if (isForeignKeyViolation(err)) throw new GraftError('not_found', 'project or broker not found');
          throw err;
        }
        return { status: 204 };
      },
    }),
    route({
      method: 'delete',
      path: '/api/v1/projects/:id/brokers/:brokerId',
      summary: "Stop a broker from running the project's agents (platform admin)",
      tag: 'brokers',
      auth: 'user',
      params: ProjectBrokerParams,
      responses: { 204: null },
      handler: async ({ params, principal }) => {
        requireAdmin(principal);
        const r = await db.deleteFrom('broker_projects').where('broker_id', '=', params.brokerId).where('project_id', '=', params.id).executeTakeFirst();
        if (r.numDeletedRows === 0n) throw new GraftError('not_found', 'that broker is not linked to this project');
        return { status: 204 };
      },
    }),
  ];
}
