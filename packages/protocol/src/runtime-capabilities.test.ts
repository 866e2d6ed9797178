import { describe, expect, it } from 'vitest';
import { eligibleRuntimes, runtimeNeeds, runtimeOnBroker, runtimeStages } from './runtime-capabilities.js';

describe('runtime needs of a template', () => {
  it('takes runtime and network from the top level, else from requirements; an image means docker', () => {
    expect(runtimeNeeds({})).toEqual({ runtimes: ['process', 'bwrap', 'docker'], network: true, resources: {} });
    expect(runtimeNeeds({ image: 'x' }).runtimes).toEqual(['docker']);
    expect(runtimeNeeds({ image: 'x', runtime: 'bwrap' }).runtimes).toEqual(['bwrap']);
    expect(runtimeNeeds({ requirements: { runtime: 'process', network: false } })).toMatchObject({ runtimes: ['process'], network: false });
  });

  it('narrows to runtimes that can cut the network and apply every limit, naming each stage', () => {
    const needs = runtimeNeeds({ network: false, resources: { cpus: 1 } });
    expect(runtimeStages(needs)).toEqual([
      { reason: 'no_runtime', runtimes: ['process', 'bwrap', 'docker'] },
      { reason: 'no_isolation', runtimes: ['bwrap', 'docker'] },
      { reason: 'no_limits', runtimes: ['docker'] },
    ]);
    expect(eligibleRuntimes(runtimeNeeds({ network: false }))).toEqual(['bwrap', 'docker']);
  });

  it("picks the broker's first runtime that may run the agent, or none", () => {
    const isolated = runtimeNeeds({ network: false });
    expect(runtimeOnBroker(isolated, ['process', 'docker', 'bwrap'])).toBe('docker');
    expect(runtimeOnBroker(isolated, ['process'])).toBeNull();
    expect(runtimeOnBroker(runtimeNeeds({}), ['bwrap', 'process'])).toBe('bwrap');
  });
});
