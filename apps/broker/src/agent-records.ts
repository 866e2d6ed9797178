import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentSpec, DesiredAgent, Phase } from '@graft/protocol';
import { z } from 'zod';

/** What the broker remembers of one agent across its own restarts. */
export const AgentRecord = z.object({
  agentId: z.string(),
  /** The newest generation this broker acted on. */
  generation: z.number().int(),
  desired: DesiredAgent.shape.desiredState,
  spec: DesiredAgent.shape.spec,
  phase: Phase,
  detail: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  /**
   * Whether this generation's action reached its target (running, stopped or suspended). A record
   * of the same generation that has not may have been cut short by a broker restart and is redone;
   * one that has is never run again, even if its run has ended since.
   */
  acted: z.boolean().default(true),
});
/** What the broker remembers of one agent. */
export type AgentRecord = z.infer<typeof AgentRecord>;

/** Fields a caller may set on a new record. */
export interface NewAgentRecord {
  agentId: string;
  generation: number;
  desired: AgentRecord['desired'];
  spec: AgentSpec;
}

/**
 * Agent records, one JSON file each under `<data dir>/agents-state/`, written atomically (temp file +
 * rename), so a broker killed at any point restarts with every record whole.
 */
export class AgentRecords {
  private readonly dir: string;
  private readonly records = new Map<string, AgentRecord>();

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'agents-state');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) {
        rmSync(join(this.dir, name), { force: true });
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(readFileSync(join(this.dir, name), 'utf8'));
      } catch {
        continue; // Unreadable: the agent is then unknown here, and the hub's desired set decides.
      }
      const parsed = AgentRecord.safeParse(json);
      if (parsed.success) this.records.set(parsed.data.agentId, parsed.data);
    }
  }

  /** The record of one agent, if any. */
  get(agentId: string): AgentRecord | undefined {
    return this.records.get(agentId);
  }

  /** Every record. */
  all(): AgentRecord[] {
    return [...this.records.values()];
  }

  /**
   * Keeps a record in memory and, unless `durable` is false, writes it to disk. Passing phases
   * (provisioning, starting, stopping) need not be durable: a restart that finds the previous
   * durable phase redoes the step anyway, and skipping them halves the writes per start.
   */
  put(record: AgentRecord, durable = true): AgentRecord {
    if (!durable) {
      this.records.set(record.agentId, record);
      return record;
    }
    const file = join(this.dir, `${record.agentId}.json`);
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, JSON.stringify(record), { mode: 0o600 });
    renameSync(tmp, file);
    this.records.set(record.agentId, record);
    return record;
  }

  /** Forgets an agent. */
  delete(agentId: string): void {
    rmSync(join(this.dir, `${agentId}.json`), { force: true });
    this.records.delete(agentId);
  }
}
