import type { Logger } from '@graft/log';
import {
  type CommandName,
  type DesiredAgent,
  decodeTerminalFrame,
  encodeTerminalFrame,
  MeshMessage,
  type ResultMessage,
  splitTerminalData,
  TERMINAL_FRAME_KIND,
} from '@graft/protocol';
import type { Counter, Histogram } from 'prom-client';
import type { TunnelRouter } from '../dispatch/dispatcher.js';
import type { AttachSink } from '../tunnel/broker-session.js';
import type { TunnelMesh } from './tunnel-mesh.js';

/** One broker tunnel's attach side, wherever it is: the local session, or a forward to the replica holding it. */
export interface AttachChannel {
  /** Opens a terminal; the sink hears `opened`, output and the end (exactly once). */
  openAttach(streamId: string, agentId: string, size: { cols: number; rows: number }, sink: AttachSink): void;
  attachInput(streamId: string, data: Buffer): void;
  attachResize(streamId: string, cols: number, rows: number): void;
  /** The viewer went; the sink hears nothing more. */
  closeAttach(streamId: string): void;
  /** Bytes queued towards the broker and not yet sent (0 when unknown). */
  readonly bufferedAmount: number;
}

/** The tunnels this replica holds (the tunnel server). */
export interface LocalTunnels extends TunnelRouter {
  /** The ready session of a broker whose tunnel is here. */
  session(brokerId: string): (AttachChannel & { isReady: boolean }) | undefined;
}

/** What the router needs; wired in server.ts. */
export interface ReplicaRouterDeps {
  local: LocalTunnels;
  mesh: TunnelMesh;
  /** How long a forwarded command may take, end to end. */
  requestTimeoutMs: number;
  /** Claims are refreshed this often and live three times as long. */
  heartbeatIntervalMs: number;
  metrics: { routedCommands: Counter<'outcome'>; routedDuration: Histogram; dispatchDuration: Histogram<'command'> };
  log: Logger;
}

/** How often each end of a forwarded attach stream tells the other it is still there. */
const STREAM_PING_MS = 5_000;
/** A forwarded stream not heard of for this long is closed (its other replica died). */
const STREAM_SILENCE_MS = 3 * STREAM_PING_MS;
/** The viewer's reason when the replica holding the tunnel went away. */
const TUNNEL_GONE = 'the broker tunnel closed';

interface PendingCommand {
  peer: string;
  resolve: (r: ResultMessage | null | 'peer_gone') => void;
  timer: NodeJS.Timeout;
}

/** How often the replicas this one waits on are checked for life (a dead one fails its waits at once, not at their deadline). */
const PEER_CHECK_MS = 1_000;

/** A stream this replica forwards for its viewer to the replica holding the tunnel. */
interface ForwardedStream {
  peer: string;
  sink: AttachSink;
  lastHeard: number;
}

/** A stream this replica serves on its tunnel for a viewer on another replica. */
interface ServedStream {
  peer: string;
  channel: AttachChannel;
  lastHeard: number;
}

/**
 * Tunnel routing across hub replicas (DESIGN §2): a command or attach stream for a broker whose
 * tunnel this replica holds goes straight to the session; otherwise it is forwarded over the mesh to
 * the replica that claims the tunnel, and the answer comes back, with a deadline. "Unreachable"
 * (no owner, owner gone, Redis away, deadline passed) is `null`, which the dispatcher treats like a
 * broker out of reach: reconciliation on the broker's next connect repairs it. Claims are made when a
 * tunnel becomes ready, refreshed every heartbeat interval, and released when it closes.
 */
export class ReplicaRouter implements TunnelRouter {
  private readonly pending = new Map<string, PendingCommand>();
  private readonly forwarded = new Map<string, ForwardedStream>();
  private readonly served = new Map<string, ServedStream>();
  private readonly timers: NodeJS.Timeout[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly deps: ReplicaRouterDeps) {
    deps.mesh.receive((frame) => this.onFrame(frame));
    this.timers.push(
      setInterval(() => this.refreshClaims(), deps.heartbeatIntervalMs),
      setInterval(() => this.pingStreams(), STREAM_PING_MS),
      setInterval(() => void this.checkPeers(), PEER_CHECK_MS),
    );
    for (const t of this.timers) t.unref();
  }

  get replicaId(): string {
    return this.deps.mesh.replicaId;
  }

  /** A tunnel became ready here: claim it at once, so commands from other replicas come here. */
  tunnelOpened(brokerId: string): void {
    this.deps.mesh.claim([brokerId], this.claimTtlMs).catch((err: unknown) => this.deps.log.warn('mesh.claim_failed', { brokerId, reason: reason(err) }));
  }

  /** A tunnel closed here: let go of the claim (a newer one elsewhere stays). */
  tunnelClosed(brokerId: string): void {
    this.deps.mesh.release(brokerId).catch((err: unknown) => this.deps.log.warn('mesh.release_failed', { brokerId, reason: reason(err) }));
  }

  private get claimTtlMs(): number {
    return this.deps.heartbeatIntervalMs * 3;
  }

  private refreshClaims(): void {
    const ids = this.deps.local.localBrokerIds();
    // Also repairs claims lost while Redis was away.
    this.deps.mesh.claim(ids, this.claimTtlMs).catch((err: unknown) => this.deps.log.warn('mesh.claim_failed', { brokers: ids.length, reason: reason(err) }));
  }

  async request(brokerId: string, command: CommandName, agent: DesiredAgent, message?: string): Promise<ResultMessage | null> {
    const started = performance.now();
    const result = await this.route(brokerId, command, agent, message);
    if (result !== null) this.deps.metrics.dispatchDuration.observe({ command }, (performance.now() - started) / 1000);
    return result;
  }

  private async route(brokerId: string, command: CommandName, agent: DesiredAgent, message?: string): Promise<ResultMessage | null> {
    if (this.deps.local.session(brokerId)?.isReady) return this.deps.local.request(brokerId, command, agent, message);
    const started = performance.now();
    const owner = await this.deps.mesh.owner(brokerId).catch(() => null);
    if (owner === null || owner === this.replicaId || this.closed) {
      this.deps.metrics.routedCommands.inc({ outcome: 'unreachable' });
      return null;
    }
    const id = `${this.replicaId}:${++this.nextId}`;
    const result = await new Promise<ResultMessage | null | 'timeout' | 'peer_gone'>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve('timeout');
      }, this.deps.requestTimeoutMs);
      timer.unref();
      this.pending.set(id, { peer: owner, resolve, timer });
      this.sendTo(owner, { type: 'command', id, from: this.replicaId, brokerId, command, agent, ...(message !== undefined ? { message } : {}) });
    });
    if (result === 'timeout' || result === 'peer_gone') {
      this.deps.metrics.routedCommands.inc({ outcome: result === 'timeout' ? 'timeout' : 'unreachable' });
      this.deps.log.warn(result === 'timeout' ? 'mesh.command_timeout' : 'mesh.owner_gone', { brokerId, owner, command, agentId: agent.agentId });
      return null;
    }
    this.deps.metrics.routedCommands.inc({ outcome: result === null ? 'unreachable' : 'ok' });
    this.deps.metrics.routedDuration.observe((performance.now() - started) / 1000);
    return result;
  }

  revoke(brokerId: string): void {
    this.deps.local.revoke(brokerId);
    void this.deps.mesh
      .owner(brokerId)
      .then((owner) => {
        if (owner !== null && owner !== this.replicaId) this.sendTo(owner, { type: 'revoke', brokerId });
      })
      .catch(() => {});
  }

  localBrokerIds(): string[] {
    return this.deps.local.localBrokerIds();
  }

  /** Where attach streams for this broker go: the local session, a forward to the owning replica, or nowhere. */
  async attachChannel(brokerId: string): Promise<AttachChannel | undefined> {
    const session = this.deps.local.session(brokerId);
    if (session?.isReady) return session;
    const owner = await this.deps.mesh.owner(brokerId).catch(() => null);
    if (owner === null || owner === this.replicaId || this.closed) return undefined;
    return this.forwardChannel(owner, brokerId);
  }

  private forwardChannel(peer: string, brokerId: string): AttachChannel {
    return {
      openAttach: (streamId, agentId, size, sink) => {
        this.forwarded.set(streamId, { peer, sink, lastHeard: Date.now() });
        this.sendTo(peer, { type: 'attach_open', from: this.replicaId, streamId, brokerId, agentId, cols: size.cols, rows: size.rows });
      },
      attachInput: (streamId, data) => {
        if (!this.forwarded.has(streamId)) return;
        for (const part of splitTerminalData(data)) this.deps.mesh.send(peer, encodeTerminalFrame(streamId, part));
      },
      attachResize: (streamId, cols, rows) => {
        if (this.forwarded.has(streamId)) this.sendTo(peer, { type: 'attach_resize', streamId, cols, rows });
      },
      closeAttach: (streamId) => {
        if (!this.forwarded.delete(streamId)) return;
        this.sendTo(peer, { type: 'attach_close', streamId, reason: 'the viewer left' });
      },
      bufferedAmount: 0,
    };
  }

  private sendTo(peer: string, msg: MeshMessage): void {
    this.deps.mesh.send(peer, Buffer.from(JSON.stringify(msg)));
  }

  private onFrame(frame: Buffer): void {
    if (frame[0] === TERMINAL_FRAME_KIND) {
      const t = decodeTerminalFrame(frame);
      if (!t.ok) return;
      const fwd = this.forwarded.get(t.streamId);
      if (fwd) {
        fwd.lastHeard = Date.now();
        fwd.sink.data(t.data);
        return;
      }
      const srv = this.served.get(t.streamId);
      if (srv) {
        srv.lastHeard = Date.now();
        srv.channel.attachInput(t.streamId, t.data);
      }
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(frame.toString('utf8'));
    } catch {
      this.deps.log.warn('mesh.bad_frame', { bytes: frame.length });
      return;
    }
    const parsed = MeshMessage.safeParse(json);
    if (!parsed.success) {
      this.deps.log.warn('mesh.bad_message', { reason: parsed.error.issues[0]?.message });
      return;
    }
    this.handle(parsed.data);
  }

  private handle(msg: MeshMessage): void {
    switch (msg.type) {
      case 'command': {
        const serve = async () => {
          // Only the local session: a replica never forwards what was forwarded to it (no loops).
          const result = this.deps.local.session(msg.brokerId)?.isReady ? await this.deps.local.request(msg.brokerId, msg.command, msg.agent, msg.message) : null;
          this.sendTo(msg.from, { type: 'command_result', id: msg.id, result });
        };
        serve().catch((err: unknown) => this.deps.log.error('mesh.command_failed', { brokerId: msg.brokerId, err }));
        return;
      }
      case 'command_result': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        p.resolve(msg.result);
        return;
      }
      case 'revoke':
        this.deps.local.revoke(msg.brokerId);
        return;
      case 'attach_open':
        this.serveAttach(msg.from, msg.streamId, msg.brokerId, msg.agentId, { cols: msg.cols, rows: msg.rows });
        return;
      case 'attach_opened': {
        const fwd = this.forwarded.get(msg.streamId);
        if (!fwd) return;
        fwd.lastHeard = Date.now();
        fwd.sink.opened();
        return;
      }
      case 'attach_resize': {
        const srv = this.served.get(msg.streamId);
        if (srv) srv.channel.attachResize(msg.streamId, msg.cols, msg.rows);
        return;
      }
      case 'attach_close': {
        const fwd = this.forwarded.get(msg.streamId);
        if (fwd) {
          this.forwarded.delete(msg.streamId);
          fwd.sink.closed(msg.reason);
          return;
        }
        const srv = this.served.get(msg.streamId);
        if (srv) {
          this.served.delete(msg.streamId);
          srv.channel.closeAttach(msg.streamId);
        }
        return;
      }
      case 'attach_ping': {
        const now = Date.now();
        for (const id of msg.streamIds) {
          const s = this.forwarded.get(id) ?? this.served.get(id);
          if (s && s.peer === msg.from) s.lastHeard = now;
        }
        return;
      }
      default: {
        const never: never = msg;
        throw new Error(`unhandled mesh message ${(never as { type: string }).type}`);
      }
    }
  }

  private serveAttach(peer: string, streamId: string, brokerId: string, agentId: string, size: { cols: number; rows: number }): void {
    const session = this.deps.local.session(brokerId);
    if (!session?.isReady) {
      this.sendTo(peer, { type: 'attach_close', streamId, reason: 'the broker is not connected' });
      return;
    }
    this.served.set(streamId, { peer, channel: session, lastHeard: Date.now() });
    session.openAttach(streamId, agentId, size, {
      opened: () => this.sendTo(peer, { type: 'attach_opened', streamId }),
      data: (data) => this.deps.mesh.send(peer, encodeTerminalFrame(streamId, data)),
      closed: (why) => {
        this.served.delete(streamId);
        this.sendTo(peer, { type: 'attach_close', streamId, reason: why.slice(0, 256) });
      },
    });
  }

  /** Fails what waits on a replica that is gone (killed, say): its commands answer unreachable, its streams end. */
  private async checkPeers(): Promise<void> {
    const peers = new Set<string>();
    for (const p of this.pending.values()) peers.add(p.peer);
    for (const s of this.forwarded.values()) peers.add(s.peer);
    for (const s of this.served.values()) peers.add(s.peer);
    for (const peer of peers) {
      // Redis away: nothing can be told, the deadlines decide.
      const alive = await this.deps.mesh.alive(peer).catch(() => true);
      if (alive) continue;
      for (const [id, p] of this.pending) {
        if (p.peer !== peer) continue;
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.resolve('peer_gone');
      }
      for (const [id, s] of this.forwarded) {
        if (s.peer !== peer) continue;
        this.forwarded.delete(id);
        this.deps.log.warn('mesh.stream_lost', { streamId: id, peer });
        s.sink.closed(TUNNEL_GONE);
      }
      for (const [id, s] of this.served) {
        if (s.peer !== peer) continue;
        // The viewer's replica is gone, and the viewer with it: end the terminal on the broker.
        this.served.delete(id);
        this.deps.log.warn('mesh.stream_lost', { streamId: id, peer });
        s.channel.closeAttach(id);
      }
    }
  }

  private pingStreams(): void {
    const now = Date.now();
    const byPeer = new Map<string, string[]>();
    for (const [id, s] of this.forwarded) {
      if (now - s.lastHeard > STREAM_SILENCE_MS) {
        this.forwarded.delete(id);
        this.deps.log.warn('mesh.stream_lost', { streamId: id, peer: s.peer });
        s.sink.closed(TUNNEL_GONE);
        continue;
      }
      const ids = byPeer.get(s.peer);
      if (ids) ids.push(id);
      else byPeer.set(s.peer, [id]);
    }
    for (const [id, s] of this.served) {
      if (now - s.lastHeard > STREAM_SILENCE_MS) {
        this.served.delete(id);
        this.deps.log.warn('mesh.stream_lost', { streamId: id, peer: s.peer });
        s.channel.closeAttach(id);
        continue;
      }
      const ids = byPeer.get(s.peer);
      if (ids) ids.push(id);
      else byPeer.set(s.peer, [id]);
    }
    for (const [peer, streamIds] of byPeer) this.sendTo(peer, { type: 'attach_ping', from: this.replicaId, streamIds });
  }

  /** Stops routing: pending forwards answer null, forwarded streams end, claims are released. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.resolve(null);
    }
    for (const [id, s] of this.forwarded) {
      this.forwarded.delete(id);
      this.sendTo(s.peer, { type: 'attach_close', streamId: id, reason: 'the viewer left' });
      s.sink.closed(TUNNEL_GONE);
    }
    await Promise.allSettled(this.localBrokerIds().map((id) => this.deps.mesh.release(id)));
  }
}

/** Readable reason of a failure, for logs. */
function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
