/** One frame of a multiplexed container stream: which stream wrote it and what. */
export interface DockerFrame {
  stream: 'stdin' | 'stdout' | 'stderr';
  data: Buffer;
}

const HEADER_BYTES = 8;
const STREAMS = ['stdin', 'stdout', 'stderr'] as const;

/**
 * Decodes the Docker API's multiplexed stdout/stderr format (logs and exec of a container without a
 * TTY): each frame is an 8-byte header (stream type, three zero bytes, big-endian payload length) and
 * its payload. Frames keep the order the engine wrote them in, so stdout and stderr stay interleaved.
 * Chunks may split frames anywhere; a partial frame waits for the next chunk.
 */
export class DockerFrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): DockerFrame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: DockerFrame[] = [];
    let offset = 0;
    while (this.pending.length - offset >= HEADER_BYTES) {
      const size = this.pending.readUInt32BE(offset + 4);
      if (this.pending.length - offset - HEADER_BYTES < size) break;
      const stream = STREAMS[this.pending[offset] ?? 1] ?? 'stdout';
      frames.push({ stream, data: this.pending.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + size) });
      offset += HEADER_BYTES + size;
    }
    this.pending = this.pending.subarray(offset);
    return frames;
  }
}
