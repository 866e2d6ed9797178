import { GraftClient } from '@graft/client';
import type { BrokerRuntime, RegisterBrokerRequest } from '@graft/protocol';

/** A broker that went through both registration phases: what its credentials file would hold. */
export interface JoinedBroker {
  brokerId: string;
  secretKey: string;
  hubUrl: string;
}

/** Registers (as the admin) and joins a broker in one go, over the real API. */
export async function registerAndJoinBroker(
  hubUrl: string,
  adminToken: string,
  register: RegisterBrokerRequest,
  join: { maxAgents?: number; runtimes?: BrokerRuntime[] } = {},
): Promise<JoinedBroker> {
  const reg = await new GraftClient({ baseUrl: hubUrl, token: adminToken }).registerBroker(register);
  const joined = await new GraftClient({ baseUrl: hubUrl }).joinBroker({
    brokerId: reg.brokerId,
    joinToken: reg.joinToken,
    hostname: 'test-node',
    version: 'test',
    runtimes: join.runtimes ?? ['process'],
    capacity: { maxAgents: join.maxAgents ?? 100 },
  });
  return { brokerId: joined.brokerId, secretKey: joined.secretKey, hubUrl };
}
