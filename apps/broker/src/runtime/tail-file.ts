import { appendFile, open } from 'node:fs/promises';
import { join } from 'node:path';

/** How much of the end of a log tailFile reads: enough for error details, bounded whatever the log's size. */
const TAIL_BYTES = 64 * 1024;

/** The last `lines` complete lines of the file at `path` (within its last 64 KiB); '' when it does not exist. */
export async function tailFile(path: string, lines: number): Promise<string> {
  if (lines <= 0) return '';
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return '';
    throw err;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, size - length);
    let text = buffer.subarray(0, bytesRead).toString('utf8');
    // A read that starts mid-file starts mid-line (and maybe mid-character): drop that partial line.
    if (length < size) text = text.slice(text.indexOf('\n') + 1);
    if (text.endsWith('\n')) text = text.slice(0, -1);
    if (text === '') return '';
    return text.split('\n').slice(-lines).join('\n');
  } finally {
    await handle.close();
  }
}

/** The files every runtime appends an agent's output to, in its agent directory: one per stream. */
export const OUTPUT_FILES = { stdout: 'stdout.log', stderr: 'stderr.log' } as const;

/** The output files in an agent directory. */
export function outputFilesIn(agentDir: string): { stdout: string; stderr: string } {
  return { stdout: join(agentDir, OUTPUT_FILES.stdout), stderr: join(agentDir, OUTPUT_FILES.stderr) };
}

/** Appends a message to the inbox in an agent directory, as one JSON line (in place: a sandbox or container sees the same file through its bind mount). */
export async function appendInboxMessage(agentDir: string, message: string): Promise<void> {
  await appendFile(join(agentDir, 'inbox.jsonl'), `${JSON.stringify({ at: new Date().toISOString(), text: message })}\n`);
}

/**
 * The last `lines` lines of an agent's output for error details: the last lines of stdout, then
 * those of stderr (the streams live in separate files, so their relative order is not known here).
 */
export async function tailOutput(files: { stdout: string; stderr: string }, lines: number): Promise<string> {
  if (lines <= 0) return '';
  const parts = (await Promise.all([tailFile(files.stdout, lines), tailFile(files.stderr, lines)])).filter((t) => t !== '');
  if (parts.length === 0) return '';
  return parts.join('\n').split('\n').slice(-lines).join('\n');
}
