export * from './client.js';
export * from './unix-socket-fetch.js';
