import { describe, expect, it } from 'vitest';
import { BrokerMessage, backoffDelayMs, HubMessage, parseTunnelFrame, TUNNEL_PROTOCOL_VERSION } from './tunnel.js';

const agentId = '0196f0c4-0000-7000-8000-000000000001';
const spec = { projectId: agentId, name: 'a1', harness: 'command', runtime: 'process', image: null, command: ['true'], env: {}, task: null, labels: {}, network: true, resources: {}, repository: null, secretEnv: [] };

describe('tunnel frames', () => {
  it('parses a valid hello and a command, each into its own type', () => {
    const hello = parseTunnelFrame(
      BrokerMessage,
      JSON.stringify({ v: 1, type: 'hello', versions: [1], brokerVersion: '0.1.0', hostname: 'n1', runtimes: ['process'], load: { maxAgents: 4, runningAgents: 0 }, inventory: [] }),
    );
    expect(hello.ok && hello.message.type).toBe('hello');
    const cmd = parseTunnelFrame(
      HubMessage,
      JSON.stringify({
        v: 1,
        type: 'command',
        id: 'h1',
        command: 'create',
        agent: { agentId, generation: 1, desiredState: 'running', resume: false, observedPhase: 'created', observedGeneration: 0, spec },
      }),
    );
    expect(cmd.ok && cmd.message.type === 'command' && cmd.message.agent.spec.command).toEqual(['true']);
  });

  it('refuses non-JSON, another envelope version, unknown types and extra fields, saying why', () => {
    expect(parseTunnelFrame(BrokerMessage, 'not json')).toEqual({ ok: false, reason: 'frame is not JSON' });
    expect(parseTunnelFrame(BrokerMessage, JSON.stringify({ v: 2, type: 'heartbeat', load: { maxAgents: 1, runningAgents: 0 } }))).toEqual({
      ok: false,
      reason: 'unsupported envelope version 2',
    });
    const unknown = parseTunnelFrame(BrokerMessage, JSON.stringify({ v: 1, type: 'launch' }));
    expect(unknown.ok).toBe(false);
    const extra = parseTunnelFrame(BrokerMessage, JSON.stringify({ v: 1, type: 'heartbeat', load: { maxAgents: 1, runningAgents: 0 }, evil: true }));
    expect(extra.ok).toBe(false);
    // A hub message is not a broker message: the two directions are separate unions.
    expect(parseTunnelFrame(BrokerMessage, JSON.stringify({ v: TUNNEL_PROTOCOL_VERSION, type: 'heartbeat_ack' })).ok).toBe(false);
  });

  it('a status report needs a generation of at least 1 and a known phase', () => {
    const status = (agent: object) => parseTunnelFrame(BrokerMessage, JSON.stringify({ v: 1, type: 'status', agent }));
    expect(status({ agentId, generation: 1, phase: 'running', detail: null, exitCode: null }).ok).toBe(true);
    expect(status({ agentId, generation: 0, phase: 'running', detail: null, exitCode: null }).ok).toBe(false);
    expect(status({ agentId, generation: 1, phase: 'flying', detail: null, exitCode: null }).ok).toBe(false);
  });
});

describe('backoffDelayMs (full jitter)', () => {
  it('stays within [0, min(max, base * 2^attempt)) and reaches the cap', () => {
    expect(backoffDelayMs(0, 1000, 60_000, () => 0.999999)).toBe(999);
    expect(backoffDelayMs(3, 1000, 60_000, () => 0.5)).toBe(4000);
    expect(backoffDelayMs(10, 1000, 60_000, () => 0.999999)).toBe(59_999);
    expect(backoffDelayMs(1000, 1000, 60_000, () => 0.999999)).toBe(59_999);
    expect(backoffDelayMs(5, 1000, 60_000, () => 0)).toBe(0);
  });

  it('is spread over the whole window, not clustered (full jitter, not equal jitter)', () => {
    const samples = Array.from({ length: 2000 }, () => backoffDelayMs(6, 1000, 60_000));
    expect(Math.min(...samples)).toBeLessThan(6400);
    expect(Math.max(...samples)).toBeGreaterThan(57_600);
    expect(samples.every((s) => s >= 0 && s < 60_000)).toBe(true);
  });
});
