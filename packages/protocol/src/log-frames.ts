import { z } from 'zod';

/** Which output of an agent a chunk holds; `system` carries the platform's own notes (a spool limit reached). */
export const LogStream = z.enum(['stdout', 'stderr', 'system']);
/** Which output of an agent a chunk holds. */
export type LogStream = z.infer<typeof LogStream>;

/** One piece of an agent's output as it travels from broker to hub: sequence numbers are per agent, from 1, without gaps. */
export interface LogChunk {
  agentId: string;
  stream: LogStream;
  /** Per-agent sequence number: 1, 2, 3, … in the order the broker captured the bytes. */
  seq: number;
  /** When the broker captured the bytes (ms since the epoch). */
  at: number;
  data: Buffer;
}

/** First byte of a binary tunnel frame: what follows. */
export const BinaryFrameKind = { logChunk: 1, terminal: 2 } as const;

/** kind u8 | stream u8 | agent id 16 bytes | seq u64 BE | at u64 BE (ms) | data */
const HEADER_BYTES = 1 + 1 + 16 + 8 + 8;
const STREAM_CODES: Record<LogStream, number> = { stdout: 1, stderr: 2, system: 3 };
const STREAM_OF = new Map(Object.entries(STREAM_CODES).map(([name, code]) => [code, name as LogStream]));
/** Largest data a single chunk may carry; the broker splits bigger reads. */
export const MAX_LOG_CHUNK_BYTES = 256 * 1024;

function uuidBytes(id: string): Buffer {
  const hex = id.replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not a UUID: ${id}`);
  return Buffer.from(hex, 'hex');
}

function uuidOf(bytes: Buffer): string {
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The binary tunnel frame of a log chunk (never base64 in JSON: DESIGN §4). */
export function encodeLogChunk(chunk: LogChunk): Buffer {
  if (chunk.data.length > MAX_LOG_CHUNK_BYTES) throw new RangeError(`log chunk of ${chunk.data.length} bytes exceeds ${MAX_LOG_CHUNK_BYTES}`);
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt8(BinaryFrameKind.logChunk, 0);
  header.writeUInt8(STREAM_CODES[chunk.stream], 1);
  uuidBytes(chunk.agentId).copy(header, 2);
  header.writeBigUInt64BE(BigInt(chunk.seq), 18);
  header.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(chunk.at))), 26);
  return Buffer.concat([header, chunk.data]);
}

/** Decodes a binary tunnel frame; a reason instead of throwing on anything malformed. */
export function decodeLogChunk(frame: Buffer): { ok: true; chunk: LogChunk } | { ok: false; reason: string } {
  if (frame.length < HEADER_BYTES) return { ok: false, reason: `binary frame of ${frame.length} bytes is shorter than the ${HEADER_BYTES}-byte header` };
  if (frame.readUInt8(0) !== BinaryFrameKind.logChunk) return { ok: false, reason: `unknown binary frame kind ${frame.readUInt8(0)}` };
  const stream = STREAM_OF.get(frame.readUInt8(1));
  if (stream === undefined) return { ok: false, reason: `unknown log stream code ${frame.readUInt8(1)}` };
  const seq = frame.readBigUInt64BE(18);
  if (seq < 1n || seq > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: `log sequence ${seq} out of range` };
  const data = frame.subarray(HEADER_BYTES);
  if (data.length > MAX_LOG_CHUNK_BYTES) return { ok: false, reason: `log chunk of ${data.length} bytes exceeds ${MAX_LOG_CHUNK_BYTES}` };
  return { ok: true, chunk: { agentId: uuidOf(frame.subarray(2, 18)), stream, seq: Number(seq), at: Number(frame.readBigUInt64BE(26)), data } };
}

/** A log chunk as JSON for readers (`GET /agents/:id/logs` over SSE and WebSocket): data as UTF-8 text. */
export const LogChunkJson = z.object({ seq: z.number().int().min(1), stream: LogStream, at: z.string(), data: z.string() });
/** A log chunk as JSON for readers. */
export type LogChunkJson = z.infer<typeof LogChunkJson>;

/** `GET /agents/:id/logs` query. */
export const LogsQuery = z.object({
  tail: z.coerce.number().int().min(0).max(1_000_000).optional().describe('only the last N lines'),
  since: z.coerce.number().int().min(0).optional().describe('only chunks with a sequence number above this'),
  stream: LogStream.exclude(['system']).optional().describe('only this stream (platform notes are always included)'),
  follow: z.enum(['0', '1', 'true', 'false']).optional().describe('keep the response open and stream new output'),
});
/** `GET /agents/:id/logs` query. */
export type LogsQuery = z.infer<typeof LogsQuery>;
