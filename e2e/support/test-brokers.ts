import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegisterBrokerRequest } from '@graft/protocol';
import { type BrokerProcess, type JoinedBroker, registerAndJoinBroker, startBrokerProcess } from '@graft/testkit';
import { killLeftoverAgents } from './agent-processes.js';

/** One broker node of a test: its hub identity, data dir and current process. */
export interface TestBroker {
  brokerId: string;
  name: string;
  dataDir: string;
  credentials: JoinedBroker;
  /** The running process (replaced by {@link TestBrokers.restart}). */
  proc: BrokerProcess;
  env: Record<string, string>;
}

/** Options of {@link TestBrokers.add}. */
export interface AddBrokerOptions {
  register?: Omit<RegisterBrokerRequest, 'name'>;
  /** GRAFT_BROKER_MAX_AGENTS, also announced at join. */
  maxAgents?: number;
  env?: Record<string, string>;
}

/**
 * The broker daemons of one test file, as real processes: registered and joined over the hub's
 * API, started on temp data dirs, restarted on the same dir, and cleaned up with everything their
 * agents left running (agents are detached process groups that outlive the broker).
 */
export class TestBrokers {
  readonly all: TestBroker[] = [];
  private readonly dataDirs: string[] = [];
  /** Appears in every agent command of the file, so leftovers can be found and killed. */
  readonly marker = `graft-e2e-${randomBytes(6).toString('hex')}`;

  constructor(
    private readonly hubUrl: string,
    private readonly adminToken: string,
  ) {}

  /** Registers, joins and starts a broker; resolves once its tunnel is up. */
  async add(name: string, options: AddBrokerOptions = {}): Promise<TestBroker> {
    const credentials = await registerAndJoinBroker(
      this.hubUrl,
      this.adminToken,
      { name, ...options.register },
      options.maxAgents ? { maxAgents: options.maxAgents } : {},
    );
    const dataDir = mkdtempSync(join(tmpdir(), `graft-e2e-broker-${name}-`));
    this.dataDirs.push(dataDir);
    const env = { ...(options.maxAgents ? { GRAFT_BROKER_MAX_AGENTS: String(options.maxAgents) } : {}), GRAFT_BROKER_HOSTNAME: name, ...options.env };
    const proc = await startBrokerProcess({ dataDir, credentials, env });
    const entry: TestBroker = { brokerId: credentials.brokerId, name, dataDir, credentials, env, proc };
    this.all.push(entry);
    await proc.waitForLog((l) => l.event === 'tunnel.connected');
    return entry;
  }

  /** Starts the broker again on its data dir (its credentials file is already there); does not wait for the tunnel. */
  async restart(b: TestBroker): Promise<BrokerProcess> {
    await b.proc.stop('SIGKILL');
    b.proc = await startBrokerProcess({ dataDir: b.dataDir, env: b.env });
    return b.proc;
  }

  /** Stops every broker by its PID, kills the agents they left, removes their data dirs. */
  async cleanup(): Promise<void> {
    await Promise.all(this.all.map((b) => b.proc.stop('SIGKILL').catch(() => {})));
    killLeftoverAgents(this.marker, this.dataDirs);
    for (const dir of this.dataDirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** What a broker's local API lists. */
export interface LocalAgent {
  agentId: string;
  generation: number;
  phase: string;
  detail: string | null;
  exitCode: number | null;
  desiredState: string;
  name: string;
}

/** `GET /api/v1/agents` on a broker's local API. */
export async function localAgents(b: TestBroker): Promise<LocalAgent[]> {
  const res = await fetch(`${b.proc.url}/api/v1/agents`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`broker ${b.name} local API answered ${res.status}`);
  return ((await res.json()) as { items: LocalAgent[] }).items;
}
