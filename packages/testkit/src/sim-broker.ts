import {
  BrokerMessage,
  type BrokerRuntime,
  type CommandErrorCode,
  type CommandMessage,
  HubMessage,
  type ObservedAgent,
  parseTunnelFrame,
  signRequest,
  TUNNEL_PATH,
  TUNNEL_PROTOCOL_VERSION,
  type WelcomeMessage,
} from '@graft/protocol';
import { WebSocket } from 'ws';

/** Options for {@link SimBroker}. */
export interface SimBrokerOptions {
  hubUrl: string;
  brokerId: string;
  secretKey: string;
  maxAgents?: number;
  /** Heartbeat interval; default: what the hub says in `welcome`. */
  heartbeatIntervalMs?: number;
  /**
   * What to do with commands: `run` acks and reports `provisioning → starting → running` at once
   * (or `stopped`/`suspended`/`removed` for the other commands); `ack` only acks; `silent` ignores them.
   */
  mode?: 'run' | 'ack' | 'silent';
  /** Refuse every command with this code instead (as a full or misconfigured broker would). */
  refuseWith?: CommandErrorCode;
  /** Inventory sent in the hello. */
  inventory?: ObservedAgent[];
  /** Runtimes announced in the hello (default: process). */
  runtimes?: BrokerRuntime[];
  /** Headers that replace the signed ones (for tests of refused upgrades). */
  headers?: Record<string, string>;
  /** Called with each command as it arrives, before it is answered (benchmarks time arrivals with it). */
  onCommand?: (msg: CommandMessage) => void;
}

/** How a dial ended: welcomed, or refused before the upgrade with the hub's HTTP status and error code. */
export type SimDialOutcome = { ok: true; welcome: WelcomeMessage } | { ok: false; status: number; code: string };

/**
 * A light, in-process broker that speaks the tunnel protocol without running anything: for hub
 * tests and for holding a thousand tunnels in one process in `pnpm bench:dispatch`. It validates
 * every frame it receives with the protocol's own schemas, like the real broker.
 */
export class SimBroker {
  /** Every command received, in order. */
  readonly commands: CommandMessage[] = [];
  /** Every welcome received. */
  readonly welcomes: WelcomeMessage[] = [];
  /** Close codes of the connections that ended. */
  readonly closes: number[] = [];
  private ws: WebSocket | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly waiters: Array<{ test: () => boolean; resolve: () => void }> = [];
  private running = 0;

  constructor(private readonly options: SimBrokerOptions) {}

  /** Dials the hub; resolves once welcomed or refused. */
  connect(): Promise<SimDialOutcome> {
    const url = new URL(TUNNEL_PATH, this.options.hubUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const headers = this.options.headers ?? signRequest({ method: 'GET', path: url.pathname, brokerId: this.options.brokerId, secret: this.options.secretKey });
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.ws = ws;
    return new Promise<SimDialOutcome>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString('utf8');
        });
        res.on('end', () => {
          let code = '';
          try {
            code = (JSON.parse(body) as { error: { code: string } }).error.code;
          } catch {}
          resolve({ ok: false, status: res.statusCode ?? 0, code });
          ws.terminate();
        });
      });
      ws.on('error', (err) => reject(err));
      ws.on('open', () =>
        this.send({
          v: TUNNEL_PROTOCOL_VERSION,
          type: 'hello',
          versions: [TUNNEL_PROTOCOL_VERSION],
          brokerVersion: 'sim',
          hostname: 'sim',
          runtimes: this.options.runtimes ?? ['process'],
          load: this.load(),
          inventory: this.options.inventory ?? [],
        }),
      );
      ws.on('close', (code) => {
        this.closes.push(code);
        clearInterval(this.heartbeat);
        this.notify();
      });
      ws.on('message', (data) => {
        const parsed = parseTunnelFrame(HubMessage, data.toString());
        if (!parsed.ok) throw new Error(`sim broker got an invalid frame: ${parsed.reason}`);
        const msg = parsed.message;
        switch (msg.type) {
          case 'welcome': {
            this.welcomes.push(msg);
            const every = this.options.heartbeatIntervalMs ?? msg.heartbeatIntervalMs;
            this.heartbeat = setInterval(() => this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'heartbeat', load: this.load() }), every);
            resolve({ ok: true, welcome: msg });
            break;
          }
          case 'heartbeat_ack':
            break;
          case 'command':
            this.commands.push(msg);
            this.options.onCommand?.(msg);
            this.onCommand(msg);
            break;
        }
        this.notify();
      });
    });
  }

  /** Whether the socket is open. */
  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends a raw frame (tests of malformed input use a string). */
  sendRaw(frame: string): void {
    this.ws?.send(frame);
  }

  /** Sends a broker message, validated against the protocol first. */
  send(msg: BrokerMessage): void {
    BrokerMessage.parse(msg);
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** Reports one agent's phase. */
  status(agentId: string, generation: number, phase: ObservedAgent['phase'], detail: string | null = null, exitCode: number | null = null): void {
    this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'status', agent: { agentId, generation, phase, detail, exitCode } });
  }

  /** Resolves once `test` holds after some frame (or close); rejects after `timeoutMs`. */
  waitFor(test: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('sim broker: condition not met in time')), timeoutMs);
      this.waiters.push({
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Stops heartbeats without closing the socket (a hung broker). */
  silence(): void {
    clearInterval(this.heartbeat);
  }

  /** Closes the connection normally. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000);
      setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1_000).unref();
    });
  }

  /** Drops the TCP connection without a closing handshake (a killed broker). */
  kill(): void {
    clearInterval(this.heartbeat);
    this.ws?.terminate();
  }

  private load() {
    return { maxAgents: this.options.maxAgents ?? 1000, runningAgents: this.running };
  }

  private onCommand(msg: CommandMessage): void {
    const mode = this.options.mode ?? 'run';
    if (mode === 'silent') return;
    const { agentId, generation } = msg.agent;
    if (this.options.refuseWith) {
      this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'result', id: msg.id, ok: false, error: { code: this.options.refuseWith, message: 'refused by the sim broker' } });
      return;
    }
    this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'result', id: msg.id, ok: true });
    if (mode !== 'run') return;
    switch (msg.command) {
      case 'create':
      case 'start':
        this.running++;
        this.status(agentId, generation, 'provisioning');
        this.status(agentId, generation, 'starting');
        this.status(agentId, generation, 'running');
        return;
      case 'stop':
        this.running--;
        this.status(agentId, generation, 'stopping');
        this.status(agentId, generation, 'stopped');
        return;
      case 'suspend':
        this.running--;
        this.status(agentId, generation, 'suspended');
        return;
      case 'delete':
        this.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'removed', agentId, generation });
        return;
      case 'message':
        return;
    }
  }

  private notify(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      if (w?.test()) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}
