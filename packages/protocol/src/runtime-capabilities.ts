import type { PendingReason } from './agent-state.js';
import type { BrokerRuntime } from './brokers.js';
import type { Resources, TemplateSpec } from './templates.js';

/** What a runtime can enforce for an agent; placement matches templates against it. */
export interface RuntimeCapabilities {
  /** Whether it can cut an agent off the network (template `network: false`). */
  readonly isolatesNetwork: boolean;
  /** Which template `resources` limits it applies. */
  readonly limits: ReadonlyArray<keyof Resources>;
}

/**
 * What each runtime adapter enforces (apps/broker/src/runtime/*); the runtime contract suite checks
 * every adapter against its entry, so placement never promises what a runtime does not do.
 */
export const RUNTIME_CAPABILITIES: Readonly<Record<BrokerRuntime, RuntimeCapabilities>> = {
  docker: { isolatesNetwork: true, limits: ['memoryMb', 'cpus'] },
  bwrap: { isolatesNetwork: true, limits: [] },
  process: { isolatesNetwork: false, limits: [] },
};

/** Every runtime, in the order an agent without a preference takes them when a broker offers several. */
const ALL_RUNTIMES: readonly BrokerRuntime[] = ['process', 'bwrap', 'docker'];

/** What a template needs from a runtime: which runtimes may run it, with network or without, under which limits. */
export interface RuntimeNeeds {
  /** Runtimes named or implied by the template (`runtime`, else `docker` when it has an `image`, else any). */
  readonly runtimes: readonly BrokerRuntime[];
  readonly network: boolean;
  readonly resources: Resources;
}

/** The runtime needs of a template version (`runtime`/`network` at the top level or, as before, under `requirements`). */
export function runtimeNeeds(spec: Pick<TemplateSpec, 'runtime' | 'network' | 'image' | 'resources' | 'requirements'>): RuntimeNeeds {
  const runtime = spec.runtime ?? spec.requirements?.runtime;
  const runtimes = runtime !== undefined ? [runtime] : spec.image !== undefined ? (['docker'] as const) : ALL_RUNTIMES;
  return { runtimes, network: spec.network ?? spec.requirements?.network ?? true, resources: spec.resources ?? {} };
}

/**
 * The runtime filters of placement in order, each with the pending reason given when it leaves no
 * broker: the runtimes that may run the template, then those that can also cut its network, then
 * those that also apply its limits. The last stage's runtimes are the ones an agent may get.
 */
export function runtimeStages(needs: RuntimeNeeds): Array<{ reason: PendingReason; runtimes: BrokerRuntime[] }> {
  const named = [...needs.runtimes];
  const isolated = named.filter((r) => needs.network || RUNTIME_CAPABILITIES[r].isolatesNetwork);
  const asked = (Object.keys(needs.resources) as Array<keyof Resources>).filter((k) => needs.resources[k] !== undefined);
  const limited = isolated.filter((r) => asked.every((k) => RUNTIME_CAPABILITIES[r].limits.includes(k)));
  return [
    { reason: 'no_runtime', runtimes: named },
    { reason: 'no_isolation', runtimes: isolated },
    { reason: 'no_limits', runtimes: limited },
  ];
}

/** The runtimes an agent with these needs may run in (the last stage of {@link runtimeStages}). */
export function eligibleRuntimes(needs: RuntimeNeeds): BrokerRuntime[] {
  return runtimeStages(needs).at(-1)?.runtimes ?? [];
}

/** The runtime an agent gets on a broker: the first the broker offers that may run it; null when none may. */
export function runtimeOnBroker(needs: RuntimeNeeds, brokerRuntimes: readonly string[]): BrokerRuntime | null {
  const eligible = eligibleRuntimes(needs);
  return (brokerRuntimes.find((r) => (eligible as readonly string[]).includes(r)) as BrokerRuntime | undefined) ?? null;
}
