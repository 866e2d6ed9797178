/** An agent's whole log as one SSE reader saw it, to its `end` event. */
export interface AgentLog {
  stdout: string;
  stderr: string;
  /** The platform's own notes (stream `system`), in order. */
  system: string[];
  /** Every sequence number received, in arrival order. */
  seqs: number[];
  /** Times the stream had to be resumed with Last-Event-ID. */
  reconnects: number;
}

/**
 * Reads an agent's log over SSE from the start until the hub sends `event: end` (the broker closed
 * the log and every chunk was stored), resuming with Last-Event-ID after a dropped connection or a
 * 5xx (a replica behind the balancer may die meanwhile). Throws when the end does not come within
 * `timeoutMs`; the caller compares the text with what the agent printed.
 */
export async function readAgentLog(baseUrl: string, token: string, agentId: string, timeoutMs = 30_000): Promise<AgentLog> {
  const log: AgentLog = { stdout: '', stderr: '', system: [], seqs: [], reconnects: 0 };
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${baseUrl}/api/v1/agents/${agentId}/logs`, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...(last > 0 ? { 'last-event-id': String(last) } : {}) },
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}: ${await res.text()}`);
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(piece, { stream: true });
        for (let sep = buffered.indexOf('\n\n'); sep >= 0; sep = buffered.indexOf('\n\n')) {
          const event = buffered.slice(0, sep);
          buffered = buffered.slice(sep + 2);
          if (event.startsWith('event: end')) return log;
          const data = /^data: (.*)$/m.exec(event)?.[1];
          if (!event.includes('event: log') || !data) continue;
          const chunk = JSON.parse(data) as { seq: number; stream: 'stdout' | 'stderr' | 'system'; data: string };
          log.seqs.push(chunk.seq);
          last = chunk.seq;
          if (chunk.stream === 'system') log.system.push(chunk.data);
          else log[chunk.stream] += chunk.data;
        }
      }
      lastError = 'the stream closed before its end event';
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    log.reconnects++;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the log of agent ${agentId} did not end within ${timeoutMs} ms (last: ${lastError}); got ${log.seqs.length} chunks, stdout ${JSON.stringify(log.stdout.slice(-200))}`);
}

/** Whether sequence numbers are 1, 2, 3, … with none missing or repeated. */
export function contiguous(seqs: readonly number[]): boolean {
  return seqs.every((s, i) => s === i + 1);
}
