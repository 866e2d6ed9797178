import { type AgentSpec, type BrokerRuntime, RUNTIME_CAPABILITIES, type Resources } from '@graft/protocol';

/**
 * Throws when `spec` asks for isolation or limits the runtime cannot enforce (RUNTIME_CAPABILITIES).
 * Placement never sends such an agent here; this keeps a bad command from running it unconfined.
 */
export function refuseUnsupported(runtime: BrokerRuntime, spec: AgentSpec): void {
  const can = RUNTIME_CAPABILITIES[runtime];
  if (!spec.network && !can.isolatesNetwork) throw new Error(`the ${runtime} runtime cannot cut an agent off the network (template network: false)`);
  const asked = (Object.keys(spec.resources) as Array<keyof Resources>).filter((k) => spec.resources[k] !== undefined);
  const missing = asked.filter((k) => !can.limits.includes(k));
  if (missing.length > 0) throw new Error(`the ${runtime} runtime cannot apply resources.${missing.join(', resources.')}`);
}
