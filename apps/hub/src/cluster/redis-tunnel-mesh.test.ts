import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { RedisTunnelMesh } from './redis-tunnel-mesh.js';
import { tunnelMeshContract } from './tunnel-mesh-contract.js';

// Against the run's real Redis; each cluster gets its own prefix so tests never hear each other.
tunnelMeshContract('redis', () => {
  const prefix = `test-${randomUUID()}`;
  return async () => {
    const mesh = new RedisTunnelMesh(inject('redisUrl'), { prefix });
    await mesh.ready();
    return mesh;
  };
});
