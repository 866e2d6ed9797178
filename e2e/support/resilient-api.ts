import { type GraftClient, GraftApiError } from '@graft/client';
import type { Agent, CreateAgentRequest } from '@graft/protocol';

/** Failures seen while retrying through a fault, by kind (`network_error`, `502`, `503 unavailable`, …). */
export class FailureTally {
  readonly counts = new Map<string, number>();

  add(err: unknown): void {
    const key = err instanceof GraftApiError ? (err.status === 0 ? err.code : `${err.status} ${err.code}`) : String(err);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  get total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  toString(): string {
    return [...this.counts].map(([k, n]) => `${k}: ${n}`).join(', ') || 'none';
  }
}

/** An error a later attempt may not see: no connection, a replica dying behind the balancer, a store restarting. */
export function isTransient(err: unknown): boolean {
  return err instanceof GraftApiError && (err.status === 0 || err.status >= 500 || err.status === 429);
}

/** Runs `call` until it succeeds or fails for good; transient failures are tallied and retried until `deadline`. */
export async function retrying<T>(call: () => Promise<T>, tally: FailureTally, deadline = Date.now() + 60_000): Promise<T> {
  for (let pause = 100; ; pause = Math.min(pause * 2, 1_000)) {
    try {
      return await call();
    } catch (err) {
      if (!isTransient(err) || Date.now() > deadline) throw err;
      tally.add(err);
    }
    await new Promise((r) => setTimeout(r, pause));
  }
}

/** How a create ended: the agent in hand, or a name conflict from an earlier attempt that did go through. */
export type CreateOutcome = { kind: 'created'; agent: Agent } | { kind: 'existed' };

/**
 * Creates an agent, retrying transient failures. The API has no idempotency key, but agent names
 * are unique per project: a retry after a lost answer gets 409 `conflict` (details.field `name`),
 * which means an earlier attempt created it, so a retry never makes a duplicate. The caller finds
 * such agents by name in the project's list.
 */
export async function createAgentOnce(client: GraftClient, body: CreateAgentRequest, tally: FailureTally, deadline?: number): Promise<CreateOutcome> {
  let attempts = 0;
  try {
    return {
      kind: 'created',
      agent: await retrying(
        () => {
          attempts++;
          return client.createAgent(body);
        },
        tally,
        deadline,
      ),
    };
  } catch (err) {
    const byName = err instanceof GraftApiError && err.code === 'conflict' && (err.details as { field?: string } | undefined)?.field === 'name';
    if (byName && attempts > 1) return { kind: 'existed' };
    throw err;
  }
}

/** Every agent of a project, page by page (the largest page the API allows). */
export async function listProjectAgents(client: GraftClient, projectId: string, tally: FailureTally): Promise<Agent[]> {
  const all: Agent[] = [];
  let cursor: string | undefined;
  do {
    const page = await retrying(() => client.listAgents({ projectId, limit: 500, ...(cursor ? { cursor } : {}) }), tally);
    all.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return all;
}
