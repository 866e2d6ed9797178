import { randomUUID } from 'node:crypto';
import type { TunnelMesh } from './tunnel-mesh.js';

/** What in-process meshes share: one per process, so several replicas in one process (tests) see each other. */
export class InProcessMeshNetwork {
  readonly owners = new Map<string, { replicaId: string; expiresAt: number }>();
  readonly members = new Map<string, (frame: Buffer) => void>();
}

/**
 * Adapter for single-node mode: the one replica holds every tunnel, so routing never leaves the
 * process. Replicas built on one shared network behave like a cluster (the contract suite uses that).
 */
export class InProcessTunnelMesh implements TunnelMesh {
  readonly replicaId: string;
  private closed = false;

  constructor(
    private readonly network: InProcessMeshNetwork = new InProcessMeshNetwork(),
    options: { replicaId?: string; now?: () => number } = {},
  ) {
    this.replicaId = options.replicaId ?? randomUUID();
    this.now = options.now ?? Date.now;
    this.network.members.set(this.replicaId, () => {});
  }

  private readonly now: () => number;

  async claim(brokerIds: readonly string[], ttlMs: number): Promise<void> {
    if (this.closed) return;
    for (const id of brokerIds) this.network.owners.set(id, { replicaId: this.replicaId, expiresAt: this.now() + ttlMs });
  }

  async release(brokerId: string): Promise<void> {
    if (this.network.owners.get(brokerId)?.replicaId === this.replicaId) this.network.owners.delete(brokerId);
  }

  async owner(brokerId: string): Promise<string | null> {
    const entry = this.network.owners.get(brokerId);
    if (!entry) return null;
    if (entry.expiresAt <= this.now()) {
      this.network.owners.delete(brokerId);
      return null;
    }
    return entry.replicaId;
  }

  async alive(replicaId: string): Promise<boolean> {
    return this.network.members.has(replicaId);
  }

  send(replicaId: string, frame: Buffer): void {
    if (this.closed) return;
    // Asynchronous like a network: a handler never runs inside the sender's call.
    setImmediate(() => this.network.members.get(replicaId)?.(frame));
  }

  receive(handler: (frame: Buffer) => void): void {
    this.network.members.set(this.replicaId, handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.network.members.delete(this.replicaId);
  }
}
