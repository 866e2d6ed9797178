import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@graft/log';
import { type LogStream, MAX_LOG_CHUNK_BYTES } from '@graft/protocol';
import { AgentLogSpool, type SourceOffsets } from './agent-log-spool.js';
import { type Secret, SecretRedactor } from './secret-redactor.js';

/** Where the log shipper sends frames: the tunnel while it is up. */
export interface LogLink {
  /** Sends one binary frame (a log chunk). */
  send(frame: Buffer): void;
  /** Bytes queued on the socket and not yet written: shipping pauses above the limit. */
  buffered(): number;
  /** Tells the hub an agent's log is complete up to `lastSeq`. */
  sendClosed(agentId: string, lastSeq: number): void;
}

/** What the supervisor tells the log capture about runs (a small port, owned by the supervisor's side). */
export interface AgentLogCapture {
  /** A run is about to start: capture its output files; `fresh` when the files start empty (a fresh workspace). */
  runStarting(agentId: string, source: { files: { stdout: string; stderr: string }; secrets: Secret[] }, options: { fresh: boolean }): Promise<void>;
  /** The run ended: capture what is left, then close the log until the next run. */
  runEnded(agentId: string): void;
  /** The agent left the node: its spool goes once the hub has it all. */
  removed(agentId: string): void;
}

/** Options of {@link LogShipper}. */
export interface LogShipperOptions {
  /** Root of the spools (`<data dir>/logs`). */
  rootDir: string;
  /** Most bytes of output kept per agent; past it one `system` chunk says so and capture stops. */
  limitBytes: number;
  /** How often output files are checked for new bytes. */
  pollMs?: number;
  /** Socket backlog above which shipping waits (bounded memory whatever the hub's pace). */
  maxBufferedBytes?: number;
  log: Logger;
  /** Counts bytes captured, shipped and acknowledged. */
  onBytes?: (what: 'captured' | 'shipped' | 'acked', bytes: number) => void;
}

const STREAMS = ['stdout', 'stderr'] as const;
const READ_BYTES = MAX_LOG_CHUNK_BYTES;
/** How often spool checkpoints (state.json) are written while nothing else forces one. */
const CHECKPOINT_MS = 500;
/** Most bytes read per agent per pass, so one chatty agent cannot starve the others. */
const PASS_BYTES = 8 * 1024 * 1024;
const SHIP_READ_BYTES = 1024 * 1024;

/** A source being captured: where reading continues, and the redactor holding back a possible secret's start. */
interface Source {
  path: string;
  /** Next byte to read; bytes before `readAt - redactor.pending` are spooled. */
  readAt: number;
  redactor: SecretRedactor;
}

interface AgentLog {
  spool: AgentLogSpool;
  sources: Record<(typeof STREAMS)[number], Source> | null;
  capturing: boolean;
  /** The run ended: drain, flush, close. */
  ending: boolean;
  removed: boolean;
  /** Shipping position on the current link, and what is sent but not acknowledged (seq → spool end offset). */
  sendOffset: number;
  sentSeq: number;
  inflight: Map<number, number>;
  closedSent: boolean;
  busy: Promise<void>;
}

/**
 * The broker's log capture and shipping (DESIGN §6): tails each agent's stdout and stderr files,
 * redacts the project's secrets, appends numbered chunks to the agent's spool, and ships them over
 * the tunnel as binary frames; after a reconnect it resends everything the hub has not acknowledged.
 * The agent never waits on any of it (it writes to its files), and memory stays bounded: reads and
 * sends are in fixed-size pieces, and shipping pauses while the socket's backlog is high.
 */
export class LogShipper implements AgentLogCapture {
  private readonly logs = new Map<string, AgentLog>();
  private link: LogLink | null = null;
  private timer: NodeJS.Timeout | null = null;
  private cycle: Promise<void> | null = null;
  private stopped = false;
  private lastCheckpoint = 0;
  private readonly pollMs: number;
  private readonly maxBuffered: number;

  constructor(private readonly options: LogShipperOptions) {
    this.pollMs = options.pollMs ?? 50;
    this.maxBuffered = options.maxBufferedBytes ?? 8 * 1024 * 1024;
  }

  /** Opens every spool a previous broker process left (their unacknowledged chunks are resent) and starts the loop. */
  async start(): Promise<void> {
    let names: string[] = [];
    try {
      names = await readdir(this.options.rootDir);
    } catch {
      names = [];
    }
    for (const agentId of names) if (/^[0-9a-f-]{36}$/.test(agentId)) await this.logOf(agentId);
    this.schedule();
  }

  async runStarting(agentId: string, source: { files: { stdout: string; stderr: string }; secrets: Secret[] }, options: { fresh: boolean }): Promise<void> {
    const log = await this.logOf(agentId);
    await this.exclusive(log, async () => {
      // A run of a fresh workspace writes new files: capture starts at their beginning.
      const at: SourceOffsets = options.fresh ? { stdout: 0, stderr: 0 } : log.spool.sources;
      log.sources = {
        stdout: { path: source.files.stdout, readAt: at.stdout, redactor: new SecretRedactor(source.secrets) },
        stderr: { path: source.files.stderr, readAt: at.stderr, redactor: new SecretRedactor(source.secrets) },
      };
      if (options.fresh) {
        log.spool.resetSources();
        await log.spool.saveState();
      }
      log.capturing = !log.spool.limitReached;
      log.ending = false;
      log.closedSent = false;
      log.spool.setClosed(null);
    });
  }

  runEnded(agentId: string): void {
    const log = this.logs.get(agentId);
    if (log) log.ending = true;
  }

  removed(agentId: string): void {
    const log = this.logs.get(agentId);
    if (!log) return;
    log.ending = true;
    log.removed = true;
  }

  /** The tunnel is up: ship from the last acknowledgement of every agent. */
  connected(link: LogLink): void {
    this.link = link;
    for (const log of this.logs.values()) this.rewind(log);
  }

  /** The tunnel is down: nothing is in flight any more; the next link starts again from the acknowledgements. */
  disconnected(): void {
    this.link = null;
    for (const log of this.logs.values()) this.rewind(log);
  }

  /** The hub stored every chunk of `agentId` up to `seq`. */
  acked(agentId: string, seq: number): void {
    const log = this.logs.get(agentId);
    if (!log) return;
    const end = log.inflight.get(seq);
    if (end === undefined) return;
    for (const s of log.inflight.keys()) if (s <= seq) log.inflight.delete(s);
    const before = log.spool.ackedOffset;
    log.spool.ack(seq, end);
    this.options.onBytes?.('acked', end - before);
  }

  /** Stops the loop after a last pass; spools stay on disk for the next broker process. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.cycle;
    for (const log of this.logs.values()) await log.busy;
    for (const log of this.logs.values()) await log.spool.close();
  }

  /** What a spool holds, for tests and the local API. */
  status(agentId: string): { lastSeq: number; acked: number; closedSeq: number | null; limitReached: boolean } | null {
    const log = this.logs.get(agentId);
    return log ? { lastSeq: log.spool.lastSeq, acked: log.spool.acked, closedSeq: log.spool.closedSeq, limitReached: log.spool.limitReached } : null;
  }

  /** Runs one capture-and-ship pass now (tests; the loop does the same every pollMs). */
  async pass(): Promise<boolean> {
    let busy = false;
    for (const [agentId, log] of [...this.logs]) {
      await this.exclusive(log, async () => {
        if (log.capturing) {
          let read = 0;
          for (let n = await this.capture(log); n > 0 && read < PASS_BYTES && log.capturing; n = await this.capture(log)) read += n;
          if (read > 0) busy = true;
        }
        const sentBefore = log.sentSeq;
        // close() clears `ending`: remember it, so the checkpoint below is forced when a run ended (closedSeq is not recoverable by a scan).
        const ended = log.ending;
        if (log.ending) {
          // The run is over: drain the files to their end, release what the redactors held back, close.
          if (log.capturing) {
            while ((await this.capture(log)) > 0 && log.capturing) {}
            await this.flush(log);
          }
          await this.close(log);
        }
        await this.ship(log);
        if (log.sentSeq !== sentBefore) busy = true;
        // Checkpoints are cheap to lose (recovery scans forward from the last one), so not every pass writes one.
        if (Date.now() - this.lastCheckpoint > CHECKPOINT_MS || ended || log.removed) await log.spool.saveState();
        if (log.removed && log.spool.closedSeq !== null && log.spool.acked >= log.spool.closedSeq) {
          this.logs.delete(agentId);
          await log.spool.destroy();
        }
      });
    }
    if (Date.now() - this.lastCheckpoint > CHECKPOINT_MS) this.lastCheckpoint = Date.now();
    return busy;
  }

  /** The next pass: at once after one that moved bytes (an agent writing fast), else after pollMs. */
  private schedule(delayMs = this.pollMs): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      let busy = false;
      this.cycle = this.pass()
        .then((b) => {
          busy = b;
        })
        .catch((err: unknown) => this.options.log.error('logs.pass_failed', { err }))
        .finally(() => {
          this.cycle = null;
          this.schedule(busy ? 0 : this.pollMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  private async logOf(agentId: string): Promise<AgentLog> {
    const existing = this.logs.get(agentId);
    if (existing) return existing;
    const spool = await AgentLogSpool.open(agentId, join(this.options.rootDir, agentId));
    const log: AgentLog = {
      spool,
      sources: null,
      capturing: false,
      ending: false,
      removed: false,
      sendOffset: spool.ackedOffset,
      sentSeq: spool.acked,
      inflight: new Map(),
      closedSent: false,
      busy: Promise.resolve(),
    };
    this.logs.set(agentId, log);
    return log;
  }

  private exclusive(log: AgentLog, work: () => Promise<void>): Promise<void> {
    const next = log.busy.then(work, work);
    log.busy = next.catch(() => {});
    return next;
  }

  private rewind(log: AgentLog): void {
    log.sendOffset = log.spool.ackedOffset;
    log.sentSeq = log.spool.acked;
    log.inflight.clear();
    log.closedSent = false;
  }

  /** Reads what is new in both files into the spool; returns how many bytes were read. */
  private async capture(log: AgentLog): Promise<number> {
    if (!log.sources) return 0;
    let total = 0;
    for (const stream of STREAMS) {
      const source = log.sources[stream];
      let size: number;
      try {
        size = (await stat(source.path)).size;
      } catch {
        continue;
      }
      // A file shorter than what was read was replaced (a fresh workspace): read the new one from its start.
      if (size < source.readAt) {
        // What the redactor still held belongs to the old file: it is final now.
        await this.spoolData(log, stream, source.redactor.flush());
        source.readAt = 0;
      }
      if (size === source.readAt) continue;
      const length = Math.min(size - source.readAt, READ_BYTES);
      const buf = Buffer.allocUnsafe(length);
      const fh = await open(source.path, 'r');
      let bytesRead = 0;
      try {
        ({ bytesRead } = await fh.read(buf, 0, length, source.readAt));
      } finally {
        await fh.close();
      }
      source.readAt += bytesRead;
      total += bytesRead;
      await this.spoolData(log, stream, source.redactor.push(buf.subarray(0, bytesRead)));
      if (!log.capturing) break;
    }
    return total;
  }

  /** Appends redacted bytes, or the limit marker when they would pass the spool limit. */
  private async spoolData(log: AgentLog, stream: LogStream, data: Buffer): Promise<void> {
    if (data.length === 0 || !log.sources) return;
    const room = this.options.limitBytes - log.spool.dataBytes;
    const kept = data.length <= room ? data : data.subarray(0, Math.max(0, room));
    const offsets = this.committedOffsets(log);
    if (kept.length > 0) {
      for (let i = 0; i < kept.length; i += MAX_LOG_CHUNK_BYTES) await log.spool.append(stream, kept.subarray(i, i + MAX_LOG_CHUNK_BYTES), offsets);
      this.options.onBytes?.('captured', kept.length);
    }
    if (kept.length < data.length) {
      const note = `[graft] this agent's log reached its limit of ${this.options.limitBytes} bytes; output after this point is not kept\n`;
      await log.spool.append('system', Buffer.from(note), offsets);
      log.spool.markLimitReached();
      // A scan of the spool cannot tell that the limit was reached: checkpoint it now, not up to CHECKPOINT_MS later.
      await log.spool.saveState();
      log.capturing = false;
      this.options.log.warn('logs.limit_reached', { agentId: log.spool.agentId, limitBytes: this.options.limitBytes });
    }
  }

  /** Where each file is spooled up to: read, minus what a redactor still holds back. */
  private committedOffsets(log: AgentLog): SourceOffsets {
    const s = log.sources;
    if (!s) return log.spool.sources;
    return { stdout: s.stdout.readAt - s.stdout.redactor.pending, stderr: s.stderr.readAt - s.stderr.redactor.pending };
  }

  /** End of the run: what the redactors held back is final now. */
  private async flush(log: AgentLog): Promise<void> {
    if (!log.sources) return;
    for (const stream of STREAMS) {
      const rest = log.sources[stream].redactor.flush();
      if (log.capturing) await this.spoolData(log, stream, rest);
    }
  }

  private async close(log: AgentLog): Promise<void> {
    log.capturing = false;
    log.ending = false;
    log.sources = null;
    if (log.spool.closedSeq !== log.spool.lastSeq) log.spool.setClosed(log.spool.lastSeq);
  }

  private async ship(log: AgentLog): Promise<void> {
    const link = this.link;
    if (!link) return;
    while (log.sendOffset < log.spool.end && link.buffered() < this.maxBuffered && this.link === link) {
      const records = await log.spool.readFrom(log.sendOffset, SHIP_READ_BYTES);
      // The link changed during the read: connected()/disconnected() rewound this log, so these records are not for it.
      if (this.link !== link) return;
      if (records.length === 0) break;
      for (const r of records) {
        link.send(r.frame);
        log.inflight.set(r.chunk.seq, r.end);
        log.sentSeq = r.chunk.seq;
        log.sendOffset = r.end;
        this.options.onBytes?.('shipped', r.chunk.data.length);
      }
    }
    const closedSeq = log.spool.closedSeq;
    if (closedSeq !== null && !log.closedSent && log.sentSeq >= closedSeq && this.link === link) {
      link.sendClosed(log.spool.agentId, closedSeq);
      log.closedSent = true;
    }
  }
}
