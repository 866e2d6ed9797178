import type {
  AgentMessage,
  SendMessageRequest,
  Agent,
  AgentHeartbeatResponse,
  AgentStatusRequest,
  AgentStatusResponse,
  AgentToken,
  ApiKey,
  Broker,
  CreateAgentRequest,
  CreateApiKeyRequest,
  CreatedApiKey,
  CreateTemplateRequest,
  CreateTemplateVersionRequest,
  CreateUserRequest,
  DevLoginResponse,
  ErrorBody,
  ErrorCode,
  Health,
  JoinBrokerRequest,
  JoinBrokerResponse,
  ListAgentsQuery,
  Me,
  Page,
  Project,
  ProjectDetail,
  ProjectMember,
  ProjectRole,
  RegisterBrokerRequest,
  RegisterBrokerResponse,
  RotatedBrokerSecret,
  RegisterProjectRequest,
  RegisterProjectResponse,
  SecretMeta,
  Template,
  TemplateVersion,
  UpdateProjectRequest,
  User,
} from '@graft/protocol';
import { LogChunkJson } from '@graft/protocol';
import { type FetchLike, unixSocketFetch } from './unix-socket-fetch.js';

/** A non-2xx answer from the hub, with its error code and request id. */
export class GraftApiError extends Error {
  override readonly name = 'GraftApiError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'network_error' | 'unexpected_response',
    message: string,
    readonly requestId: string | undefined,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** Options for {@link GraftClient}. */
export interface GraftClientOptions {
  /** Hub base URL, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** API key, user JWT or agent JWT. */
  token?: string;
  /** Per-request timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
  /** Send requests over this Unix socket instead of TCP (an agent's relay socket); `baseUrl` then only names the hub. */
  socketPath?: string | undefined;
}

/** Pagination arguments of every list call. */
export interface ListOptions {
  limit?: number;
  cursor?: string;
}

type Query = Record<string, string | number | undefined>;

/** What to read of an agent's log (`GET /agents/:id/logs`). */
export interface AgentLogQuery {
  /** Only the last N lines. */
  tail?: number;
  /** Only chunks with a sequence number above this. */
  since?: number;
  /** Only this stream (the platform's own notes always come through). */
  stream?: 'stdout' | 'stderr';
}

/** Options of {@link GraftClient.followAgentLogs}. */
export interface FollowAgentLogsOptions extends AgentLogQuery {
  /** Stops following (the iteration just ends). */
  signal?: AbortSignal;
  /** First and longest pause before reconnecting (default 500 ms and 5 s, doubling in between). */
  backoffMs?: { initial: number; max: number };
  /** A connection without a byte for this long counts as lost; the hub sends a keep-alive every 15 s (default 45 s). */
  idleTimeoutMs?: number;
}

/** What {@link GraftClient.followAgentLogs} yields: a chunk of output, or the news that the stream was lost and is being resumed. */
export type AgentLogEvent = { type: 'chunk'; chunk: LogChunkJson } | { type: 'reconnecting'; error: GraftApiError; delayMs: number };

/** Typed client for the hub's REST API. */
export class GraftClient {
  private readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly socketPath: string | undefined;
  private readonly send: FetchLike;

  constructor(options: GraftClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.socketPath = options.socketPath;
    this.send = options.socketPath === undefined ? (url, init) => fetch(url, init) : unixSocketFetch(options.socketPath);
  }

  /** A client for the same hub with another token. */
  withToken(token: string): GraftClient {
    return new GraftClient({ baseUrl: this.baseUrl, token, timeoutMs: this.timeoutMs, socketPath: this.socketPath });
  }

  /** Sends a request and parses the JSON answer; non-2xx answers throw {@link GraftApiError}. */
  async request<T>(method: string, path: string, options: { body?: unknown; query?: Query } = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await this.send(url, {
        method,
        headers,
        body: options.body === undefined ? null : JSON.stringify(options.body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const where = this.socketPath === undefined ? this.baseUrl : `${this.baseUrl} through ${this.socketPath}`;
      throw new GraftApiError(0, 'network_error', `cannot reach the hub at ${where}: ${why}`, undefined);
    }
    const text = await res.text();
    if (!res.ok) throw apiErrorOf(res, text);
    if (text === '') return undefined as T;
    return JSON.parse(text) as T;
  }

  // --- meta ---
  /** `GET /healthz`. */
  health(): Promise<Health> {
    return this.request('GET', '/healthz');
  }

  // --- auth ---
  /** `POST /api/v1/auth/dev-login`. */
  devLogin(email: string): Promise<DevLoginResponse> {
    return this.request('POST', '/api/v1/auth/dev-login', { body: { email } });
  }
  /** `GET /api/v1/auth/me`. */
  me(): Promise<Me> {
    return this.request('GET', '/api/v1/auth/me');
  }
  /** `POST /api/v1/api-keys`. */
  createApiKey(body: CreateApiKeyRequest): Promise<CreatedApiKey> {
    return this.request('POST', '/api/v1/api-keys', { body });
  }
  /** `GET /api/v1/api-keys`. */
  listApiKeys(opts: ListOptions = {}): Promise<Page<ApiKey>> {
    return this.request('GET', '/api/v1/api-keys', { query: { ...opts } });
  }
  /** `DELETE /api/v1/api-keys/:id`. */
  revokeApiKey(id: string): Promise<void> {
    return this.request('DELETE', `/api/v1/api-keys/${encodeURIComponent(id)}`);
  }
  /** `POST /api/v1/users`. */
  createUser(body: CreateUserRequest): Promise<User> {
    return this.request('POST', '/api/v1/users', { body });
  }
  /** `GET /api/v1/users`. */
  listUsers(opts: ListOptions & { email?: string } = {}): Promise<Page<User>> {
    return this.request('GET', '/api/v1/users', { query: { ...opts } });
  }

  // --- projects ---
  /** `GET /api/v1/projects`. */
  listProjects(opts: ListOptions = {}): Promise<Page<Project>> {
    return this.request('GET', '/api/v1/projects', { query: { ...opts } });
  }
  /** `POST /api/v1/projects/register`. */
  registerProject(body: RegisterProjectRequest): Promise<RegisterProjectResponse> {
    return this.request('POST', '/api/v1/projects/register', { body });
  }
  /** `GET /api/v1/projects/:id`. */
  getProject(id: string): Promise<ProjectDetail> {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(id)}`);
  }
  /** `PATCH /api/v1/projects/:id`. */
  updateProject(id: string, body: UpdateProjectRequest): Promise<Project> {
    return this.request('PATCH', `/api/v1/projects/${encodeURIComponent(id)}`, { body });
  }
  /** `DELETE /api/v1/projects/:id`. */
  deleteProject(id: string): Promise<void> {
    return this.request('DELETE', `/api/v1/projects/${encodeURIComponent(id)}`);
  }
  /** `GET /api/v1/projects/:id/members`. */
  listMembers(id: string, opts: ListOptions = {}): Promise<Page<ProjectMember>> {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(id)}/members`, { query: { ...opts } });
  }
  /** `PUT /api/v1/projects/:id/members/:userId`. */
  putMember(id: string, userId: string, role: ProjectRole): Promise<ProjectMember> {
    return this.request('PUT', `/api/v1/projects/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`, { body: { role } });
  }
  /** `DELETE /api/v1/projects/:id/members/:userId`. */
  removeMember(id: string, userId: string): Promise<void> {
    return this.request('DELETE', `/api/v1/projects/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
  }
  /** `GET /api/v1/projects/:id/secrets`. */
  listSecrets(id: string, opts: ListOptions = {}): Promise<Page<SecretMeta>> {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(id)}/secrets`, { query: { ...opts } });
  }
  /** `PUT /api/v1/projects/:id/secrets/:name`. */
  putSecret(id: string, name: string, value: string): Promise<SecretMeta> {
    return this.request('PUT', `/api/v1/projects/${encodeURIComponent(id)}/secrets/${encodeURIComponent(name)}`, { body: { value } });
  }
  /** `DELETE /api/v1/projects/:id/secrets/:name`. */
  deleteSecret(id: string, name: string): Promise<void> {
    return this.request('DELETE', `/api/v1/projects/${encodeURIComponent(id)}/secrets/${encodeURIComponent(name)}`);
  }

  // --- templates ---
  /** `GET /api/v1/templates`. */
  listTemplates(opts: ListOptions & { projectId?: string } = {}): Promise<Page<Template>> {
    return this.request('GET', '/api/v1/templates', { query: { ...opts } });
  }
  /** `POST /api/v1/templates`. */
  createTemplate(body: CreateTemplateRequest): Promise<Template> {
    return this.request('POST', '/api/v1/templates', { body });
  }
  /** `GET /api/v1/templates/:id`. */
  getTemplate(id: string): Promise<Template> {
    return this.request('GET', `/api/v1/templates/${encodeURIComponent(id)}`);
  }
  /** `POST /api/v1/templates/:id/versions`. */
  createTemplateVersion(id: string, body: CreateTemplateVersionRequest): Promise<TemplateVersion> {
    return this.request('POST', `/api/v1/templates/${encodeURIComponent(id)}/versions`, { body });
  }
  /** `GET /api/v1/templates/:id/versions/:n`. */
  getTemplateVersion(id: string, n: number): Promise<TemplateVersion> {
    return this.request('GET', `/api/v1/templates/${encodeURIComponent(id)}/versions/${n}`);
  }

  // --- agents ---
  /** `GET /api/v1/agents`. */
  listAgents(opts: ListOptions & ListAgentsQuery = {}): Promise<Page<Agent>> {
    return this.request('GET', '/api/v1/agents', { query: { ...opts } });
  }
  /** `POST /api/v1/agents`. */
  createAgent(body: CreateAgentRequest): Promise<Agent> {
    return this.request('POST', '/api/v1/agents', { body });
  }
  /** `GET /api/v1/agents/:id`. */
  getAgent(id: string): Promise<Agent> {
    return this.request('GET', `/api/v1/agents/${encodeURIComponent(id)}`);
  }
  /** `POST /api/v1/agents/:id/{suspend,start,stop,restart}`. */
  agentAction(id: string, action: 'suspend' | 'start' | 'stop' | 'restart'): Promise<Agent> {
    return this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/${action}`);
  }
  /** `DELETE /api/v1/agents/:id`: undefined when removed at once, the agent while a broker removes it. */
  deleteAgent(id: string): Promise<Agent | undefined> {
    return this.request('DELETE', `/api/v1/agents/${encodeURIComponent(id)}`);
  }
  /** `POST /api/v1/agents/:id/status` (agent token). */
  reportStatus(id: string, body: Partial<AgentStatusRequest>): Promise<AgentStatusResponse> {
    return this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/status`, { body });
  }
  /** `POST /api/v1/agents/:id/heartbeat` (agent token): records the agent as alive. */
  agentHeartbeat(id: string): Promise<AgentHeartbeatResponse> {
    return this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/heartbeat`);
  }
  /** `POST /api/v1/agents/:id/token`. */
  mintAgentToken(id: string): Promise<AgentToken> {
    return this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/token`);
  }
  /** `POST /api/v1/agents/:id/token/refresh` (agent token). */
  refreshAgentToken(id: string): Promise<AgentToken> {
    return this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/token/refresh`);
  }

  /**
   * `GET /api/v1/agents/:id/logs` as plain text, yielded as it arrives (never buffered whole).
   * A connection lost midway throws a `network_error` {@link GraftApiError}.
   */
  async *agentLogText(id: string, query: AgentLogQuery = {}, signal?: AbortSignal): AsyncGenerator<Uint8Array, void> {
    const opened = await this.openStream(`/api/v1/agents/${encodeURIComponent(id)}/logs`, { ...query }, { accept: 'text/plain' }, signal);
    const reader = bodyReader(opened.res);
    try {
      for (;;) {
        const { done, value } = await readOrFail(reader, 0);
        if (done) return;
        yield value;
      }
    } finally {
      opened.release();
      reader.cancel().catch(() => {});
    }
  }

  /**
   * Follows an agent's log over SSE until the hub sends `event: end` (its run is over and every
   * chunk was delivered) or `signal` aborts. A dropped connection, a restarting hub or a 5xx is
   * retried with backoff, resuming with `Last-Event-ID` after the last chunk yielded, so nothing is
   * missed or repeated; other errors (not found, forbidden) are thrown.
   */
  async *followAgentLogs(id: string, options: FollowAgentLogsOptions = {}): AsyncGenerator<AgentLogEvent, void> {
    const { signal } = options;
    const initial = options.backoffMs?.initial ?? 500;
    const max = options.backoffMs?.max ?? 5_000;
    const idleMs = options.idleTimeoutMs ?? 45_000;
    const path = `/api/v1/agents/${encodeURIComponent(id)}/logs`;
    let lastSeq: number | undefined;
    let delay = initial;
    for (;;) {
      if (signal?.aborted) return;
      let openedAt = 0;
      let received = false;
      try {
        // The first request asks for what the caller wanted; a resumption only for what follows the last chunk.
        const query: Query = lastSeq === undefined ? { tail: options.tail, since: options.since, stream: options.stream } : { stream: options.stream };
        const headers: Record<string, string> = { accept: 'text/event-stream', ...(lastSeq === undefined ? {} : { 'last-event-id': String(lastSeq) }) };
        const opened = await this.openStream(path, query, headers, signal);
        openedAt = Date.now();
        try {
          for await (const event of readServerSentEvents(bodyReader(opened.res), idleMs)) {
            if (event.event === 'end') return;
            if (event.event !== 'log') continue;
            const chunk = parseLogChunk(event.data);
            lastSeq = chunk.seq;
            received = true;
            yield { type: 'chunk', chunk };
          }
        } finally {
          opened.release();
        }
        throw new GraftApiError(0, 'network_error', 'the hub closed the log stream before its end', undefined);
      } catch (err) {
        if (signal?.aborted) return;
        const error = err instanceof GraftApiError ? err : new GraftApiError(0, 'network_error', `lost the log stream: ${messageOf(err)}`, undefined);
        if (!isTransient(error)) throw error;
        // A connection that delivered or lasted was healthy: the next outage starts from the shortest pause.
        if (received || (openedAt > 0 && Date.now() - openedAt >= max)) delay = initial;
        yield { type: 'reconnecting', error, delayMs: delay };
        await pause(delay, signal);
        delay = Math.min(delay * 2, max);
      }
    }
  }

  /**
   * Opens a streaming GET: the timeout covers the answer's headers only, `signal` the whole body
   * (until `release()`, which the caller calls once done with the body); non-2xx throw.
   */
  private async openStream(path: string, query: Query, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<{ res: Response; release: () => void }> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    const all: Record<string, string> = { ...headers };
    if (this.token) all.authorization = `Bearer ${this.token}`;
    const controller = new AbortController();
    const abort = () => controller.abort(signal?.reason);
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    let res: Response;
    try {
      res = await this.send(url, { method: 'GET', headers: all, body: null, signal: controller.signal });
    } catch (err) {
      signal?.removeEventListener('abort', abort);
      const where = this.socketPath === undefined ? this.baseUrl : `${this.baseUrl} through ${this.socketPath}`;
      throw new GraftApiError(0, 'network_error', `cannot reach the hub at ${where}: ${messageOf(controller.signal.reason ?? err)}`, undefined);
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) {
      signal?.removeEventListener('abort', abort);
      throw apiErrorOf(res, await res.text().catch(() => ''));
    }
    // The listener stays while the body is read: aborting `signal` cancels the read.
    return { res, release: () => signal?.removeEventListener('abort', abort) };
  }

  /** `POST /api/v1/agents/:id/messages`. */
  sendMessage(id: string, body: SendMessageRequest): Promise<AgentMessage> {
    return this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/messages`, { body });
  }
  /** `GET /api/v1/agents/:id/messages`. */
  listMessages(id: string, opts: ListOptions = {}): Promise<Page<AgentMessage>> {
    return this.request('GET', `/api/v1/agents/${encodeURIComponent(id)}/messages`, { query: { ...opts } });
  }

  // --- brokers ---
  /** `POST /api/v1/brokers/register` (phase 1). */
  registerBroker(body: RegisterBrokerRequest): Promise<RegisterBrokerResponse> {
    return this.request('POST', '/api/v1/brokers/register', { body });
  }
  /** `POST /api/v1/brokers/join` (phase 2; no token needed). */
  joinBroker(body: JoinBrokerRequest): Promise<JoinBrokerResponse> {
    return this.request('POST', '/api/v1/brokers/join', { body });
  }
  /** `GET /api/v1/brokers`. */
  listBrokers(opts: ListOptions = {}): Promise<Page<Broker>> {
    return this.request('GET', '/api/v1/brokers', { query: { ...opts } });
  }
  /** `GET /api/v1/brokers/:id`. */
  getBroker(id: string): Promise<Broker> {
    return this.request('GET', `/api/v1/brokers/${encodeURIComponent(id)}`);
  }
  /** `POST /api/v1/brokers/:id/drain` or `/undrain`. */
  drainBroker(id: string, drain: boolean): Promise<Broker> {
    return this.request('POST', `/api/v1/brokers/${encodeURIComponent(id)}/${drain ? 'drain' : 'undrain'}`);
  }
  /** `POST /api/v1/brokers/:id/rotate-secret`. */
  rotateBrokerSecret(id: string): Promise<RotatedBrokerSecret> {
    return this.request('POST', `/api/v1/brokers/${encodeURIComponent(id)}/rotate-secret`);
  }
  /** `DELETE /api/v1/brokers/:id`. */
  deleteBroker(id: string): Promise<void> {
    return this.request('DELETE', `/api/v1/brokers/${encodeURIComponent(id)}`);
  }
}

/** The error a non-2xx answer stands for: the hub's error body, or its status when it sent none. */
function apiErrorOf(res: Response, text: string): GraftApiError {
  let body: ErrorBody | undefined;
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    body = undefined;
  }
  if (body?.error) return new GraftApiError(res.status, body.error.code, body.error.message, body.error.requestId, body.error.details);
  return new GraftApiError(res.status, 'unexpected_response', `hub answered ${res.status} ${res.statusText}`, res.headers.get('x-request-id') ?? undefined);
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Failures that a later attempt may not see: no connection, a hub (re)starting or overloaded. */
function isTransient(err: GraftApiError): boolean {
  return err.status === 0 || err.status === 429 || err.status >= 500;
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

type BodyReader = ReadableStreamDefaultReader<Uint8Array>;

function bodyReader(res: Response): BodyReader {
  if (res.body === null) throw new GraftApiError(res.status, 'unexpected_response', 'the hub sent no body', res.headers.get('x-request-id') ?? undefined);
  return res.body.getReader() as BodyReader;
}

/** The next piece of a body; a broken connection, or silence for `idleMs` (0: no limit), becomes a `network_error`. */
async function readOrFail(reader: BodyReader, idleMs: number): ReturnType<BodyReader['read']> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const read = reader.read();
    if (idleMs <= 0) return await read;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new GraftApiError(0, 'network_error', `the log stream was silent for ${idleMs} ms`, undefined)), idleMs);
    });
    return await Promise.race([read, idle]);
  } catch (err) {
    if (err instanceof GraftApiError) throw err;
    throw new GraftApiError(0, 'network_error', `lost the connection to the hub: ${messageOf(err)}`, undefined);
  } finally {
    clearTimeout(timer);
  }
}

interface ServerSentEvent {
  event: string;
  data: string;
}

/** Parses a `text/event-stream` body (WHATWG rules: `\n`, `\r\n` or `\r` line ends, comments, multi-line data). */
async function* readServerSentEvents(reader: BodyReader, idleMs: number): AsyncGenerator<ServerSentEvent, void> {
  const decoder = new TextDecoder();
  let pending = '';
  let event = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await readOrFail(reader, idleMs);
      if (done) return;
      pending += decoder.decode(value, { stream: true });
      let start = 0;
      const lineBreak = /\r\n|\r|\n/g;
      for (;;) {
        lineBreak.lastIndex = start;
        const found = lineBreak.exec(pending);
        if (found === null) break;
        const lineEnd = found.index;
        // A lone \r at the very end may be the first half of \r\n: wait for the next piece.
        if (pending[lineEnd] === '\r' && lineEnd + 1 === pending.length) break;
        const line = pending.slice(start, lineEnd);
        start = lineEnd + (pending.startsWith('\r\n', lineEnd) ? 2 : 1);
        if (line === '') {
          if (data.length > 0) yield { event: event === '' ? 'message' : event, data: data.join('\n') };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const fieldValue = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
        if (field === 'event') event = fieldValue;
        else if (field === 'data') data.push(fieldValue);
      }
      pending = pending.slice(start);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseLogChunk(data: string): LogChunkJson {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    json = undefined;
  }
  const parsed = LogChunkJson.safeParse(json);
  if (!parsed.success) throw new GraftApiError(200, 'unexpected_response', 'the hub sent a log event that is not a log chunk', undefined);
  return parsed.data;
}
