import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '@graft/log';
import { decodeLogChunk, type LogChunk, type LogStream, MAX_LOG_CHUNK_BYTES } from '@graft/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LogLink, LogShipper, type LogShipperOptions } from './log-shipper.js';
import type { Secret } from './secret-redactor.js';

type LinkEvent = { kind: 'chunk'; chunk: LogChunk } | { kind: 'closed'; agentId: string; lastSeq: number };

/** The tunnel as the shipper sees it: records what it is given, and a socket backlog the test controls. */
class RecordingLink implements LogLink {
  readonly events: LinkEvent[] = [];
  /** Bytes "queued on the socket"; when `countSent`, every frame sent adds to it until `drain()`. */
  backlog = 0;
  onSend: ((chunk: LogChunk) => void) | null = null;

  constructor(private readonly countSent = false) {}

  send(frame: Buffer): void {
    const decoded = decodeLogChunk(frame);
    if (!decoded.ok) throw new Error(`the shipper sent an undecodable frame: ${decoded.reason}`);
    // The frame may share memory with the shipper's read buffer: keep a copy, as a socket would.
    const chunk = { ...decoded.chunk, data: Buffer.from(decoded.chunk.data) };
    this.events.push({ kind: 'chunk', chunk });
    if (this.countSent) this.backlog += frame.length;
    this.onSend?.(chunk);
  }

  buffered(): number {
    return this.backlog;
  }

  sendClosed(agentId: string, lastSeq: number): void {
    this.events.push({ kind: 'closed', agentId, lastSeq });
  }

  drain(): void {
    this.backlog = 0;
  }

  get chunks(): LogChunk[] {
    return this.events.flatMap((e) => (e.kind === 'chunk' ? [e.chunk] : []));
  }

  get closes(): { agentId: string; lastSeq: number }[] {
    return this.events.flatMap((e) => (e.kind === 'closed' ? [{ agentId: e.agentId, lastSeq: e.lastSeq }] : []));
  }

  seqs(): number[] {
    return this.chunks.map((c) => c.seq);
  }
}

const quiet = createLogger({ level: 'error', sink: () => {} });
const SECRET: Secret = { name: 'API_TOKEN', value: 'tok_5ecret-value-1234' };
const REDACTED = '[REDACTED:API_TOKEN]';

let root: string;
let files: { stdout: string; stderr: string };
let shippers: LogShipper[];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'graft-shipper-'));
  files = { stdout: join(root, 'run', 'stdout.log'), stderr: join(root, 'run', 'stderr.log') };
  await mkdir(join(root, 'run'));
  await writeFile(files.stdout, '');
  await writeFile(files.stderr, '');
  shippers = [];
});

afterEach(async () => {
  for (const s of shippers) await s.stop();
  await rm(root, { recursive: true, force: true });
});

function newShipper(options: Partial<LogShipperOptions> = {}): LogShipper {
  // A poll interval far beyond the test: passes are driven by hand unless a test says otherwise.
  const shipper = new LogShipper({ rootDir: join(root, 'logs'), limitBytes: 64 * 1024 * 1024, pollMs: 60_000, log: quiet, ...options });
  shippers.push(shipper);
  return shipper;
}

/** Passes until a pass adds nothing to the spool (every file read to its end and shipped as far as the link allows). */
async function settle(shipper: LogShipper, agentId: string): Promise<void> {
  let last = -1;
  for (let i = 0; i < 500; i++) {
    await shipper.pass();
    const seq = shipper.status(agentId)?.lastSeq ?? 0;
    if (seq === last) return;
    last = seq;
  }
  throw new Error('capture did not settle');
}

function streamBytes(chunks: LogChunk[], stream: LogStream): Buffer {
  return Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.data));
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Random bytes that cannot contain the test secret (or any of its forms) by accident: no `t`. */
function noise(bytes: number): Buffer {
  const buf = randomBytes(bytes);
  for (let i = 0; i < buf.length; i++) if (buf[i] === 0x74) buf[i] = 0x54;
  return buf;
}

/** A chunk with its data as a hash: comparing 256 KiB buffers element by element is slow. */
function digest(c: LogChunk): { seq: number; stream: LogStream; at: number; agentId: string; sha: string } {
  return { seq: c.seq, stream: c.stream, at: c.at, agentId: c.agentId, sha: sha(c.data) };
}

function expectContiguous(chunks: LogChunk[], from: number): void {
  expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => from + i));
}

describe('LogShipper capture', () => {
  it('spools stdout and stderr byte-exact, in chunks of at most MAX_LOG_CHUNK_BYTES, while the files keep growing', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [SECRET] }, { fresh: true });

    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const outSizes = [700_000, 1_100_000, 3, 900_000, 400_001];
    const errSizes = [100, 600_000, 0, 5, 250_000];
    for (let i = 0; i < outSizes.length; i++) {
      const o = noise(outSizes[i] ?? 0);
      const e = noise(errSizes[i] ?? 0);
      out.push(o);
      err.push(e);
      await appendFile(files.stdout, o);
      await appendFile(files.stderr, e);
      // Passes between appends: each continues where the last one stopped reading.
      await shipper.pass();
    }
    await settle(shipper, agentId);

    const chunks = link.chunks;
    expectContiguous(chunks, 1);
    for (const c of chunks) {
      expect(c.agentId).toBe(agentId);
      expect(c.data.length).toBeGreaterThan(0);
      expect(c.data.length).toBeLessThanOrEqual(MAX_LOG_CHUNK_BYTES);
    }
    expect(chunks.some((c) => c.stream === 'system')).toBe(false);
    const expectedOut = Buffer.concat(out);
    const expectedErr = Buffer.concat(err);
    expect(expectedOut.length).toBeGreaterThan(3_000_000);
    expect(sha(streamBytes(chunks, 'stdout'))).toBe(sha(expectedOut));
    expect(sha(streamBytes(chunks, 'stderr'))).toBe(sha(expectedErr));
    expect(shipper.status(agentId)).toEqual({ lastSeq: chunks.length, acked: 0, closedSeq: null, limitReached: false });
  });

  it('redacts a secret split across two appends, holding back its first half until the second arrives', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [SECRET] }, { fresh: true });

    await appendFile(files.stdout, 'export TOKEN=tok_5ecret-');
    await appendFile(files.stderr, `curl -H "Authorization: Bearer ${Buffer.from(SECRET.value).toString('base64').slice(0, 10)}`);
    await settle(shipper, agentId);
    await shipper.pass();
    // Only what cannot be the start of a secret (in any of its forms) is out.
    expect(streamBytes(link.chunks, 'stdout').toString()).toBe('export TOKEN=');
    expect(streamBytes(link.chunks, 'stderr').toString()).toBe('curl -H "Authorization: Bearer ');
    const shippedSoFar = Buffer.concat(link.chunks.map((c) => c.data)).toString();
    expect(shippedSoFar).not.toContain('tok_');

    await appendFile(files.stdout, 'value-1234\necho done\n');
    await appendFile(files.stderr, `${Buffer.from(SECRET.value).toString('base64').slice(10)}"\n`);
    await settle(shipper, agentId);
    expect(streamBytes(link.chunks, 'stdout').toString()).toBe(`export TOKEN=${REDACTED}\necho done\n`);
    expect(streamBytes(link.chunks, 'stderr').toString()).toBe(`curl -H "Authorization: Bearer ${REDACTED}"\n`);
    const all = Buffer.concat(link.chunks.map((c) => c.data)).toString();
    expect(all).not.toContain(SECRET.value);
    expect(all).not.toContain('5ecret');
  });

  it('splits output that redaction made longer than one chunk into several, all within MAX_LOG_CHUNK_BYTES', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [{ name: 'K', value: 'abcd' }] }, { fresh: true });
    // Every 4 bytes become 12: one read of the file yields about three chunks' worth.
    await appendFile(files.stdout, 'abcd'.repeat(MAX_LOG_CHUNK_BYTES / 4));
    shipper.runEnded(agentId);
    await shipper.pass();
    const chunks = link.chunks;
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    for (const c of chunks) expect(c.data.length).toBeLessThanOrEqual(MAX_LOG_CHUNK_BYTES);
    expectContiguous(chunks, 1);
    expect(streamBytes(chunks, 'stdout').equals(Buffer.from('[REDACTED:K]'.repeat(MAX_LOG_CHUNK_BYTES / 4)))).toBe(true);
  });

  it('on runEnded drains the files, flushes what the redactor held back, and sends log_closed once after the last chunk', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [SECRET] }, { fresh: true });
    await appendFile(files.stdout, 'started\n');
    await shipper.pass();
    expect(link.closes).toEqual([]);

    // More than several reads' worth, plus a tail that looks like the start of the secret.
    const bulk = noise(3 * MAX_LOG_CHUNK_BYTES + 1234);
    await appendFile(files.stdout, bulk);
    await appendFile(files.stdout, 'last words: tok_5e');
    await appendFile(files.stderr, 'bye\n');
    shipper.runEnded(agentId);
    await shipper.pass();

    const chunks = link.chunks;
    expectContiguous(chunks, 1);
    const lastSeq = chunks.at(-1)?.seq as number;
    // A partial secret at the very end is final: it is emitted as it is (a part of a secret is never masked).
    expect(sha(streamBytes(chunks, 'stdout'))).toBe(sha(Buffer.concat([Buffer.from('started\n'), bulk, Buffer.from('last words: tok_5e')])));
    expect(streamBytes(chunks, 'stderr').toString()).toBe('bye\n');
    expect(link.closes).toEqual([{ agentId, lastSeq }]);
    expect(link.events.at(-1)).toEqual({ kind: 'closed', agentId, lastSeq });
    expect(shipper.status(agentId)).toMatchObject({ lastSeq, closedSeq: lastSeq });

    // Output after the end of the run is not captured, and the close is not repeated.
    await appendFile(files.stdout, 'written after the run\n');
    await shipper.pass();
    await shipper.pass();
    expect(link.chunks.length).toBe(chunks.length);
    expect(link.closes.length).toBe(1);
  });

  it('sends log_closed with seq 0 for a run that wrote nothing', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    shipper.runEnded(agentId);
    await shipper.pass();
    await shipper.pass();
    expect(link.events).toEqual([{ kind: 'closed', agentId, lastSeq: 0 }]);
  });

  it('captures and ships on its own once started', async () => {
    const agentId = randomUUID();
    const shipper = newShipper({ pollMs: 5 });
    await shipper.start();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await appendFile(files.stdout, 'hello\n');
    await appendFile(files.stderr, 'warning\n');
    const deadline = Date.now() + 3000;
    while (link.chunks.length < 2 && Date.now() < deadline) await sleep(5);
    shipper.runEnded(agentId);
    while (link.closes.length === 0 && Date.now() < deadline) await sleep(5);
    await shipper.stop();
    expect(streamBytes(link.chunks, 'stdout').toString()).toBe('hello\n');
    expect(streamBytes(link.chunks, 'stderr').toString()).toBe('warning\n');
    expect(link.closes).toEqual([{ agentId, lastSeq: 2 }]);
  });
});

describe('LogShipper shipping', () => {
  it('resends only unacknowledged chunks after a reconnect, in order', async () => {
    const agentId = randomUUID();
    const acked: number[] = [];
    const shipper = newShipper({ onBytes: (what, n) => what === 'acked' && acked.push(n) });
    const link1 = new RecordingLink();
    shipper.connected(link1);
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    for (let i = 1; i <= 5; i++) {
      await appendFile(files.stdout, `line ${i}\n`);
      await shipper.pass();
    }
    expect(link1.seqs()).toEqual([1, 2, 3, 4, 5]);

    shipper.acked(agentId, 3);
    expect(shipper.status(agentId)?.acked).toBe(3);
    expect(acked.length).toBe(1);
    await shipper.pass();
    expect(link1.seqs()).toEqual([1, 2, 3, 4, 5]);

    shipper.disconnected();
    await shipper.pass();
    const link2 = new RecordingLink();
    shipper.connected(link2);
    await shipper.pass();
    expect(link2.chunks.map((c) => [c.seq, c.data.toString()])).toEqual([
      [4, 'line 4\n'],
      [5, 'line 5\n'],
    ]);
    // A late acknowledgement of something already acknowledged changes nothing.
    shipper.acked(agentId, 2);
    expect(shipper.status(agentId)?.acked).toBe(3);

    shipper.disconnected();
    const link3 = new RecordingLink();
    shipper.connected(link3);
    await shipper.pass();
    expect(link3.seqs()).toEqual([4, 5]);
    // Acknowledgements are cumulative.
    shipper.acked(agentId, 5);
    expect(shipper.status(agentId)?.acked).toBe(5);
    await appendFile(files.stdout, 'line 6\n');
    await shipper.pass();
    expect(link3.seqs()).toEqual([4, 5, 6]);

    shipper.disconnected();
    const link4 = new RecordingLink();
    shipper.connected(link4);
    await shipper.pass();
    expect(link4.seqs()).toEqual([6]);

    // Only chunks that were unacknowledged when the link changed went out twice.
    const counts = new Map<number, number>();
    for (const l of [link1, link2, link3, link4]) for (const s of l.seqs()) counts.set(s, (counts.get(s) ?? 0) + 1);
    expect([...counts]).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 3],
      [5, 3],
      [6, 2],
    ]);
    // Acknowledging a chunk not sent on this link (an unknown agent, or a seq never sent) is ignored.
    shipper.acked(randomUUID(), 1);
    shipper.acked(agentId, 99);
    expect(shipper.status(agentId)?.acked).toBe(5);
  });

  it('sends nothing while the socket backlog is above the limit, then resumes, and closes only after the last chunk', async () => {
    const agentId = randomUUID();
    const shipper = newShipper({ maxBufferedBytes: 64 * 1024 });
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    const data = noise(8 * MAX_LOG_CHUNK_BYTES);
    await appendFile(files.stdout, data);
    await settle(shipper, agentId);
    const total = shipper.status(agentId)?.lastSeq as number;
    expect(total).toBe(8);

    const link = new RecordingLink(true);
    link.backlog = 1024 * 1024;
    shipper.connected(link);
    await shipper.pass();
    await shipper.pass();
    expect(link.chunks).toEqual([]);

    link.drain();
    await shipper.pass();
    const first = link.chunks.length;
    // One read's worth went out before the backlog it made stopped shipping.
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(total);
    await shipper.pass();
    expect(link.chunks.length).toBe(first);

    shipper.runEnded(agentId);
    await shipper.pass();
    expect(link.chunks.length).toBe(first);
    expect(link.closes).toEqual([]);
    expect(shipper.status(agentId)?.closedSeq).toBe(total);

    for (let i = 0; i < 20 && link.closes.length === 0; i++) {
      link.drain();
      await shipper.pass();
    }
    expectContiguous(link.chunks, 1);
    expect(link.chunks.length).toBe(total);
    expect(sha(streamBytes(link.chunks, 'stdout'))).toBe(sha(data));
    expect(link.closes).toEqual([{ agentId, lastSeq: total }]);
    expect(link.events.at(-1)?.kind).toBe('closed');
    link.drain();
    await shipper.pass();
    expect(link.closes.length).toBe(1);
  });

  it('a link that drops and comes back while the shipper reads the spool file gets everything from the last acknowledgement', async () => {
    const agentId = randomUUID();
    const first = newShipper();
    await first.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    const data = noise(8 * MAX_LOG_CHUNK_BYTES);
    await appendFile(files.stdout, data);
    await settle(first, agentId);
    await first.stop();

    // After a restart the chunks come from spool.bin: every read of it is a real wait on the disk.
    const second = newShipper();
    await second.start();
    const link1 = new RecordingLink();
    const link2 = new RecordingLink();
    link1.onSend = () => {
      link1.onSend = null;
      // The tunnel's close and the next connection land while the shipper awaits its next read of the
      // spool (a microtask queued now runs at that await: deterministic, unlike racing real sockets).
      queueMicrotask(() => {
        second.disconnected();
        second.connected(link2);
      });
    };
    second.connected(link1);
    await second.pass();
    expect(link1.chunks.length).toBeGreaterThan(0);
    expect(link1.chunks.length).toBeLessThan(8);
    await second.pass();
    expect(link2.seqs()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(sha(streamBytes(link2.chunks, 'stdout'))).toBe(sha(data));
  });
});

describe('LogShipper across broker restarts and runs', () => {
  it('a new shipper on the same spools resends what was not acknowledged and resumes capture without gaps or duplicates', async () => {
    const agentId = randomUUID();
    const first = newShipper();
    await first.start();
    const link1 = new RecordingLink();
    first.connected(link1);
    await first.runStarting(agentId, { files, secrets: [SECRET] }, { fresh: true });
    const a = noise(600_000);
    await appendFile(files.stdout, a);
    await appendFile(files.stderr, 'err 1\n');
    await settle(first, agentId);
    // The end of the file may be the start of the secret: it is held back, not spooled.
    await appendFile(files.stdout, 'the token is tok_5ecret-');
    await settle(first, agentId);
    const firstChunks = link1.chunks;
    expectContiguous(firstChunks, 1);
    expect(firstChunks.length).toBeGreaterThanOrEqual(4);
    first.acked(agentId, 2);
    await first.stop();

    // While the broker is down the agent keeps writing.
    const b = noise(300_000);
    await appendFile(files.stdout, 'value-1234 and more\n');
    await appendFile(files.stdout, b);
    await appendFile(files.stderr, 'err 2\n');

    const second = newShipper();
    await second.start();
    expect(second.status(agentId)).toEqual({ lastSeq: firstChunks.length, acked: 2, closedSeq: null, limitReached: false });
    const link2 = new RecordingLink();
    second.connected(link2);
    await second.pass();
    // The unacknowledged chunks go out again, identical, before the run is even re-adopted.
    expect(link2.chunks.map(digest)).toEqual(firstChunks.slice(2).map(digest));

    await second.runStarting(agentId, { files, secrets: [SECRET] }, { fresh: false });
    await settle(second, agentId);
    expectContiguous(link2.chunks, 3);
    const all = [...firstChunks.slice(0, 2), ...link2.chunks];
    expect(sha(streamBytes(all, 'stdout'))).toBe(sha(Buffer.concat([a, Buffer.from(`the token is ${REDACTED} and more\n`), b])));
    expect(streamBytes(all, 'stderr').toString()).toBe('err 1\nerr 2\n');
  });

  it('a broker that dies right after a run ended still has the close on disk, and sends it when it comes back', async () => {
    const agentId = randomUUID();
    const first = newShipper();
    const link1 = new RecordingLink();
    first.connected(link1);
    await first.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await appendFile(files.stdout, 'working\n');
    await first.pass();
    await appendFile(files.stdout, 'done\n');
    first.runEnded(agentId);
    await first.pass();
    expect(link1.closes).toEqual([{ agentId, lastSeq: 2 }]);

    // No stop(): the process died; the next one knows only what is on disk. Nothing ends this run again.
    const second = newShipper();
    await second.start();
    expect(second.status(agentId)).toMatchObject({ lastSeq: 2, closedSeq: 2 });
    const link2 = new RecordingLink();
    second.connected(link2);
    await second.pass();
    expect(link2.seqs()).toEqual([1, 2]);
    expect(link2.closes).toEqual([{ agentId, lastSeq: 2 }]);
  });

  it('a broker that dies early in a new run does not replay the previous run\'s close', async () => {
    const agentId = randomUUID();
    const first = newShipper();
    await first.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await appendFile(files.stdout, 'run 1\n');
    first.runEnded(agentId);
    await first.pass();
    expect(first.status(agentId)?.closedSeq).toBe(1);
    await first.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await writeFile(files.stdout, 'run 2\n');
    await first.pass();
    expect(first.status(agentId)).toMatchObject({ lastSeq: 2, closedSeq: null });

    // The process dies within the checkpoint interval; the run is still going when the next one looks.
    const second = newShipper();
    await second.start();
    const link = new RecordingLink();
    second.connected(link);
    await second.pass();
    expect(link.seqs()).toEqual([1, 2]);
    expect(link.closes).toEqual([]);
    expect(second.status(agentId)?.closedSeq).toBeNull();
  });

  it('a fresh run captures its new files from the start, numbering on', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await appendFile(files.stdout, 'old run\n'.repeat(20));
    await appendFile(files.stderr, 'old warning\n');
    await settle(shipper, agentId);
    shipper.runEnded(agentId);
    await shipper.pass();
    const oldLast = shipper.status(agentId)?.lastSeq as number;
    expect(link.closes).toEqual([{ agentId, lastSeq: oldLast }]);

    // The new workspace's files: stdout longer than the old one (no shrink to notice), stderr replaced by a new file.
    const newOut = Buffer.from('new run line\n'.repeat(40));
    await writeFile(files.stdout, newOut);
    await rm(files.stderr);
    await writeFile(files.stderr, 'e\n');
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    expect(shipper.status(agentId)?.closedSeq).toBeNull();
    await settle(shipper, agentId);

    const fresh = link.chunks.filter((c) => c.seq > oldLast);
    expectContiguous(fresh, oldLast + 1);
    expect(streamBytes(fresh, 'stdout').equals(newOut)).toBe(true);
    expect(streamBytes(fresh, 'stderr').toString()).toBe('e\n');
    shipper.runEnded(agentId);
    await shipper.pass();
    expect(link.closes.at(-1)).toEqual({ agentId, lastSeq: shipper.status(agentId)?.lastSeq });
  });
});

describe('LogShipper limit and removal', () => {
  it('stops capturing at the limit with one system note, also after a restart', async () => {
    const agentId = randomUUID();
    const warnings: string[] = [];
    const log = createLogger({ level: 'warn', sink: (line) => warnings.push(line) });
    const shipper = newShipper({ limitBytes: 1000, log });
    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    const out = noise(1200);
    await appendFile(files.stdout, out.subarray(0, 600));
    await shipper.pass();
    await appendFile(files.stdout, out.subarray(600));
    await appendFile(files.stderr, 'an error\n');
    await shipper.pass();

    const chunks = link.chunks;
    expectContiguous(chunks, 1);
    const notes = chunks.filter((c) => c.stream === 'system');
    expect(notes.length).toBe(1);
    expect(notes[0]?.data.toString()).toContain('1000');
    expect(chunks.at(-1)?.stream).toBe('system');
    expect(streamBytes(chunks, 'stdout').equals(out.subarray(0, 1000))).toBe(true);
    expect(streamBytes(chunks, 'stderr').length).toBe(0);
    expect(shipper.status(agentId)?.limitReached).toBe(true);
    expect(warnings.some((w) => w.includes('logs.limit_reached'))).toBe(true);

    await appendFile(files.stdout, 'more\n');
    await appendFile(files.stderr, 'more errors\n');
    await shipper.pass();
    await shipper.pass();
    expect(link.chunks.length).toBe(chunks.length);
    await shipper.stop();

    const second = newShipper({ limitBytes: 1000 });
    await second.start();
    expect(second.status(agentId)?.limitReached).toBe(true);
    const link2 = new RecordingLink();
    second.connected(link2);
    await second.runStarting(agentId, { files, secrets: [] }, { fresh: false });
    await appendFile(files.stdout, 'even more\n');
    await second.pass();
    // A fresh run does not lift the limit either.
    await second.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await second.pass();
    expect(second.status(agentId)).toMatchObject({ lastSeq: chunks.length, limitReached: true });
    expect(link2.seqs()).toEqual(chunks.map((c) => c.seq));
    second.runEnded(agentId);
    await second.pass();
    expect(link2.closes).toEqual([{ agentId, lastSeq: chunks.length }]);
  });

  it('a broker that dies right after reaching the limit does not capture again or repeat the note', async () => {
    const agentId = randomUUID();
    const first = newShipper({ limitBytes: 100 });
    await first.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await appendFile(files.stdout, 'x'.repeat(50));
    await first.pass();
    await appendFile(files.stdout, 'y'.repeat(80));
    await first.pass();
    expect(first.status(agentId)).toMatchObject({ lastSeq: 3, limitReached: true });

    // No stop(): the process died within the checkpoint interval.
    const second = newShipper({ limitBytes: 100 });
    await second.start();
    expect(second.status(agentId)).toMatchObject({ lastSeq: 3, limitReached: true });
    await second.runStarting(agentId, { files, secrets: [] }, { fresh: false });
    await appendFile(files.stdout, 'z'.repeat(10));
    await second.pass();
    const link = new RecordingLink();
    second.connected(link);
    await second.pass();
    expect(link.chunks.map((c) => c.stream)).toEqual(['stdout', 'stdout', 'system']);
  });

  it('removed() deletes the spool once the hub acknowledged everything, not before', async () => {
    const agentId = randomUUID();
    const shipper = newShipper();
    const spoolDir = join(root, 'logs', agentId);
    await shipper.runStarting(agentId, { files, secrets: [] }, { fresh: true });
    await appendFile(files.stdout, 'one\n');
    await shipper.pass();
    await appendFile(files.stdout, 'two\n');
    shipper.removed(agentId);
    await shipper.pass();
    // Nothing was shipped yet (no link): the spool stays.
    expect((await stat(spoolDir)).isDirectory()).toBe(true);

    const link = new RecordingLink();
    shipper.connected(link);
    await shipper.pass();
    expect(link.chunks.map((c) => c.data.toString())).toEqual(['one\n', 'two\n']);
    expect(link.closes).toEqual([{ agentId, lastSeq: 2 }]);
    shipper.acked(agentId, 1);
    await shipper.pass();
    expect((await stat(spoolDir)).isDirectory()).toBe(true);

    shipper.acked(agentId, 2);
    await shipper.pass();
    await expect(stat(spoolDir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(shipper.status(agentId)).toBeNull();
  });
});
