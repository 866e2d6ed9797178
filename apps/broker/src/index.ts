export { type BrokerTools, type RunningBroker, startBroker } from './broker.js';
export { AVAILABLE_RUNTIMES, type BrokerConfig, BrokerConfigError, loadBrokerConfig } from './config.js';
export { BrokerCredentials, CredentialsError, credentialsPath, readBrokerCredentials } from './credentials.js';
export { BROKER_VERSION } from './version.js';
