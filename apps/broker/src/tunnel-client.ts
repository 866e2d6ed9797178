import type { IncomingMessage } from 'node:http';
import type { Logger } from '@graft/log';
import {
  backoffDelayMs,
  type BrokerMessage,
  type BrokerRuntime,
  type CommandMessage,
  decodeTerminalFrame,
  HubMessage,
  MISSED_HEARTBEATS_LIMIT,
  parseTunnelFrame,
  signRequest,
  TUNNEL_PATH,
  TUNNEL_PROTOCOL_VERSION,
  TunnelCloseCode,
} from '@graft/protocol';
import { WebSocket } from 'ws';
import type { AgentSupervisor } from './agent-supervisor.js';
import { type AttachLink, AttachStreams } from './attach-streams.js';
import type { BrokerMetrics } from './broker-metrics.js';
import type { LogShipper } from './logs/log-shipper.js';

/** A connection that stayed up this long resets the backoff to its first step. */
const STABLE_AFTER_MS = 10_000;

/** What the tunnel client needs. */
export interface TunnelClientDeps {
  hubUrl: string;
  brokerId: string;
  secretKey: string;
  hostname: string;
  brokerVersion: string;
  runtimes: BrokerRuntime[];
  supervisor: AgentSupervisor;
  /** Ships agents' logs over the tunnel while it is up. */
  logs?: LogShipper;
  metrics: BrokerMetrics;
  log: Logger;
  /** Backoff bounds (1 s → 60 s by default). */
  backoff?: { baseMs: number; maxMs: number };
  /** Called when the hub says this broker is revoked: reconnecting is pointless. */
  onRevoked(reason: string): void;
}

/**
 * The broker's end of the tunnel: dials the hub with a signed upgrade, says hello with its inventory,
 * applies the desired set from the welcome, answers commands (each in its own task, so a slow one
 * never blocks the channel), forwards phase changes, and heartbeats. Any failure closes the socket
 * and dials again after a full-jitter exponential backoff.
 */
export class TunnelClient {
  private ws: WebSocket | undefined;
  private welcomed = false;
  private stopped = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastHeard = 0;
  private connectedAt = 0;
  /** Reports made before the welcome: sent right after it, so the hub sees every change since the hello. */
  private readonly backlog: BrokerMessage[] = [];
  /** Interactive terminals opened over this tunnel (attach). */
  private readonly attach: AttachStreams;

  constructor(private readonly deps: TunnelClientDeps) {
    this.attach = new AttachStreams({ supervisor: deps.supervisor, log: deps.log });
    deps.supervisor.onStatus((agent) => this.report({ v: TUNNEL_PROTOCOL_VERSION, type: 'status', agent }));
    deps.supervisor.onRemoved((agentId, generation) => this.report({ v: TUNNEL_PROTOCOL_VERSION, type: 'removed', agentId, generation }));
  }

  /** Whether the tunnel is up (welcome received). */
  get isUp(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Dials the hub, and keeps dialling until stopped. */
  start(): void {
    this.connect();
  }

  /** Closes the tunnel and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeatTimer);
    this.attach.closeAll();
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'broker stopping');
      setTimeout(() => {
        ws.terminate();
        resolve();
      }, 2_000).unref();
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const url = new URL(TUNNEL_PATH, this.deps.hubUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const headers = signRequest({ method: 'GET', path: url.pathname, brokerId: this.deps.brokerId, secret: this.deps.secretKey });
    const ws = new WebSocket(url, { headers, handshakeTimeout: 10_000, maxPayload: 64 * 1024 * 1024 });
    this.ws = ws;
    this.welcomed = false;
    ws.on('unexpected-response', (_req, res: IncomingMessage) => this.refused(ws, res));
    ws.on('open', () => {
      this.connectedAt = Date.now();
      this.lastHeard = Date.now();
      this.backlog.length = 0;
      this.sendNow({
        v: TUNNEL_PROTOCOL_VERSION,
        type: 'hello',
        versions: [TUNNEL_PROTOCOL_VERSION],
        brokerVersion: this.deps.brokerVersion,
        hostname: this.deps.hostname,
        runtimes: this.deps.runtimes,
        load: this.deps.supervisor.load(),
        inventory: this.deps.supervisor.inventory(),
      });
    });
    ws.on('message', (data, isBinary) => {
      this.lastHeard = Date.now();
      if (isBinary) {
        this.onBinary(ws, Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data));
        return;
      }
      const parsed = parseTunnelFrame(HubMessage, data.toString('utf8'));
      if (!parsed.ok) {
        this.deps.log.warn('tunnel.bad_message', { reason: parsed.reason });
        ws.close(TunnelCloseCode.protocolError, parsed.reason.slice(0, 120));
        return;
      }
      this.onMessage(ws, parsed.message);
    });
    ws.on('close', (code, reason) => this.closed(ws, code, reason.toString('utf8')));
    ws.on('error', (err) => this.deps.log.debug('tunnel.socket_error', { err }));
  }

  private onMessage(ws: WebSocket, msg: HubMessage): void {
    switch (msg.type) {
      case 'welcome':
        this.welcomed = true;
        this.deps.metrics.tunnelUp.set(1);
        this.deps.metrics.tunnelConnects.inc({ outcome: 'ok' });
        this.deps.log.info('tunnel.connected', { hubUrl: this.deps.hubUrl, sessionId: msg.sessionId, desired: msg.desired.length });
        for (const m of this.backlog.splice(0)) this.sendNow(m);
        this.startHeartbeats(ws, msg.heartbeatIntervalMs);
        this.deps.logs?.connected({
          send: (frame) => {
            if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
          },
          buffered: () => ws.bufferedAmount,
          sendClosed: (agentId, lastSeq) => {
            if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: TUNNEL_PROTOCOL_VERSION, type: 'log_closed', agentId, lastSeq }));
          },
        });
        void this.deps.supervisor.reconcile(msg.desired).catch((err: unknown) => this.deps.log.error('tunnel.reconcile_failed', { err }));
        return;
      case 'heartbeat_ack':
        return;
      case 'log_ack':
        this.deps.logs?.acked(msg.agentId, msg.seq);
        return;
      case 'command':
        void this.onCommand(ws, msg);
        return;
      case 'attach_open':
        void this.attach.open(this.link(ws), msg).catch((err: unknown) => this.deps.log.error('tunnel.attach_failed', { agentId: msg.agentId, streamId: msg.streamId, err }));
        return;
      case 'attach_resize':
        this.attach.resize(msg.streamId, msg.cols, msg.rows);
        return;
      case 'attach_close':
        this.attach.close(this.link(ws), msg.streamId);
        return;
      default: {
        const unreachable: never = msg;
        throw new Error(`unhandled hub message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** A binary frame from the hub: terminal input of an attach stream (the only kind the hub sends). */
  private onBinary(ws: WebSocket, frame: Buffer): void {
    const decoded = decodeTerminalFrame(frame);
    if (!decoded.ok) {
      this.deps.log.warn('tunnel.bad_frame', { reason: decoded.reason });
      ws.close(TunnelCloseCode.protocolError, decoded.reason.slice(0, 120));
      return;
    }
    this.attach.input(decoded.streamId, decoded.data);
  }

  /** Attach streams answer on the connection their `attach_open` came on. */
  private link(ws: WebSocket): AttachLink {
    return {
      send: (msg) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
      },
      sendBinary: (frame) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
      },
      buffered: () => ws.bufferedAmount,
    };
  }

  private async onCommand(ws: WebSocket, msg: CommandMessage): Promise<void> {
    const outcome = await this.deps.supervisor.command(msg.command, msg.agent, msg.message);
    // The answer goes on the socket the request came from; on a newer one the id would mean nothing.
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(
      JSON.stringify(
        outcome.ok
          ? { v: TUNNEL_PROTOCOL_VERSION, type: 'result', id: msg.id, ok: true, ...(outcome.agent ? { agent: outcome.agent } : {}) }
          : { v: TUNNEL_PROTOCOL_VERSION, type: 'result', id: msg.id, ok: false, error: { code: outcome.code, message: outcome.message } },
      ),
    );
  }

  private startHeartbeats(ws: WebSocket, intervalMs: number): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > intervalMs * MISSED_HEARTBEATS_LIMIT) {
        this.deps.log.warn('tunnel.heartbeat_timeout', {});
        ws.terminate();
        return;
      }
      this.sendNow({ v: TUNNEL_PROTOCOL_VERSION, type: 'heartbeat', load: this.deps.supervisor.load() });
    }, intervalMs);
    this.heartbeatTimer.unref();
  }

  /** Sends a report now if the tunnel is up, keeps it for after the welcome if a handshake is under way, else drops it (the next hello's inventory carries the state). */
  private report(msg: BrokerMessage): void {
    if (this.welcomed) this.sendNow(msg);
    else if (this.ws?.readyState === WebSocket.OPEN) this.backlog.push(msg);
  }

  private sendNow(msg: BrokerMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** The hub refused the upgrade: log its error code (the body is the API's error body). */
  private refused(ws: WebSocket, res: IncomingMessage): void {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (body.length < 4096) body += chunk;
    });
    res.on('end', () => {
      let code = `http_${res.statusCode}`;
      try {
        code = (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? code;
      } catch {}
      this.deps.metrics.tunnelConnects.inc({ outcome: code });
      this.deps.log.error('tunnel.refused', { status: res.statusCode, code, hint: code === 'signature_invalid' ? 'the broker secret is wrong or revoked: join again' : undefined });
      ws.terminate();
    });
  }

  private closed(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    const wasUp = this.welcomed;
    this.welcomed = false;
    this.attach.closeAll();
    this.deps.logs?.disconnected();
    this.deps.metrics.tunnelUp.set(0);
    clearInterval(this.heartbeatTimer);
    if (this.stopped) return;
    if (code === TunnelCloseCode.revoked) {
      this.stopped = true;
      this.deps.log.error('tunnel.revoked', { reason });
      this.deps.onRevoked(reason);
      return;
    }
    if (wasUp && Date.now() - this.connectedAt >= STABLE_AFTER_MS) this.attempt = 0;
    const { baseMs, maxMs } = this.deps.backoff ?? { baseMs: 1_000, maxMs: 60_000 };
    const delay = backoffDelayMs(this.attempt++, baseMs, maxMs);
    this.deps.log.info('tunnel.disconnected', { code, reason, wasUp, retryInMs: delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
