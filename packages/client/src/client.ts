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
    if (!res.ok) {
      let body: ErrorBody | undefined;
      try {
        body = JSON.parse(text) as ErrorBody;
      } catch {
        body = undefined;
      }
      if (body?.error) throw new GraftApiError(res.status, body.error.code, body.error.message, body.error.requestId, body.error.details);
      throw new GraftApiError(res.status, 'unexpected_response', `hub answered ${res.status} ${res.statusText}`, res.headers.get('x-request-id') ?? undefined);
    }
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
