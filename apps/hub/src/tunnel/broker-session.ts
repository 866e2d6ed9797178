import { randomUUID } from 'node:crypto';
import type { Logger } from '@graft/log';
import {
  BrokerMessage,
  type CommandMessage,
  type CommandName,
  type DesiredAgent,
  type HelloMessage,
  type HubMessage,
  MISSED_HEARTBEATS_LIMIT,
  parseTunnelFrame,
  type ResultMessage,
  TUNNEL_PROTOCOL_VERSION,
  TunnelCloseCode,
  BinaryFrameKind,
  decodeLogChunk,
  decodeTerminalFrame,
  encodeTerminalFrame,
  splitTerminalData,
  TERMINAL_FRAME_KIND,
} from '@graft/protocol';
import type { RawData, WebSocket } from 'ws';
import type { LogIngest } from '../logs/log-ingest.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { BrokerPresence } from './broker-presence.js';

/** How long a new connection may take to say hello. */
const HELLO_TIMEOUT_MS = 10_000;

/** What a session needs from the hub. */
export interface SessionDeps {
  dispatcher: Dispatcher;
  presence: BrokerPresence;
  /** Takes the agents' log chunks the broker ships in binary frames. */
  logs: LogIngest;
  heartbeatIntervalMs: number;
  requestTimeoutMs: number;
  log: Logger;
  /** Called once the hello was accepted: the session now owns the broker's tunnel on this hub. */
  onReady(session: BrokerSession): void;
  /** Called once when the socket is gone. */
  onClosed(session: BrokerSession): void;
}

/** The hub's end of one attach stream: what the broker says about it. */
export interface AttachSink {
  /** The broker opened the terminal (`attach_opened`). */
  opened(): void;
  /** Terminal output. */
  data(data: Buffer): void;
  /** The stream ended (`attach_closed`, or the tunnel closed); called once, nothing follows. */
  closed(reason: string): void;
}

interface PendingRequest {
  resolve: (r: ResultMessage | null) => void;
  timer: NodeJS.Timeout;
}

/**
 * One broker's tunnel on this hub: the handshake, heartbeats, the broker's reports, and hub → broker
 * requests correlated by id with a timeout. Messages are validated on receipt and handled by an
 * exhaustive switch; reports are handed to the dispatcher in arrival order (its writer keeps each
 * agent's changes in that order), and nothing here waits for one report before reading the next.
 */
export class BrokerSession {
  /** This connection's id: presence writes name it, so a stale session can never clobber a newer one. */
  readonly sessionId = randomUUID();
  private ready = false;
  /** The welcome went out; until then commands wait in `heldForWelcome`. */
  private welcomed = false;
  private readonly heldForWelcome: HubMessage[] = [];
  private helloSeen = false;
  private closed = false;
  private lastHeard = Date.now();
  private nextRequest = 0;
  private readonly pending = new Map<string, PendingRequest>();
  /** Attach streams relayed through this tunnel, by stream id. */
  private readonly attachStreams = new Map<string, AttachSink>();
  private readonly helloTimer: NodeJS.Timeout;
  private heartbeatWatch: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(
    readonly brokerId: string,
    private readonly ws: WebSocket,
    private readonly deps: SessionDeps,
  ) {
    this.log = deps.log.child({ brokerId, sessionId: this.sessionId });
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
    ws.on('error', (err) => this.log.warn('tunnel.socket_error', { err }));
    this.helloTimer = setTimeout(() => this.close(TunnelCloseCode.protocolError, 'no hello received'), HELLO_TIMEOUT_MS);
    this.helloTimer.unref();
  }

  /** Whether the hello was accepted and the socket is still open. */
  get isReady(): boolean {
    return this.ready && !this.closed;
  }

  /** Sends a command; resolves with the broker's result, or null if the tunnel closes or the timeout passes first. */
  request(command: CommandName, agent: DesiredAgent, message?: string): Promise<ResultMessage | null> {
    if (!this.isReady) return Promise.resolve(null);
    const id = `h${++this.nextRequest}`;
    const msg: CommandMessage = { v: TUNNEL_PROTOCOL_VERSION, type: 'command', id, command, agent, ...(message !== undefined ? { message } : {}) };
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.log.warn('tunnel.request_timeout', { requestId: id, command, agentId: agent.agentId });
        resolve(null);
      }, this.deps.requestTimeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, timer });
      this.sendAfterWelcome(msg);
    });
  }

  /**
   * Commands go out only after the welcome: the broker removes whatever its welcome's desired set
   * lacks, and that set is read from Postgres before the welcome is sent, so a create sent ahead
   * of it (for an agent placed meanwhile) would be undone. Held ones follow the welcome in order.
   */
  private sendAfterWelcome(msg: HubMessage): void {
    if (this.welcomed) this.send(msg);
    else this.heldForWelcome.push(msg);
  }

  /** Opens an attach stream (`attach_open`); the sink hears `opened`, output and the end. Closed at once if the tunnel is not ready. */
  openAttach(streamId: string, agentId: string, size: { cols: number; rows: number }, sink: AttachSink): void {
    if (!this.isReady) {
      sink.closed('the broker is not connected');
      return;
    }
    this.attachStreams.set(streamId, sink);
    this.sendAfterWelcome({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_open', streamId, agentId, cols: size.cols, rows: size.rows });
  }

  /** Viewer input for an attach stream, as terminal frames. */
  attachInput(streamId: string, data: Buffer): void {
    if (!this.attachStreams.has(streamId) || this.ws.readyState !== this.ws.OPEN) return;
    for (const part of splitTerminalData(data)) this.ws.send(encodeTerminalFrame(streamId, part), { binary: true });
  }

  attachResize(streamId: string, cols: number, rows: number): void {
    if (this.attachStreams.has(streamId)) this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_resize', streamId, cols, rows });
  }

  /** The viewer went: the broker ends the terminal. The sink hears nothing more. */
  closeAttach(streamId: string): void {
    if (!this.attachStreams.delete(streamId)) return;
    this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_close', streamId });
  }

  /** Bytes queued on the tunnel and not yet sent (attach input is bounded by it). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Closes the tunnel with one of the protocol's close codes. */
  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.CLOSED || this.ws.readyState === this.ws.CLOSING) return;
    this.ws.close(code, reason);
    // A peer that does not complete the closing handshake is cut off.
    const cut = setTimeout(() => this.ws.terminate(), 2_000);
    cut.unref();
  }

  private send(msg: HubMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /**
   * A binary frame (PROTOCOL.md), by its first byte: a log chunk is stored, published, acknowledged
   * (reading pauses while the hub's backlog is high); terminal output goes to its attach stream.
   */
  private onBinary(data: RawData): void {
    if (!this.ready) {
      this.close(TunnelCloseCode.protocolError, 'binary frame before the handshake');
      return;
    }
    const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (frame.length > 0 && frame.readUInt8(0) === TERMINAL_FRAME_KIND) {
      const terminal = decodeTerminalFrame(frame);
      if (!terminal.ok) {
        this.log.warn('tunnel.bad_frame', { reason: terminal.reason });
        this.close(TunnelCloseCode.protocolError, terminal.reason.slice(0, 120));
        return;
      }
      // Output of a stream the viewer already left is dropped.
      this.attachStreams.get(terminal.streamId)?.data(terminal.data);
      return;
    }
    if (frame.length > 0 && frame.readUInt8(0) !== BinaryFrameKind.logChunk) {
      this.log.warn('tunnel.bad_frame', { reason: `unknown binary frame kind ${frame.readUInt8(0)}` });
      this.close(TunnelCloseCode.protocolError, `unknown binary frame kind ${frame.readUInt8(0)}`);
      return;
    }
    const decoded = decodeLogChunk(frame);
    if (!decoded.ok) {
      this.log.warn('tunnel.bad_frame', { reason: decoded.reason });
      this.close(TunnelCloseCode.protocolError, decoded.reason.slice(0, 120));
      return;
    }
    const room = this.deps.logs.receive(this.brokerId, decoded.chunk, (agentId, seq) => this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'log_ack', agentId, seq }));
    if (!room) {
      this.ws.pause();
      void this.deps.logs.drained().then(() => this.ws.resume());
    }
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    this.lastHeard = Date.now();
    if (isBinary) {
      this.onBinary(data);
      return;
    }
    const parsed = parseTunnelFrame(BrokerMessage, data.toString('utf8'));
    if (!parsed.ok) {
      this.log.warn('tunnel.bad_message', { reason: parsed.reason });
      this.close(TunnelCloseCode.protocolError, parsed.reason.slice(0, 120));
      return;
    }
    const msg = parsed.message;
    if (!this.ready && msg.type !== 'hello') {
      this.close(TunnelCloseCode.protocolError, `expected hello, got ${msg.type}`);
      return;
    }
    switch (msg.type) {
      case 'hello':
        if (this.helloSeen) {
          this.close(TunnelCloseCode.protocolError, 'hello sent twice');
          return;
        }
        this.helloSeen = true;
        void this.onHello(msg);
        return;
      case 'heartbeat':
        this.deps.presence.heartbeat(this.brokerId, this.sessionId, msg.load);
        this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'heartbeat_ack' });
        return;
      case 'status':
        void this.deps.dispatcher.statusReported(this.brokerId, msg.agent).then((written) => {
          if (!written) this.unrecorded('status');
        });
        return;
      case 'removed':
        void this.deps.dispatcher.removed(this.brokerId, msg.agentId, msg.generation).catch((err: unknown) => {
          this.log.error('agent.remove_failed', { agentId: msg.agentId, err });
          this.unrecorded('removed');
        });
        return;
      case 'log_closed':
        void this.deps.logs.closed(this.brokerId, msg.agentId, msg.lastSeq).catch((err: unknown) => {
          this.log.error('logs.close_failed', { agentId: msg.agentId, err });
          this.unrecorded('log_closed');
        });
        return;
      case 'attach_opened':
        this.attachStreams.get(msg.streamId)?.opened();
        return;
      case 'attach_closed': {
        const sink = this.attachStreams.get(msg.streamId);
        this.attachStreams.delete(msg.streamId);
        sink?.closed(msg.reason ?? 'the terminal ended');
        return;
      }
      case 'result': {
        const p = this.pending.get(msg.id);
        if (!p) return; // Timed out already: reconciliation covers whatever it was about.
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        p.resolve(msg);
        return;
      }
      default: {
        const unreachable: never = msg;
        throw new Error(`unhandled broker message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /**
   * A report could not be recorded (Postgres away). Reports are only sent on change, so a dropped one
   * would leave the hub wrong until the next: close the tunnel instead, and the broker's reconnect
   * (with backoff) resends its whole inventory, level-triggered, once the database is back.
   */
  private unrecorded(what: string): void {
    this.log.warn('tunnel.report_unrecorded', { what });
    this.close(1011, 'hub could not record a report: reconnect and resend');
  }

  private async onHello(hello: HelloMessage): Promise<void> {
    const version = Math.max(...hello.versions.filter((v) => v === TUNNEL_PROTOCOL_VERSION));
    if (!Number.isFinite(version)) {
      this.close(TunnelCloseCode.unsupportedVersion, `hub speaks tunnel version ${TUNNEL_PROTOCOL_VERSION} only`);
      return;
    }
    try {
      await this.deps.presence.connected({
        brokerId: this.brokerId,
        sessionId: this.sessionId,
        hostname: hello.hostname,
        brokerVersion: hello.brokerVersion,
        runtimes: hello.runtimes,
        load: hello.load,
      });
      if (this.closed) return;
      clearTimeout(this.helloTimer);
      this.ready = true;
      this.deps.onReady(this);
      const desired = await this.deps.dispatcher.brokerConnected(this.brokerId, hello.inventory);
      this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'welcome', version, sessionId: this.sessionId, heartbeatIntervalMs: this.deps.heartbeatIntervalMs, desired });
      this.welcomed = true;
      for (const msg of this.heldForWelcome.splice(0)) this.send(msg);
      void this.deps.dispatcher.brokerWelcomed(this.brokerId).catch((err: unknown) => this.log.error('message.redeliver_failed', { err }));
      this.log.info('tunnel.connected', { hostname: hello.hostname, brokerVersion: hello.brokerVersion, inventory: hello.inventory.length, desired: desired.length });
      this.heartbeatWatch = setInterval(() => {
        if (Date.now() - this.lastHeard > this.deps.heartbeatIntervalMs * MISSED_HEARTBEATS_LIMIT) {
          this.log.warn('tunnel.heartbeat_timeout', {});
          this.close(TunnelCloseCode.heartbeatTimeout, 'missed heartbeats');
        }
      }, this.deps.heartbeatIntervalMs);
      this.heartbeatWatch.unref();
    } catch (err) {
      this.log.error('tunnel.hello_failed', { err });
      this.close(1011, 'hub could not accept the connection');
    }
  }

  private onClose(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.helloTimer);
    clearInterval(this.heartbeatWatch);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve(null);
      this.pending.delete(id);
    }
    for (const [id, sink] of this.attachStreams) {
      this.attachStreams.delete(id);
      sink.closed('the broker tunnel closed');
    }
    this.log.info('tunnel.closed', { code, reason });
    this.deps.onClosed(this);
    if (this.ready) void this.deps.presence.disconnected(this.brokerId, this.sessionId).catch((err: unknown) => this.log.error('tunnel.disconnect_write_failed', { err }));
  }
}
