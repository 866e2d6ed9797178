export * from './agent-client.js';
export * from './config.js';
export * from './hook-mapping.js';
export * from './inbox-reader.js';
export * from './token-expiry.js';
