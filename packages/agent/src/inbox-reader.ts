import { open, readFile, rename, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';

/** One message the broker appended to the agent's inbox. */
export interface InboxMessage {
  at: string;
  text: string;
}

/** Where the read position of an inbox is remembered between graft-agent runs. */
export const offsetFileOf = (inbox: string): string => `${inbox}.offset`;

async function readOffset(file: string): Promise<number> {
  try {
    const n = Number((await readFile(file, 'utf8')).trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

async function writeOffset(file: string, offset: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${offset}\n`);
  await rename(tmp, file);
}

function parseLine(line: string): InboxMessage {
  try {
    const v = JSON.parse(line) as Partial<InboxMessage>;
    if (typeof v.text === 'string') return { at: typeof v.at === 'string' ? v.at : '', text: v.text };
  } catch {
    // A line not written by the broker is still shown, verbatim.
  }
  return { at: '', text: line };
}

/**
 * The messages appended since the last read, advancing the remembered offset past them. Only
 * complete lines count: a line the broker is still writing is left for the next read. A missing
 * inbox has no messages; an inbox shorter than the offset (recreated) is read from the start.
 * The offset lives in `offsetFile` (GRAFT_INBOX_OFFSET where the inbox itself is read-only).
 */
export async function readNewMessages(inbox: string, offsetFile = offsetFileOf(inbox)): Promise<InboxMessage[]> {
  let offset = await readOffset(offsetFile);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(inbox, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  let chunk: Buffer;
  try {
    const { size } = await fh.stat();
    if (size < offset) offset = 0;
    chunk = Buffer.alloc(size - offset);
    const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset);
    chunk = chunk.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const end = chunk.lastIndexOf(0x0a);
  if (end < 0) return [];
  const lines = chunk.subarray(0, end).toString('utf8').split('\n');
  await writeOffset(offsetFile, offset + end + 1);
  return lines.filter((l) => l.trim() !== '').map(parseLine);
}

/** Waits until at least one new message arrives (polling), or `timeoutMs` passes (then resolves []). */
export async function waitForMessages(inbox: string, timeoutMs: number, pollMs = 200, offsetFile = offsetFileOf(inbox)): Promise<InboxMessage[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await readNewMessages(inbox, offsetFile);
    if (got.length > 0) return got;
    const left = deadline - Date.now();
    if (left <= 0) return [];
    await delay(Math.min(pollMs, left));
  }
}
