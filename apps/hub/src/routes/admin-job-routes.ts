import { GraftError, JobIdParams, JobList, JobListQuery, RetriedJob } from '@graft/protocol';
import { requireAdmin } from '../domain/access.js';
import type { HubContext } from '../hub-context.js';
import { route, type RouteSpec } from '../http/route.js';

/** Background jobs for platform admins: the runs in a state (failed ones by default), and retrying a failed one. */
export function adminJobRoutes(ctx: HubContext): RouteSpec[] {
  return [
    route({
      method: 'get',
      path: '/api/v1/admin/jobs',
      summary: 'Background job runs in one state, newest first: failed ones by default (platform admin)',
      tag: 'admin',
      auth: 'user',
      query: JobListQuery,
      responses: { 200: JobList },
      handler: async ({ query, principal }) => {
        requireAdmin(principal);
        return { status: 200, body: { items: await ctx.jobs.list(query.state, query.limit) } };
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/admin/jobs/:id/retry',
      summary: 'Run a failed background job run again, with all its attempts (platform admin)',
      tag: 'admin',
      auth: 'user',
      params: JobIdParams,
      responses: { 202: RetriedJob },
      handler: async ({ params, principal }) => {
        const admin = requireAdmin(principal);
        const result = await ctx.jobs.retry(params.id);
        if (result === 'not_found') throw new GraftError('not_found', 'no job run with this id (finished runs are kept only for a while)');
        if (result === 'not_failed') throw new GraftError('conflict', 'only a failed job run can be retried');
        ctx.log.info('job.retried', { jobId: params.id, userId: admin.userId });
        return { status: 202, body: { id: params.id, state: 'waiting' } };
      },
    }),
  ];
}
