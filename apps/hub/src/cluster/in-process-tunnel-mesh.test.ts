import { InProcessMeshNetwork, InProcessTunnelMesh } from './in-process-tunnel-mesh.js';
import { tunnelMeshContract } from './tunnel-mesh-contract.js';

tunnelMeshContract('in-process', () => {
  const network = new InProcessMeshNetwork();
  return async () => new InProcessTunnelMesh(network);
});
