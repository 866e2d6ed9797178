import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeLogChunk, encodeLogChunk, type LogChunk, type LogStream } from '@graft/protocol';

/** Where each capture source (an output file of the agent) was read up to, after a record. */
export interface SourceOffsets {
  stdout: number;
  stderr: number;
}

/** A spooled record: the chunk, its frame as it travels, and where the spool continues after it. */
export interface SpoolRecord {
  chunk: LogChunk;
  frame: Buffer;
  /** Offset in the spool file just past this record. */
  end: number;
}

/** What state.json keeps: a checkpoint to scan forward from, and the hub's acknowledgement. */
interface SpoolState {
  /** Spool offset of the checkpoint; everything before it is described by the fields below. */
  checkpoint: number;
  nextSeq: number;
  sources: SourceOffsets;
  dataBytes: number;
  limitReached: boolean;
  /** Highest sequence number the hub acknowledged, and the spool offset just past it. */
  acked: number;
  ackedOffset: number;
  /** Set when the run that wrote the log ended and everything up to `closedSeq` is spooled; null while it runs. */
  closedSeq: number | null;
}

const INITIAL: SpoolState = { checkpoint: 0, nextSeq: 1, sources: { stdout: 0, stderr: 0 }, dataBytes: 0, limitReached: false, acked: 0, ackedOffset: 0, closedSeq: null };

/** Record layout: u32 frame length | frame | u64 stdout offset | u64 stderr offset. */
const RECORD_OVERHEAD = 4 + 8 + 8;
/** How much of the latest records a spool keeps in memory for shipping. */
const RECENT_BYTES = 16 * 1024 * 1024;

/**
 * One agent's append-only log spool on the broker (DESIGN §6): `spool.bin` holds every chunk as the
 * binary frame it travels in, each followed by the capture offsets it was read up to, so a broker
 * that restarts resumes capture exactly where the spool ends, and resends everything after the
 * hub's last acknowledgement. `state.json` is a checkpoint; the spool itself is the truth.
 */
export class AgentLogSpool {
  private state: SpoolState = { ...INITIAL, sources: { ...INITIAL.sources } };
  /** Spool file size: where the next record goes. */
  private size = 0;
  private stateDirty = false;
  /** Kept open for appends: one open per record would cost more than the write. */
  private appendHandle: FileHandle | null = null;
  /** Records appended by this process and not yet shipped far past: shipping reads them from memory. */
  private recent: SpoolRecord[] = [];
  private recentBytes = 0;

  private constructor(
    readonly agentId: string,
    private readonly dir: string,
  ) {}

  /** Opens (or creates) the spool in `dir`, recovering what a previous broker process wrote. */
  static async open(agentId: string, dir: string): Promise<AgentLogSpool> {
    const spool = new AgentLogSpool(agentId, dir);
    await mkdir(dir, { recursive: true });
    await spool.recover();
    return spool;
  }

  get nextSeq(): number {
    return this.state.nextSeq;
  }
  get lastSeq(): number {
    return this.state.nextSeq - 1;
  }
  get sources(): SourceOffsets {
    return { ...this.state.sources };
  }
  get dataBytes(): number {
    return this.state.dataBytes;
  }
  get limitReached(): boolean {
    return this.state.limitReached;
  }
  get acked(): number {
    return this.state.acked;
  }
  get ackedOffset(): number {
    return this.state.ackedOffset;
  }
  get closedSeq(): number | null {
    return this.state.closedSeq;
  }
  get end(): number {
    return this.size;
  }

  /** Appends one chunk (seq assigned here) and the capture offsets it was read up to. */
  async append(stream: LogStream, data: Buffer, sources: SourceOffsets, at = Date.now()): Promise<LogChunk> {
    const chunk: LogChunk = { agentId: this.agentId, stream, seq: this.state.nextSeq, at, data };
    const frame = encodeLogChunk(chunk);
    const record = Buffer.allocUnsafe(frame.length + RECORD_OVERHEAD);
    record.writeUInt32BE(frame.length, 0);
    frame.copy(record, 4);
    record.writeBigUInt64BE(BigInt(sources.stdout), 4 + frame.length);
    record.writeBigUInt64BE(BigInt(sources.stderr), 12 + frame.length);
    this.appendHandle ??= await open(join(this.dir, 'spool.bin'), 'a');
    await this.appendHandle.write(record, 0, record.length, null);
    this.size += record.length;
    this.recent.push({ chunk, frame, end: this.size });
    this.recentBytes += record.length;
    while (this.recentBytes > RECENT_BYTES && this.recent.length > 1) this.recentBytes -= (this.recent.shift()?.frame.length ?? 0) + RECORD_OVERHEAD;
    this.state.nextSeq++;
    this.state.sources = { ...sources };
    if (stream !== 'system') this.state.dataBytes += data.length;
    this.stateDirty = true;
    return chunk;
  }

  /** A new run writes new output files (a fresh workspace): capture starts at their beginning. */
  resetSources(): void {
    this.state.sources = { stdout: 0, stderr: 0 };
    this.stateDirty = true;
  }

  /** Marks the spool full (a marker chunk was appended); capture stops for good. */
  markLimitReached(): void {
    this.state.limitReached = true;
    this.stateDirty = true;
  }

  /** The run ended (everything it wrote is spooled up to lastSeq), or a new run began (null). */
  setClosed(closedSeq: number | null): void {
    this.state.closedSeq = closedSeq;
    this.stateDirty = true;
  }

  /** The hub stored everything up to `seq`, whose record ends at `offset`. */
  ack(seq: number, offset: number): void {
    if (seq <= this.state.acked) return;
    this.state.acked = seq;
    this.state.ackedOffset = offset;
    this.stateDirty = true;
  }

  /** Records from `offset` on, up to about `maxBytes` of them (at least one when there is one). */
  async readFrom(offset: number, maxBytes: number): Promise<SpoolRecord[]> {
    if (offset >= this.size) return [];
    // Recently appended records are in memory: find the one starting at `offset`.
    const firstRecent = this.recent[0];
    if (firstRecent && offset >= firstRecent.end - firstRecent.frame.length - RECORD_OVERHEAD) {
      const at = this.recent.findIndex((r) => r.end - r.frame.length - RECORD_OVERHEAD === offset);
      if (at >= 0) {
        const out: SpoolRecord[] = [];
        let bytes = 0;
        for (let i = at; i < this.recent.length && (out.length === 0 || bytes < maxBytes); i++) {
          const r = this.recent[i] as SpoolRecord;
          out.push(r);
          bytes += r.frame.length + RECORD_OVERHEAD;
        }
        return out;
      }
    }
    const length = Math.min(this.size - offset, Math.max(maxBytes, 0));
    const fh = await open(join(this.dir, 'spool.bin'), 'r');
    try {
      let buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      buf = buf.subarray(0, bytesRead);
      let records = parseRecords(buf, offset).records;
      if (records.length === 0) {
        // One record larger than maxBytes: read exactly it.
        const head = Buffer.allocUnsafe(4);
        await fh.read(head, 0, 4, offset);
        const whole = Buffer.allocUnsafe(head.readUInt32BE(0) + RECORD_OVERHEAD);
        await fh.read(whole, 0, whole.length, offset);
        records = parseRecords(whole, offset).records;
      }
      return records;
    } finally {
      await fh.close();
    }
  }

  /** Writes the checkpoint when something changed since the last one. */
  async saveState(): Promise<void> {
    if (!this.stateDirty) return;
    this.stateDirty = false;
    const state: SpoolState = { ...this.state, checkpoint: this.size };
    const path = join(this.dir, 'state.json');
    const tmp = `${path}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(state));
    await rename(tmp, path);
  }

  /** Closes the append handle (the broker stops); the spool stays on disk. */
  async close(): Promise<void> {
    await this.saveState();
    await this.appendHandle?.close();
    this.appendHandle = null;
  }

  /** Removes the spool (the agent left this node). */
  async destroy(): Promise<void> {
    await this.appendHandle?.close();
    this.appendHandle = null;
    await rm(this.dir, { recursive: true, force: true });
  }

  private async recover(): Promise<void> {
    const path = join(this.dir, 'spool.bin');
    let saved: SpoolState | null = null;
    try {
      saved = JSON.parse(await readFile(join(this.dir, 'state.json'), 'utf8')) as SpoolState;
    } catch {
      saved = null;
    }
    let size = 0;
    try {
      size = (await stat(path)).size;
    } catch {
      size = 0;
    }
    this.state = saved && saved.checkpoint <= size ? saved : { ...INITIAL, sources: { ...INITIAL.sources } };
    // Scan forward from the checkpoint: records written after it update the counters.
    let offset = this.state.checkpoint;
    if (offset < size) {
      const fh = await open(path, 'r');
      try {
        const buf = Buffer.allocUnsafe(size - offset);
        await fh.read(buf, 0, buf.length, offset);
        const { records, consumed } = parseRecords(buf, offset);
        for (const r of records) {
          this.state.nextSeq = r.chunk.seq + 1;
          // A record past the checkpointed close was written by a later run: that run had reopened the log.
          if (this.state.closedSeq !== null && r.chunk.seq > this.state.closedSeq) this.state.closedSeq = null;
          this.state.sources = readSources(buf, r, offset);
          if (r.chunk.stream !== 'system') this.state.dataBytes += r.chunk.data.length;
        }
        offset += consumed;
      } finally {
        await fh.close();
      }
    }
    // A torn record at the end (the broker died mid-write) is cut off; capture re-reads its bytes.
    if (offset < size) {
      const fh = await open(path, 'r+');
      try {
        await fh.truncate(offset);
      } finally {
        await fh.close();
      }
    }
    this.size = offset;
    this.stateDirty = true;
  }
}

/** The capture offsets stored after a record parsed from `buf` (which starts at spool offset `base`). */
function readSources(buf: Buffer, r: SpoolRecord, base: number): SourceOffsets {
  const at = r.end - base - 16;
  return { stdout: Number(buf.readBigUInt64BE(at)), stderr: Number(buf.readBigUInt64BE(at + 8)) };
}

/** Complete records in `buf` (starting at spool offset `base`); a partial one at the end is left out. */
function parseRecords(buf: Buffer, base: number): { records: SpoolRecord[]; consumed: number } {
  const records: SpoolRecord[] = [];
  let pos = 0;
  while (pos + 4 <= buf.length) {
    const frameLength = buf.readUInt32BE(pos);
    const end = pos + 4 + frameLength + 16;
    if (end > buf.length) break;
    const frame = buf.subarray(pos + 4, pos + 4 + frameLength);
    const decoded = decodeLogChunk(frame);
    if (!decoded.ok) break;
    records.push({ chunk: decoded.chunk, frame, end: base + end });
    pos = end;
  }
  return { records, consumed: pos };
}
