import type { Logger } from '@graft/log';
import { type AttachOpenMessage, type BrokerMessage, encodeTerminalFrame, splitTerminalData, TUNNEL_PROTOCOL_VERSION } from '@graft/protocol';
import type { AgentSupervisor } from './agent-supervisor.js';
import type { Terminal } from './runtime/agent-runtime.js';

/** At most this many terminals are open through one tunnel; more are refused. */
const MAX_STREAMS = 256;
/** Output stops being read while the tunnel holds more than this unsent, and resumes below LOW_WATER. */
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
const DRAIN_POLL_MS = 20;

/** Where attach streams send: the current tunnel connection. */
export interface AttachLink {
  send(msg: BrokerMessage): void;
  sendBinary(frame: Buffer): void;
  /** Bytes queued on the connection and not yet sent. */
  buffered(): number;
}

interface Stream {
  agentId: string;
  terminal: Terminal | null;
  /** Set once the stream ended from either side: nothing more is sent for it. */
  done: boolean;
}

/**
 * The broker's end of attach streams (PROTOCOL.md "Attach"): each `attach_open` opens a terminal in
 * the agent's environment through the supervisor; its output goes back in terminal frames, input
 * frames go to it, and it ends with `attach_closed` once, whichever side ended it. All of a
 * connection's streams end when it drops (their viewers went with it). Output reading pauses while
 * the tunnel is backed up, so a fast shell never makes the broker buffer without bound.
 */
export class AttachStreams {
  private readonly streams = new Map<string, Stream>();

  constructor(private readonly deps: { supervisor: AgentSupervisor; log: Logger }) {}

  /** Handles `attach_open`; answers `attach_opened` or `attach_closed` on `link`. */
  async open(link: AttachLink, msg: AttachOpenMessage): Promise<void> {
    const { streamId, agentId } = msg;
    const refuse = (reason: string) => link.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_closed', streamId, reason });
    if (this.streams.has(streamId)) return refuse('stream id already in use');
    if (this.streams.size >= MAX_STREAMS) return refuse(`this broker has ${MAX_STREAMS} terminals open`);
    const stream: Stream = { agentId, terminal: null, done: false };
    this.streams.set(streamId, stream);
    const outcome = await this.deps.supervisor.openTerminal(agentId, { cols: msg.cols, rows: msg.rows });
    if (!outcome.ok) {
      if (!stream.done) {
        this.streams.delete(streamId);
        refuse(outcome.message);
      }
      return;
    }
    const terminal = outcome.terminal;
    // Closed (or the tunnel dropped) while the terminal was being opened.
    if (stream.done) {
      terminal.close();
      return;
    }
    stream.terminal = terminal;
    let paused = false;
    terminal.onData((data) => {
      if (stream.done) return;
      for (const part of splitTerminalData(data)) link.sendBinary(encodeTerminalFrame(streamId, part));
      if (!paused && link.buffered() > HIGH_WATER) {
        paused = true;
        terminal.pause();
        const poll = setInterval(() => {
          if (stream.done || link.buffered() < LOW_WATER) {
            clearInterval(poll);
            paused = false;
            terminal.resume();
          }
        }, DRAIN_POLL_MS);
      }
    });
    terminal.onExit((reason) => {
      if (stream.done) return;
      stream.done = true;
      this.streams.delete(streamId);
      link.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_closed', streamId, reason });
      this.deps.log.info('agent.terminal_closed', { agentId, streamId, reason });
    });
    link.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_opened', streamId });
  }

  /** Input for a stream; dropped for one that is not (or no longer) open. */
  input(streamId: string, data: Buffer): void {
    const stream = this.streams.get(streamId);
    if (stream?.terminal && !stream.done) stream.terminal.write(data);
  }

  resize(streamId: string, cols: number, rows: number): void {
    const stream = this.streams.get(streamId);
    if (stream?.terminal && !stream.done) stream.terminal.resize(cols, rows);
  }

  /** Handles `attach_close`: ends the terminal and confirms with `attach_closed`. */
  close(link: AttachLink, streamId: string): void {
    const stream = this.streams.get(streamId);
    if (!stream || stream.done) return;
    stream.done = true;
    this.streams.delete(streamId);
    stream.terminal?.close();
    link.send({ v: TUNNEL_PROTOCOL_VERSION, type: 'attach_closed', streamId, reason: 'closed by the viewer' });
    this.deps.log.info('agent.terminal_closed', { agentId: stream.agentId, streamId, reason: 'viewer' });
  }

  /** The tunnel dropped: every viewer of it is gone, so every terminal ends. */
  closeAll(): void {
    for (const stream of this.streams.values()) {
      stream.done = true;
      stream.terminal?.close();
    }
    this.streams.clear();
  }

  /** Number of open streams. */
  get size(): number {
    return this.streams.size;
  }
}
