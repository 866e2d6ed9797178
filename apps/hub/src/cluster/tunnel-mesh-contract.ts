import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { TunnelMesh } from './tunnel-mesh.js';

/** Makes replicas that share one backend (one in-process network, or one Redis with one prefix). */
export type MeshCluster = () => Promise<TunnelMesh>;

/** What every TunnelMesh adapter must show; `makeCluster` returns a factory of replicas sharing one backend. */
export function tunnelMeshContract(name: string, makeCluster: () => MeshCluster): void {
  describe(`TunnelMesh contract: ${name}`, () => {
    const open: TunnelMesh[] = [];
    afterEach(async () => {
      for (const m of open.splice(0)) await m.close();
    });
    const replicas = async (n: number) => {
      const make = makeCluster();
      const out: TunnelMesh[] = [];
      for (let i = 0; i < n; i++) out.push(await make());
      open.push(...out);
      return out;
    };
    const broker = () => crypto.randomUUID();

    it('gives each replica its own id', async () => {
      const [a, b] = await replicas(2);
      expect(a?.replicaId).not.toBe(b?.replicaId);
    });

    it('a claim is seen by every replica; the last claim wins; release only removes the releaser’s own claim', async () => {
      const [a, b] = await replicas(2);
      if (!a || !b) throw new Error('two replicas');
      const id = broker();
      expect(await b.owner(id)).toBeNull();
      await a.claim([id], 10_000);
      expect(await b.owner(id)).toBe(a.replicaId);
      expect(await a.owner(id)).toBe(a.replicaId);
      await b.claim([id], 10_000);
      expect(await a.owner(id)).toBe(b.replicaId);
      // A stale owner letting go must not undo the newer claim.
      await a.release(id);
      expect(await a.owner(id)).toBe(b.replicaId);
      await b.release(id);
      expect(await a.owner(id)).toBeNull();
    });

    it('claims many brokers at once', async () => {
      const [a, b] = await replicas(2);
      if (!a || !b) throw new Error('two replicas');
      const ids = Array.from({ length: 50 }, broker);
      await a.claim(ids, 10_000);
      for (const id of ids) expect(await b.owner(id)).toBe(a.replicaId);
    });

    it('a claim not refreshed expires after its time to live; a refreshed one stays', async () => {
      const [a, b] = await replicas(2);
      if (!a || !b) throw new Error('two replicas');
      const lapsing = broker();
      const kept = broker();
      await a.claim([lapsing, kept], 300);
      await delay(150);
      await a.claim([kept], 300);
      await delay(250);
      expect(await b.owner(lapsing)).toBeNull();
      expect(await b.owner(kept)).toBe(a.replicaId);
    });

    it('a replica is alive from its start until it closes; an unknown one is not', async () => {
      const [a, b] = await replicas(2);
      if (!a || !b) throw new Error('two replicas');
      expect(await a.alive(b.replicaId)).toBe(true);
      expect(await b.alive(b.replicaId)).toBe(true);
      expect(await a.alive('no-such-replica')).toBe(false);
      await b.close();
      expect(await a.alive(b.replicaId)).toBe(false);
    });

    it('delivers frames to the addressed replica only, in order, bytes intact', async () => {
      const [a, b, c] = await replicas(3);
      if (!a || !b || !c) throw new Error('three replicas');
      const onB: Buffer[] = [];
      const onC: Buffer[] = [];
      const onA: Buffer[] = [];
      a.receive((f) => onA.push(f));
      b.receive((f) => onB.push(f));
      c.receive((f) => onC.push(f));
      await delay(100);
      const frames = Array.from({ length: 200 }, (_, i) => Buffer.from([i % 256, 0, 255, 10, 13, i >> 8]));
      for (const f of frames) a.send(b.replicaId, f);
      c.send(b.replicaId, Buffer.from('from c'));
      await waitFor(() => onB.length === 201);
      expect(onB.filter((f) => f.toString() !== 'from c')).toEqual(frames);
      expect(onB.map((f) => f.toString())).toContain('from c');
      expect(onC).toEqual([]);
      expect(onA).toEqual([]);
    });

    it('drops frames to a replica that is gone, without throwing', async () => {
      const [a, b] = await replicas(2);
      if (!a || !b) throw new Error('two replicas');
      const onB: Buffer[] = [];
      b.receive((f) => onB.push(f));
      await b.close();
      expect(() => a.send(b.replicaId, Buffer.from('late'))).not.toThrow();
      a.send('no-such-replica', Buffer.from('nowhere'));
      await delay(100);
      expect(onB).toEqual([]);
    });
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 3_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await delay(10);
  }
}
