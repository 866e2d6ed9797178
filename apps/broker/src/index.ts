export { type BrokerTools, type RunningBroker, startBroker } from './broker.js';
export { AVAILABLE_RUNTIMES, type BrokerConfig, BrokerConfigError, loadBrokerConfig } from './config.js';
export { BrokerCredentials, CredentialsError, credentialsPath, readBrokerCredentials } from './credentials.js';
export { BROKER_VERSION } from './version.js';
export type { AgentRuntime, AgentTools } from './runtime/agent-runtime.js';
export { BwrapRuntime } from './runtime/bwrap-runtime.js';
export { ProcessRuntime } from './runtime/process-runtime.js';
export { DockerRuntime } from './runtime/docker-runtime.js';
