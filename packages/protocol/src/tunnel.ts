import { z } from 'zod';
import { DesiredState, Phase } from './agent-state.js';
import { BrokerRuntime } from './brokers.js';
import { EnvVars, Labels, Uuid } from './ids.js';
import { Harness, Resources } from './templates.js';
import { BinaryFrameKind } from './log-frames.js';

/** The tunnel protocol version this code speaks; see PROTOCOL.md "Version negotiation". */
export const TUNNEL_PROTOCOL_VERSION = 1;

/** Path of the tunnel's WebSocket endpoint on the hub. */
export const TUNNEL_PATH = '/api/v1/brokers/connect';

/** Default interval between broker heartbeats; the hub tells the broker the real one in `welcome`. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

/** Heartbeats a peer may miss before it is considered gone (broker offline, or the tunnel dead). */
export const MISSED_HEARTBEATS_LIMIT = 3;

/** How long a hub waits for the result of a request before giving up on it. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** WebSocket close codes used on the tunnel (4000-4999 are reserved for applications). */
export const TunnelCloseCode = {
  /** The hub is shutting down; reconnect (to another replica) with backoff. */
  goingAway: 1001,
  /** A newer connection of the same broker replaced this one; do not reconnect on this socket's behalf. */
  superseded: 4000,
  /** The broker was deleted or its secret revoked; reconnecting is pointless. */
  revoked: 4001,
  /** A message failed validation or arrived out of order (e.g. anything before `hello`). */
  protocolError: 4002,
  /** No version both sides speak. */
  unsupportedVersion: 4003,
  /** The peer missed too many heartbeats. */
  heartbeatTimeout: 4004,
} as const;

/** One agent as a broker must run it: everything the runtime needs, nothing it must look up. */
export const AgentSpec = z.strictObject({
  projectId: Uuid,
  name: z.string().min(1).max(63),
  harness: Harness,
  runtime: BrokerRuntime,
  image: z.string().max(512).nullable(),
  command: z.array(z.string().max(4096)).max(256).nullable(),
  /** Template env, then agent env, then the GRAFT_* variables the hub adds. */
  env: EnvVars,
  task: z.string().max(100_000).nullable(),
  labels: Labels,
  /** Whether the agent may reach the network; without it, it reaches the hub only through its broker. */
  network: z.boolean(),
  /** Limits the runtime must apply (placement only sends agents to runtimes that can). */
  resources: Resources,
  /** The project's git remote, cloned into the workspace in the `cloning` phase; null: empty workspace. */
  repository: z.string().max(2048).nullable(),
  /** Names of the `env` variables that hold project secrets: the broker redacts their values from the agent's log. */
  secretEnv: z.array(z.string().min(1).max(255)).max(1000),
});
/** One agent as a broker must run it. */
export type AgentSpec = z.infer<typeof AgentSpec>;

/**
 * The hub's intent for one agent on a broker, keyed by agent id + generation. Every command and the
 * `welcome` desired set carry these; the broker converges towards the newest generation it has seen.
 */
export const DesiredAgent = z.strictObject({
  agentId: Uuid,
  generation: z.number().int().min(1),
  desiredState: DesiredState,
  /** On a start of a suspended agent: resume its workspace and session instead of starting fresh. */
  resume: z.boolean(),
  /** The phase the hub last observed, so a broker that lost an agent does not re-run a finished one. */
  observedPhase: Phase,
  /** The generation of that observation (0: no broker has reported on this agent yet). */
  observedGeneration: z.number().int().min(0),
  spec: AgentSpec,
});
/** The hub's intent for one agent on a broker. */
export type DesiredAgent = z.infer<typeof DesiredAgent>;

/** What a broker knows about one agent it holds: reported in `hello` and in `status`. */
export const ObservedAgent = z.strictObject({
  agentId: Uuid,
  /** The generation the broker last acted on. */
  generation: z.number().int().min(1),
  phase: Phase,
  detail: z.string().max(4096).nullable(),
  exitCode: z.number().int().nullable(),
});
/** What a broker knows about one agent it holds. */
export type ObservedAgent = z.infer<typeof ObservedAgent>;

/** A broker's capacity and current load, sent in `hello` and every heartbeat. */
export const BrokerLoad = z.strictObject({
  maxAgents: z.number().int().min(1).max(100_000),
  runningAgents: z.number().int().min(0),
});
/** A broker's capacity and current load. */
export type BrokerLoad = z.infer<typeof BrokerLoad>;

const envelope = { v: z.literal(TUNNEL_PROTOCOL_VERSION) };
/** Correlation id of a request; the result echoes it. */
const RequestId = z.string().min(1).max(64);

// --- broker → hub -------------------------------------------------------------------------------

/** First message on every connection: who the broker is, what it can run and everything it holds. */
export const HelloMessage = z.strictObject({
  ...envelope,
  type: z.literal('hello'),
  /** Every protocol version the broker speaks; the hub picks one (PROTOCOL.md). */
  versions: z.array(z.number().int().min(1)).min(1).max(16),
  brokerVersion: z.string().min(1).max(64),
  hostname: z.string().min(1).max(255),
  runtimes: z.array(BrokerRuntime).min(1).max(3),
  load: BrokerLoad,
  inventory: z.array(ObservedAgent).max(100_000),
});
/** First message on every connection. */
export type HelloMessage = z.infer<typeof HelloMessage>;

/** Liveness plus load; the hub answers each with `heartbeat_ack`. */
export const HeartbeatMessage = z.strictObject({ ...envelope, type: z.literal('heartbeat'), load: BrokerLoad });
/** Liveness plus load. */
export type HeartbeatMessage = z.infer<typeof HeartbeatMessage>;

/** An agent's observed phase changed (tagged with the generation it acted on; the hub drops stale ones). */
export const StatusMessage = z.strictObject({ ...envelope, type: z.literal('status'), agent: ObservedAgent });
/** An agent's observed phase changed. */
export type StatusMessage = z.infer<typeof StatusMessage>;

/** An agent wanted `deleted` is gone from the node: the hub may forget it. */
export const RemovedMessage = z.strictObject({ ...envelope, type: z.literal('removed'), agentId: Uuid, generation: z.number().int().min(1) });
/** An agent wanted `deleted` is gone from the node. */
export type RemovedMessage = z.infer<typeof RemovedMessage>;

/** Why a broker refused a command; a closed set so the hub can act on it. */
export const CommandErrorCode = z.enum(['no_capacity', 'no_runtime', 'stale_generation', 'unknown_agent', 'runtime_failed', 'invalid']);
/** Why a broker refused a command. */
export type CommandErrorCode = z.infer<typeof CommandErrorCode>;

/** The answer to a hub request, correlated by `id`. */
export const ResultMessage = z.strictObject({
  ...envelope,
  type: z.literal('result'),
  id: RequestId,
  ok: z.boolean(),
  /** Present when ok is false. */
  error: z.strictObject({ code: CommandErrorCode, message: z.string().max(4096) }).optional(),
  /** Present when ok is true: the agent as the broker holds it after accepting the command. */
  agent: ObservedAgent.optional(),
});
/** The answer to a hub request. */
export type ResultMessage = z.infer<typeof ResultMessage>;

/**
 * Every chunk of the agent's output up to `lastSeq` has been sent in binary frames, and the run that
 * wrote it has ended and its output is drained: the hub may archive the log once it holds them all.
 */
export const LogClosedMessage = z.strictObject({ ...envelope, type: z.literal('log_closed'), agentId: Uuid, lastSeq: z.number().int().min(0) });
/** The agent's log is complete up to `lastSeq`. */
export type LogClosedMessage = z.infer<typeof LogClosedMessage>;

/** Id of one attach stream (a viewer's terminal session) on a tunnel: a UUID the hub picks. */
const StreamId = Uuid;
/** Terminal size in character cells. */
const TerminalCols = z.number().int().min(1).max(1000);
const TerminalRows = z.number().int().min(1).max(1000);

/** The terminal of an `attach_open` runs: its output follows in terminal frames of the same stream. */
export const AttachOpenedMessage = z.strictObject({ ...envelope, type: z.literal('attach_opened'), streamId: StreamId });
/** The terminal of an `attach_open` runs. */
export type AttachOpenedMessage = z.infer<typeof AttachOpenedMessage>;

/** An attach stream ended (the shell exited, the broker could not open it, or it was closed): no more frames of it follow. */
export const AttachClosedMessage = z.strictObject({ ...envelope, type: z.literal('attach_closed'), streamId: StreamId, reason: z.string().max(4096).optional() });
/** An attach stream ended. */
export type AttachClosedMessage = z.infer<typeof AttachClosedMessage>;

/** Every message a broker may send (log chunks and terminal bytes travel in binary frames: log-frames.ts, encodeTerminalFrame). */
export const BrokerMessage = z.discriminatedUnion('type', [
  HelloMessage,
  HeartbeatMessage,
  StatusMessage,
  RemovedMessage,
  ResultMessage,
  LogClosedMessage,
  AttachOpenedMessage,
  AttachClosedMessage,
]);
/** Every message a broker may send. */
export type BrokerMessage = z.infer<typeof BrokerMessage>;

// --- hub → broker -------------------------------------------------------------------------------

/** Answer to `hello`: the chosen version, heartbeat interval, and the full desired set for this broker. */
export const WelcomeMessage = z.strictObject({
  ...envelope,
  type: z.literal('welcome'),
  version: z.number().int().min(1),
  sessionId: Uuid,
  heartbeatIntervalMs: z.number().int().min(100).max(60_000),
  /** Every agent assigned to this broker; anything the broker holds that is not here must go. */
  desired: z.array(DesiredAgent).max(100_000),
});
/** Answer to `hello`. */
export type WelcomeMessage = z.infer<typeof WelcomeMessage>;

/** Answer to `heartbeat`, so the broker can tell a dead tunnel from a quiet one. */
export const HeartbeatAckMessage = z.strictObject({ ...envelope, type: z.literal('heartbeat_ack') });
/** Answer to `heartbeat`. */
export type HeartbeatAckMessage = z.infer<typeof HeartbeatAckMessage>;

/** The commands of DESIGN §4: idempotent hints carrying the agent's whole desired state. */
export const CommandName = z.enum(['create', 'start', 'stop', 'suspend', 'delete', 'message']);
/** The commands of DESIGN §4. */
export type CommandName = z.infer<typeof CommandName>;

/** A command for one agent; the broker answers with a `result` of the same id. */
export const CommandMessage = z.strictObject({
  ...envelope,
  type: z.literal('command'),
  id: RequestId,
  command: CommandName,
  agent: DesiredAgent,
  /** For `message`: the text delivered to the agent. */
  message: z.string().max(100_000).optional(),
});
/** A command for one agent. */
export type CommandMessage = z.infer<typeof CommandMessage>;

/** Every log chunk of `agentId` with a sequence number up to `seq` is stored: the broker need not resend them. */
export const LogAckMessage = z.strictObject({ ...envelope, type: z.literal('log_ack'), agentId: Uuid, seq: z.number().int().min(0) });
/** Cumulative acknowledgement of an agent's log chunks. */
export type LogAckMessage = z.infer<typeof LogAckMessage>;

/** Opens an interactive terminal (a shell in the agent's environment) as stream `streamId`; answered by `attach_opened` or `attach_closed`. */
export const AttachOpenMessage = z.strictObject({ ...envelope, type: z.literal('attach_open'), streamId: StreamId, agentId: Uuid, cols: TerminalCols, rows: TerminalRows });
/** Opens an interactive terminal. */
export type AttachOpenMessage = z.infer<typeof AttachOpenMessage>;

/** The viewer's window changed size. */
export const AttachResizeMessage = z.strictObject({ ...envelope, type: z.literal('attach_resize'), streamId: StreamId, cols: TerminalCols, rows: TerminalRows });
/** The viewer's window changed size. */
export type AttachResizeMessage = z.infer<typeof AttachResizeMessage>;

/** The viewer went: the broker ends the stream's shell (never the agent) and answers `attach_closed`. */
export const AttachCloseMessage = z.strictObject({ ...envelope, type: z.literal('attach_close'), streamId: StreamId });
/** The viewer went. */
export type AttachCloseMessage = z.infer<typeof AttachCloseMessage>;

/** Every message the hub may send. */
export const HubMessage = z.discriminatedUnion('type', [WelcomeMessage, HeartbeatAckMessage, CommandMessage, LogAckMessage, AttachOpenMessage, AttachResizeMessage, AttachCloseMessage]);
/** Every message the hub may send. */
export type HubMessage = z.infer<typeof HubMessage>;

/** Parses one text frame into a message of `schema`; a reason instead of throwing on anything invalid. */
export function parseTunnelFrame<T>(schema: z.ZodType<T>, data: string): { ok: true; message: T } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, reason: 'frame is not JSON' };
  }
  if (typeof json === 'object' && json !== null && 'v' in json && json.v !== TUNNEL_PROTOCOL_VERSION) {
    return { ok: false, reason: `unsupported envelope version ${String(json.v)}` };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: `invalid message: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'schema mismatch'}` };
  }
  return { ok: true, message: parsed.data };
}

/** Full-jitter exponential backoff: a uniformly random delay in [0, min(max, base·2^attempt)). */
export function backoffDelayMs(attempt: number, baseMs = 1_000, maxMs = 60_000, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** First byte of a binary tunnel frame holding terminal bytes (kind 1 is a log chunk: log-frames.ts). */
export const TERMINAL_FRAME_KIND = BinaryFrameKind.terminal;
/** kind u8 | stream id 16 bytes | data */
const TERMINAL_HEADER_BYTES = 1 + 16;
/** Largest data one terminal frame carries; senders split bigger reads. */
export const MAX_TERMINAL_FRAME_BYTES = 64 * 1024;

/** The binary tunnel frame of terminal bytes of one attach stream, in either direction (never base64 in JSON). */
export function encodeTerminalFrame(streamId: string, data: Buffer): Buffer {
  const hex = streamId.replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not a UUID: ${streamId}`);
  if (data.length > MAX_TERMINAL_FRAME_BYTES) throw new RangeError(`terminal frame of ${data.length} bytes exceeds ${MAX_TERMINAL_FRAME_BYTES}`);
  const header = Buffer.allocUnsafe(TERMINAL_HEADER_BYTES);
  header.writeUInt8(TERMINAL_FRAME_KIND, 0);
  Buffer.from(hex, 'hex').copy(header, 1);
  return Buffer.concat([header, data]);
}

/** Decodes a terminal frame; a reason instead of throwing on anything malformed. */
export function decodeTerminalFrame(frame: Buffer): { ok: true; streamId: string; data: Buffer } | { ok: false; reason: string } {
  if (frame.length < TERMINAL_HEADER_BYTES) return { ok: false, reason: `terminal frame of ${frame.length} bytes is shorter than its ${TERMINAL_HEADER_BYTES}-byte header` };
  if (frame.readUInt8(0) !== TERMINAL_FRAME_KIND) return { ok: false, reason: `not a terminal frame (kind ${frame.readUInt8(0)})` };
  const data = frame.subarray(TERMINAL_HEADER_BYTES);
  if (data.length > MAX_TERMINAL_FRAME_BYTES) return { ok: false, reason: `terminal frame of ${data.length} bytes exceeds ${MAX_TERMINAL_FRAME_BYTES}` };
  const h = frame.subarray(1, TERMINAL_HEADER_BYTES).toString('hex');
  return { ok: true, streamId: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`, data };
}

/** Splits terminal bytes into pieces a terminal frame can carry. */
export function splitTerminalData(data: Buffer): Buffer[] {
  if (data.length <= MAX_TERMINAL_FRAME_BYTES) return [data];
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += MAX_TERMINAL_FRAME_BYTES) parts.push(data.subarray(i, i + MAX_TERMINAL_FRAME_BYTES));
  return parts;
}

/** Path of the attach endpoint (hub and broker local API): `:id` is the agent's id. */
export const ATTACH_PATH_PATTERN = /^\/api\/v1\/agents\/([^/]+)\/attach$/;

/**
 * `GET /agents/:id/attach` query (a WebSocket upgrade): the terminal's first size, and `token`, a
 * bearer token for clients that cannot set headers on a WebSocket (browsers).
 */
export const AttachQuery = z.object({
  cols: z.coerce.number().int().min(1).max(1000).default(80),
  rows: z.coerce.number().int().min(1).max(1000).default(24),
  token: z.string().min(1).max(4096).optional(),
});
/** `GET /agents/:id/attach` query. */
export type AttachQuery = z.infer<typeof AttachQuery>;

/** A control message a viewer sends on an attach WebSocket as a text frame (terminal input goes in binary frames). */
export const AttachControl = z.discriminatedUnion('type', [z.strictObject({ type: z.literal('resize'), cols: TerminalCols, rows: TerminalRows })]);
/** A control message a viewer sends on an attach WebSocket. */
export type AttachControl = z.infer<typeof AttachControl>;

/** WebSocket close codes of attach and log streams towards viewers. */
export const ViewerCloseCode = {
  /** The shell ended or the log is complete. */
  normal: 1000,
  /** The hub or broker is going away. */
  goingAway: 1001,
  /** The stream failed on the hub or broker. */
  internalError: 1011,
  /** The viewer could not keep up with the output: dropped rather than buffered without bound. */
  tryAgainLater: 1013,
} as const;
