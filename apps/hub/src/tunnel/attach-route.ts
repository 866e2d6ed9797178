import { randomUUID } from 'node:crypto';
import { AttachControl, AttachQuery, GraftError, type ProjectRole, ViewerCloseCode } from '@graft/protocol';
import type { RawData, WebSocket } from 'ws';
import type { Authenticator } from '../auth/authenticator.js';
import { hasRole } from '../domain/access.js';
import type { HubContext } from '../hub-context.js';
import type { AttachChannel } from '../cluster/replica-router.js';
import type { AttachSink } from './broker-session.js';
import { type AcceptedSocket, agentPathMatcher, viewerPrincipal, viewerUser, type WsRoute } from './ws-route.js';

/** Output a viewer may leave unread before it is dropped (close 1013) rather than buffered further. */
const VIEWER_BUFFER_LIMIT = 1024 * 1024;
/** Input is refused (the viewer dropped) while the broker's tunnel holds this much unsent. */
const TUNNEL_BUFFER_LIMIT = 8 * 1024 * 1024;
/** Output that may arrive between `attach_opened` and the viewer's upgrade completing. */
const EARLY_OUTPUT_LIMIT = 256 * 1024;

/** What the attach endpoint needs. */
export interface AttachRouteDeps {
  ctx: HubContext;
  authenticator: Authenticator;
  /** Where the broker's attach streams go (its tunnel here, or forwarded to the replica holding it); undefined when no replica holds it. */
  channel(brokerId: string): Promise<AttachChannel | undefined>;
  /** How long the broker may take to open the terminal. */
  openTimeoutMs: number;
}

/**
 * `GET /api/v1/agents/:id/attach` (WebSocket): an interactive terminal into a running agent, relayed
 * viewer ⇄ hub ⇄ tunnel stream ⇄ broker ⇄ runtime. Requires role member in the agent's project (like
 * lifecycle actions; API keys need `write`). The terminal is opened on the broker before the upgrade
 * is accepted, so every refusal (auth, unknown agent, not running, broker elsewhere, runtime failure)
 * is an HTTP error with the API's body. Each viewer gets its own shell; closing it never touches the
 * agent. A viewer that does not read its output is dropped (close 1013), never buffered without bound.
 */
export function attachRoute(deps: AttachRouteDeps): WsRoute {
  const { ctx } = deps;
  const match = agentPathMatcher('attach');
  return {
    name: 'attach',
    match,
    accept: async (req, params, url): Promise<AcceptedSocket> => {
      const agentId = params[0] ?? '';
      const user = viewerUser(await viewerPrincipal(deps.authenticator, req, url, 'write'));
      const query = AttachQuery.safeParse(Object.fromEntries(url.searchParams));
      if (!query.success) throw new GraftError('validation_error', 'cols and rows must be whole numbers from 1 to 1000');
      const row = await ctx.db
        .selectFrom('agents as a')
        .select(['a.id', 'a.phase', 'a.broker_id'])
        .select((eb) => eb.selectFrom('project_members as m').select('m.role').whereRef('m.project_id', '=', 'a.project_id').where('m.user_id', '=', user.userId).as('role'))
        .where('a.id', '=', agentId)
        .executeTakeFirst()
        .catch(() => undefined);
      if (!row) throw new GraftError('not_found', 'agent not found');
      if (!user.isAdmin) {
        const role = (row.role ?? null) as ProjectRole | null;
        if (role === null) throw new GraftError('not_found', 'agent not found');
        if (!hasRole(role, 'member')) throw new GraftError('forbidden', `requires role member in the agent's project (you are ${role})`, { required: 'member', role });
      }
      if (row.phase !== 'running') throw new GraftError('conflict', `the agent is ${row.phase}: only a running agent can be attached to`, { phase: row.phase });
      const session = row.broker_id ? await deps.channel(row.broker_id) : undefined;
      if (!session) throw new GraftError('unavailable', "the agent's broker is not connected to the hub");
      return openStream(deps, session, agentId, query.data);
    },
  };
}

/** Opens the broker's terminal; resolves once it runs (or throws why not), then relays for the viewer. */
async function openStream(deps: AttachRouteDeps, session: AttachChannel, agentId: string, size: { cols: number; rows: number }): Promise<AcceptedSocket> {
  const streamId = randomUUID();
  const log = deps.ctx.log.child({ component: 'attach', agentId, streamId });
  let viewer: WebSocket | null = null;
  let ended: string | null = null;
  const early: Buffer[] = [];
  let earlyBytes = 0;
  let settle: (outcome: { ok: true } | { ok: false; reason: string }) => void = () => {};
  const opened = new Promise<{ ok: true } | { ok: false; reason: string }>((resolve) => {
    settle = resolve;
  });
  const drop = (code: number, reason: string) => {
    session.closeAttach(streamId);
    if (viewer && viewer.readyState === viewer.OPEN) viewer.close(code, reason);
  };
  const sink: AttachSink = {
    opened: () => settle({ ok: true }),
    data: (data) => {
      if (viewer === null) {
        early.push(data);
        earlyBytes += data.length;
        if (earlyBytes > EARLY_OUTPUT_LIMIT) drop(ViewerCloseCode.tryAgainLater, 'viewer too slow');
        return;
      }
      if (viewer.readyState !== viewer.OPEN) return;
      if (viewer.bufferedAmount > VIEWER_BUFFER_LIMIT) {
        log.warn('attach.viewer_too_slow', { buffered: viewer.bufferedAmount });
        drop(ViewerCloseCode.tryAgainLater, 'viewer too slow: output dropped');
        return;
      }
      viewer.send(data, { binary: true });
    },
    closed: (reason) => {
      ended = reason;
      settle({ ok: false, reason });
      if (viewer && viewer.readyState === viewer.OPEN) {
        const code = reason === 'the broker tunnel closed' ? ViewerCloseCode.goingAway : ViewerCloseCode.normal;
        viewer.close(code, Buffer.from(reason).subarray(0, 120).toString('utf8'));
      }
    },
  };
  session.openAttach(streamId, agentId, size, sink);
  const timer = setTimeout(() => settle({ ok: false, reason: 'timeout' }), deps.openTimeoutMs);
  const outcome = await opened;
  clearTimeout(timer);
  if (!outcome.ok) {
    session.closeAttach(streamId);
    if (outcome.reason === 'timeout') throw new GraftError('unavailable', 'the broker did not open a terminal in time');
    if (outcome.reason === 'the broker tunnel closed' || outcome.reason === 'the broker is not connected') throw new GraftError('unavailable', outcome.reason);
    throw new GraftError('conflict', `the broker could not open a terminal: ${outcome.reason}`);
  }
  log.info('attach.opened', {});
  return {
    abandon: () => session.closeAttach(streamId),
    connected: (ws) => {
      viewer = ws;
      for (const data of early.splice(0)) ws.send(data, { binary: true });
      if (ended !== null) {
        ws.close(ViewerCloseCode.normal, Buffer.from(ended).subarray(0, 120).toString('utf8'));
        return;
      }
      ws.on('message', (data: RawData, isBinary: boolean) => {
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
        if (isBinary) {
          if (session.bufferedAmount > TUNNEL_BUFFER_LIMIT) {
            drop(ViewerCloseCode.tryAgainLater, 'the broker tunnel is backed up');
            return;
          }
          session.attachInput(streamId, bytes);
          return;
        }
        let json: unknown;
        try {
          json = JSON.parse(bytes.toString('utf8'));
        } catch {
          return;
        }
        const control = AttachControl.safeParse(json);
        if (control.success) session.attachResize(streamId, control.data.cols, control.data.rows);
      });
      ws.on('close', () => {
        session.closeAttach(streamId);
        log.info('attach.closed', { reason: ended ?? 'viewer' });
      });
      ws.on('error', () => session.closeAttach(streamId));
    },
  };
}
