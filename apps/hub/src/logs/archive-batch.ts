import { decodeLogChunk, encodeLogChunk, type LogChunk } from '@graft/protocol';

/** Archive object of an agent's chunks `from`..`to`: `<projectId>/<agentId>/<from>-<to>.log`, zero-padded so keys sort by sequence. */
export function archiveKey(projectId: string, agentId: string, from: number, to: number): string {
  return `${projectId}/${agentId}/${String(from).padStart(12, '0')}-${String(to).padStart(12, '0')}.log`;
}

/** The sequence range an archive key covers; null for a key that is not an archive batch. */
export function archiveRange(key: string): { from: number; to: number } | null {
  const m = /\/(\d{12})-(\d{12})\.log$/.exec(key);
  return m?.[1] && m[2] ? { from: Number(m[1]), to: Number(m[2]) } : null;
}

/** One archive object: each chunk as its tunnel frame (stream, seq, time, bytes), length-prefixed. */
export function encodeArchiveBatch(chunks: readonly LogChunk[]): Buffer {
  const parts: Buffer[] = [];
  for (const c of chunks) {
    const frame = encodeLogChunk(c);
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(frame.length, 0);
    parts.push(len, frame);
  }
  return Buffer.concat(parts);
}

/** The chunks of an archive object; throws on a damaged one (never guesses). */
export function decodeArchiveBatch(data: Buffer): LogChunk[] {
  const chunks: LogChunk[] = [];
  let pos = 0;
  while (pos < data.length) {
    if (pos + 4 > data.length) throw new Error('archive batch is truncated');
    const len = data.readUInt32BE(pos);
    const frame = data.subarray(pos + 4, pos + 4 + len);
    if (frame.length !== len) throw new Error('archive batch is truncated');
    const decoded = decodeLogChunk(frame);
    if (!decoded.ok) throw new Error(`archive batch holds a bad chunk: ${decoded.reason}`);
    chunks.push(decoded.chunk);
    pos += 4 + len;
  }
  return chunks;
}
