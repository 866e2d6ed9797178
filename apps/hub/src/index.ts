export { BOOTSTRAP_ADMIN_EMAIL } from './bootstrap.js';
export { ConfigError, type HubConfig, loadHubConfig } from './config.js';
export { type RunningHub, runMigrations, resolveDatabase, startHubServer } from './server.js';
export { HUB_VERSION } from './version.js';
