import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@graft/log';
import { type CommandName, type DesiredAgent, errorStatus, GraftError, type ResultMessage, TUNNEL_PATH, TunnelCloseCode, ViewerCloseCode } from '@graft/protocol';
import { WebSocketServer } from 'ws';
import type { BrokerAuthenticator } from '../auth/broker-authenticator.js';
import type { Dispatcher, TunnelRouter } from '../dispatch/dispatcher.js';
import type { HubMetrics } from '../http/metrics.js';
import type { LogIngest } from '../logs/log-ingest.js';
import type { BrokerPresence } from './broker-presence.js';
import { BrokerSession } from './broker-session.js';
import type { WsRoute } from './ws-route.js';

/** Largest tunnel frame accepted; a desired set of thousands of agents fits easily. */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** Largest frame a viewer (attach input, log reader) may send. */
const MAX_VIEWER_FRAME_BYTES = 1024 * 1024;

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
  /** Told when a broker's tunnel becomes ready here and when it closes (the replica router claims and releases it). */
  onTunnel?: { opened(brokerId: string): void; closed(brokerId: string): void };
}

/**
 * Takes every WebSocket upgrade of the hub and dispatches it by path: broker tunnels at
 * `GET /api/v1/brokers/connect` (signed like any broker request), and the viewer endpoints added with
 * `route` (attach, logs; bearer tokens). Every refusal happens before the upgrade, with the same error
 * body as HTTP. Each broker has at most one live session here: a new connection replaces the old one,
 * whose cleanup then cannot touch the new one. Also routes commands to the sessions it holds.
 */
export class TunnelServer implements TunnelRouter {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly viewers = new WebSocketServer({ noServer: true, maxPayload: MAX_VIEWER_FRAME_BYTES });
  private readonly routes: WsRoute[] = [];
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

  /** Adds a viewer WebSocket endpoint; tried in the order added, after the broker tunnel. */
  route(route: WsRoute): void {
    this.routes.push(route);
  }

  /** The ready session of a broker whose tunnel is on this hub replica. */
  session(brokerId: string): BrokerSession | undefined {
    const session = this.sessions.get(brokerId);
    return session?.isReady ? session : undefined;
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
    for (const ws of this.viewers.clients) ws.close(ViewerCloseCode.goingAway, 'hub shutting down');
    this.wss.close();
    this.viewers.close();
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const target = req.url ?? '';
    const path = target.split('?')[0] ?? '';
    const route = path === TUNNEL_PATH ? null : this.routes.find((r) => r.match(path) !== null);
    try {
      if (path === TUNNEL_PATH) await this.acceptBroker(req, socket, head);
      else if (route) await this.acceptViewer(route, path, req, socket, head);
      else throw new GraftError('not_found', `no WebSocket endpoint at ${path}`);
    } catch (err) {
      const e = err instanceof GraftError ? err : new GraftError('internal_error', 'could not accept the WebSocket');
      const [failed, refused] = route ? [`${route.name}.socket_failed`, `${route.name}.socket_refused`] : ['tunnel.upgrade_failed', 'tunnel.refused'];
      if (!(err instanceof GraftError)) this.deps.log.error(failed, { err });
      else this.deps.log.warn(refused, { code: e.code, remote: req.socket.remoteAddress });
      const body = JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}), requestId: randomUUID() } });
      const status = errorStatus[e.code];
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  }

  /** A viewer endpoint: the route authorises and prepares before the upgrade, then takes the socket. */
  private async acceptViewer(route: WsRoute, path: string, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const params = route.match(path) ?? [];
    const accepted = await route.accept(req, params, new URL(req.url ?? '', 'http://hub.invalid'));
    if (socket.destroyed) {
      accepted.abandon();
      return;
    }
    // A handshake ws refuses (a bad key) never reaches the callback: what the route opened is released.
    let connected = false;
    socket.once('close', () => {
      if (!connected) accepted.abandon();
    });
    this.viewers.handleUpgrade(req, socket, head, (ws) => {
      connected = true;
      accepted.connected(ws);
    });
  }

  private async acceptBroker(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
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
  }

  private ready(session: BrokerSession): void {
    this.connecting.delete(session);
    const old = this.sessions.get(session.brokerId);
    this.sessions.set(session.brokerId, session);
    this.deps.metrics.tunnels.set(this.sessions.size);
    if (old && old !== session) old.close(TunnelCloseCode.superseded, 'replaced by a newer connection');
    this.deps.onTunnel?.opened(session.brokerId);
  }

  private closed(session: BrokerSession): void {
    this.connecting.delete(session);
    // Only the broker's current session may remove the entry: a stale one closing late leaves the new one alone.
    if (this.sessions.get(session.brokerId) === session) {
      this.sessions.delete(session.brokerId);
      this.deps.onTunnel?.closed(session.brokerId);
    }
    this.deps.metrics.tunnels.set(this.sessions.size);
  }
}
