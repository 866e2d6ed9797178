import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@graft/log';
import { type CommandName, type DesiredAgent, errorStatus, GraftError, type ResultMessage, TUNNEL_PATH, TunnelCloseCode } from '@graft/protocol';
import { WebSocketServer } from 'ws';
import type { BrokerAuthenticator } from '../auth/broker-authenticator.js';
import type { Dispatcher, TunnelRouter } from '../dispatch/dispatcher.js';
import type { HubMetrics } from '../http/metrics.js';
import type { LogIngest } from '../logs/log-ingest.js';
import type { BrokerPresence } from './broker-presence.js';
import { BrokerSession } from './broker-session.js';

/** Largest tunnel frame accepted; a desired set of thousands of agents fits easily. */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** What the tunnel server needs from the hub. */
export interface TunnelServerDeps {
  authenticator: BrokerAuthenticator;
  dispatcher: Dispatcher;
  presence: BrokerPresence;
  logs: LogIngest;
  metrics: HubMetrics;
  heartbeatIntervalMs: number;
  requestTimeoutMs: number;
  log: Logger;
}

/**
 * Accepts broker tunnels at `GET /api/v1/brokers/connect`: the upgrade request must be signed like
 * any broker request (refused before the upgrade, with the same error body as HTTP), and each broker
 * has at most one live session here: a new connection replaces the old one, whose cleanup then
 * cannot touch the new one. Also routes commands to the sessions it holds.
 */
export class TunnelServer implements TunnelRouter {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly sessions = new Map<string, BrokerSession>();
  private readonly connecting = new Set<BrokerSession>();

  constructor(private readonly deps: TunnelServerDeps) {}

  /** Starts taking upgrades on the hub's HTTP server. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      void this.upgrade(req, socket, head);
    });
  }

  /** Number of brokers holding a ready tunnel here. */
  get size(): number {
    return this.sessions.size;
  }

  request(brokerId: string, command: CommandName, agent: DesiredAgent, message?: string): Promise<ResultMessage | null> {
    const session = this.sessions.get(brokerId);
    if (!session?.isReady) return Promise.resolve(null);
    this.deps.metrics.tunnelCommands.inc({ command });
    return session.request(command, agent, message);
  }

  localBrokerIds(): string[] {
    return [...this.sessions.keys()];
  }

  revoke(brokerId: string): void {
    this.sessions.get(brokerId)?.close(TunnelCloseCode.revoked, 'broker deleted');
  }

  /** Closes every tunnel (hub shutdown): brokers reconnect, to this hub or another replica. */
  close(): void {
    for (const s of [...this.sessions.values(), ...this.connecting]) s.close(TunnelCloseCode.goingAway, 'hub shutting down');
    this.wss.close();
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    try {
      if (path !== TUNNEL_PATH) throw new GraftError('not_found', `no WebSocket endpoint at ${path}`);
      const principal = await this.deps.authenticator.authenticate({ method: req.method ?? 'GET', target: req.url ?? '', headers: req.headers, rawBody: undefined });
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const session = new BrokerSession(principal.brokerId, ws, {
          dispatcher: this.deps.dispatcher,
          presence: this.deps.presence,
          logs: this.deps.logs,
          heartbeatIntervalMs: this.deps.heartbeatIntervalMs,
          requestTimeoutMs: this.deps.requestTimeoutMs,
          log: this.deps.log,
          onReady: (s) => this.ready(s),
          onClosed: (s) => this.closed(s),
        });
        this.connecting.add(session);
      });
    } catch (err) {
      const e = err instanceof GraftError ? err : new GraftError('internal_error', 'could not accept the tunnel');
      if (!(err instanceof GraftError)) this.deps.log.error('tunnel.upgrade_failed', { err });
      else this.deps.log.warn('tunnel.refused', { code: e.code, remote: req.socket.remoteAddress });
      const body = JSON.stringify({ error: { code: e.code, message: e.message, requestId: randomUUID() } });
      const status = errorStatus[e.code];
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  }

  private ready(session: BrokerSession): void {
    this.connecting.delete(session);
    const old = this.sessions.get(session.brokerId);
    this.sessions.set(session.brokerId, session);
    this.deps.metrics.tunnels.set(this.sessions.size);
    if (old && old !== session) old.close(TunnelCloseCode.superseded, 'replaced by a newer connection');
  }

  private closed(session: BrokerSession): void {
    this.connecting.delete(session);
    // Only the broker's current session may remove the entry: a stale one closing late leaves the new one alone.
    if (this.sessions.get(session.brokerId) === session) this.sessions.delete(session.brokerId);
    this.deps.metrics.tunnels.set(this.sessions.size);
  }
}
