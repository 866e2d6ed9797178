import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogChunk, encodeLogChunk } from '@graft/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentLogSpool } from './agent-log-spool.js';

/** u32 frame length + u64 stdout offset + u64 stderr offset around each frame. */
const RECORD_OVERHEAD = 4 + 8 + 8;

let root: string;
let dir: string;
const agentId = randomUUID();

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'graft-spool-'));
  dir = join(root, agentId);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Size a record of `data` takes in spool.bin, computed from the wire frame, not from the spool. */
function recordSize(data: Buffer): number {
  return encodeLogChunk({ agentId, stream: 'stdout', seq: 1, at: 0, data }).length + RECORD_OVERHEAD;
}

describe('AgentLogSpool', () => {
  it('numbers appended chunks 1, 2, 3 and reads them back in order with the offsets where each record ends', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    expect(spool.nextSeq).toBe(1);
    expect(spool.lastSeq).toBe(0);
    expect(spool.end).toBe(0);
    const payloads = [Buffer.from('first line\n'), Buffer.from('oops\n'), Buffer.alloc(5000, 0x61)];
    const streams = ['stdout', 'stderr', 'stdout'] as const;
    const chunks = [];
    for (let i = 0; i < payloads.length; i++) {
      chunks.push(await spool.append(streams[i] ?? 'stdout', payloads[i] as Buffer, { stdout: 10 * (i + 1), stderr: i }, 1_700_000_000_000 + i));
    }
    expect(chunks.map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(spool.lastSeq).toBe(3);
    expect(spool.nextSeq).toBe(4);
    expect(spool.sources).toEqual({ stdout: 30, stderr: 2 });
    expect(spool.dataBytes).toBe(payloads.reduce((n, p) => n + p.length, 0));

    const ends: number[] = [];
    let at = 0;
    for (const p of payloads) {
      at += recordSize(p);
      ends.push(at);
    }
    expect(spool.end).toBe(at);
    expect((await stat(join(dir, 'spool.bin'))).size).toBe(at);

    const records = await spool.readFrom(0, 1024 * 1024);
    expect(records.map((r) => r.end)).toEqual(ends);
    records.forEach((r, i) => {
      expect(r.chunk).toEqual({ agentId, stream: streams[i], seq: i + 1, at: 1_700_000_000_000 + i, data: payloads[i] });
      // The frame is what goes over the tunnel: it decodes to the same chunk.
      const decoded = decodeLogChunk(r.frame);
      expect(decoded.ok && decoded.chunk).toEqual(r.chunk);
    });

    // From the middle, and with a budget smaller than one record: at least one record, never a partial one.
    expect((await spool.readFrom(ends[0] as number, 1024 * 1024)).map((r) => r.chunk.seq)).toEqual([2, 3]);
    expect((await spool.readFrom(ends[1] as number, 10)).map((r) => r.chunk.seq)).toEqual([3]);
    expect((await spool.readFrom(0, ends[1] as number)).map((r) => r.chunk.seq)).toEqual([1, 2]);
    expect(await spool.readFrom(at, 1024 * 1024)).toEqual([]);
  });

  it('does not count system notes as output bytes', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('12345'), { stdout: 5, stderr: 0 });
    await spool.append('system', Buffer.from('a platform note'), { stdout: 5, stderr: 0 });
    expect(spool.dataBytes).toBe(5);
    expect(spool.lastSeq).toBe(2);
  });

  it('restores acknowledgement, counters, sources, limit and close from the checkpoint', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('one\n'), { stdout: 4, stderr: 0 });
    await spool.append('stderr', Buffer.from('two\n'), { stdout: 4, stderr: 4 });
    const records = await spool.readFrom(0, 1 << 20);
    spool.ack(1, records[0]?.end as number);
    // An older acknowledgement never moves it back.
    spool.ack(0, 0);
    spool.markLimitReached();
    spool.setClosed(2);
    await spool.saveState();

    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.acked).toBe(1);
    expect(again.ackedOffset).toBe(records[0]?.end);
    expect(again.nextSeq).toBe(3);
    expect(again.sources).toEqual({ stdout: 4, stderr: 4 });
    expect(again.dataBytes).toBe(8);
    expect(again.limitReached).toBe(true);
    expect(again.closedSeq).toBe(2);
    expect(again.end).toBe(records[1]?.end);
    // What is after the acknowledgement is still there to resend.
    expect((await again.readFrom(again.ackedOffset, 1 << 20)).map((r) => r.chunk.data.toString())).toEqual(['two\n']);
    expect((await again.append('stdout', Buffer.from('three\n'), { stdout: 10, stderr: 4 })).seq).toBe(3);
  });

  it('recovers records appended after the last checkpoint by scanning the spool', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('checkpointed\n'), { stdout: 13, stderr: 0 });
    await spool.saveState();
    // The broker dies after these appends and before the next checkpoint.
    await spool.append('stderr', Buffer.from('after 1\n'), { stdout: 13, stderr: 8 });
    await spool.append('stdout', Buffer.from('after 2\n'), { stdout: 21, stderr: 8 });
    const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { nextSeq: number };
    expect(state.nextSeq).toBe(2);

    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.nextSeq).toBe(4);
    expect(again.sources).toEqual({ stdout: 21, stderr: 8 });
    expect(again.dataBytes).toBe(13 + 8 + 8);
    expect(again.end).toBe(spool.end);
    expect((await again.append('stdout', Buffer.from('x'), { stdout: 22, stderr: 8 })).seq).toBe(4);
  });

  it('forgets a checkpointed close when records after it show that a new run began', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('run 1\n'), { stdout: 6, stderr: 0 });
    spool.setClosed(1);
    await spool.saveState();
    // Run 2 starts and writes; the broker dies before the next checkpoint.
    spool.setClosed(null);
    await spool.append('stdout', Buffer.from('run 2\n'), { stdout: 12, stderr: 0 });
    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.nextSeq).toBe(3);
    expect(again.closedSeq).toBeNull();

    // A close with nothing after it survives.
    again.setClosed(2);
    await again.saveState();
    expect((await AgentLogSpool.open(agentId, dir)).closedSeq).toBe(2);
  });

  it('reads the same records from a reopened spool (from the file) as from the one that wrote them', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    for (let i = 0; i < 6; i++) await spool.append(i % 2 ? 'stderr' : 'stdout', Buffer.alloc(100_000 + i, 0x30 + i), { stdout: i, stderr: i });
    const fromMemory = await spool.readFrom(0, 1 << 30);
    await spool.close();
    const again = await AgentLogSpool.open(agentId, dir);
    const fromFile = await again.readFrom(0, 1 << 30);
    expect(fromFile.length).toBe(6);
    expect(fromFile.map((r) => [r.chunk.seq, r.chunk.stream, r.end, r.frame.equals((fromMemory[r.chunk.seq - 1] as { frame: Buffer }).frame)])).toEqual(
      fromMemory.map((r) => [r.chunk.seq, r.chunk.stream, r.end, true]),
    );
    // A budget of about two records: never a partial record, and at least one.
    const some = await again.readFrom(fromFile[1]?.end as number, 250_000);
    expect(some.length).toBeGreaterThanOrEqual(1);
    expect(some.map((r) => r.chunk.seq)).toEqual(some.map((_, i) => 3 + i));
    expect((await again.readFrom(fromFile[4]?.end as number, 1)).map((r) => r.chunk.seq)).toEqual([6]);
  });

  it('recovers a spool that never had a checkpoint', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('a'), { stdout: 1, stderr: 0 });
    await spool.append('stdout', Buffer.from('bc'), { stdout: 3, stderr: 0 });
    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.nextSeq).toBe(3);
    expect(again.sources).toEqual({ stdout: 3, stderr: 0 });
    expect(again.dataBytes).toBe(3);
    expect(again.acked).toBe(0);
  });

  it('cuts off a torn trailing record, and the next append reuses its sequence number', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('kept\n'), { stdout: 5, stderr: 0 });
    await spool.saveState();
    await spool.append('stdout', Buffer.from('also kept\n'), { stdout: 15, stderr: 0 });
    const intact = spool.end;
    await spool.append('stderr', Buffer.from('torn by a crash\n'), { stdout: 15, stderr: 16 });
    // The broker died in the middle of writing the last record.
    await truncate(join(dir, 'spool.bin'), spool.end - 7);

    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.end).toBe(intact);
    expect((await stat(join(dir, 'spool.bin'))).size).toBe(intact);
    expect(again.nextSeq).toBe(3);
    // Capture resumes where the last intact record says, so the torn record's bytes are read again.
    expect(again.sources).toEqual({ stdout: 15, stderr: 0 });
    expect(again.dataBytes).toBe(15);
    const chunk = await again.append('stderr', Buffer.from('torn by a crash\n'), { stdout: 15, stderr: 16 });
    expect(chunk.seq).toBe(3);
    const records = await again.readFrom(0, 1 << 20);
    expect(records.map((r) => [r.chunk.seq, r.chunk.data.toString()])).toEqual([
      [1, 'kept\n'],
      [2, 'also kept\n'],
      [3, 'torn by a crash\n'],
    ]);
    expect(records.at(-1)?.end).toBe(again.end);
  });

  it('cuts off a torn record even when only part of its length prefix was written', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('kept\n'), { stdout: 5, stderr: 0 });
    const intact = spool.end;
    await spool.append('stdout', Buffer.from('lost\n'), { stdout: 10, stderr: 0 });
    await truncate(join(dir, 'spool.bin'), intact + 2);
    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.end).toBe(intact);
    expect(again.nextSeq).toBe(2);
    expect(again.sources).toEqual({ stdout: 5, stderr: 0 });
  });

  it('resetSources starts capture offsets at zero, also after a reopen, without touching the numbering', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('old run\n'), { stdout: 8, stderr: 3 });
    spool.resetSources();
    expect(spool.sources).toEqual({ stdout: 0, stderr: 0 });
    await spool.saveState();
    const again = await AgentLogSpool.open(agentId, dir);
    expect(again.sources).toEqual({ stdout: 0, stderr: 0 });
    expect(again.nextSeq).toBe(2);
    expect(again.dataBytes).toBe(8);
    await again.append('stdout', Buffer.from('new\n'), { stdout: 4, stderr: 0 });
    const third = await AgentLogSpool.open(agentId, dir);
    expect(third.sources).toEqual({ stdout: 4, stderr: 0 });
    expect(third.nextSeq).toBe(3);
  });

  it('destroy removes the spool directory', async () => {
    const spool = await AgentLogSpool.open(agentId, dir);
    await spool.append('stdout', Buffer.from('x'), { stdout: 1, stderr: 0 });
    await spool.saveState();
    await spool.destroy();
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
