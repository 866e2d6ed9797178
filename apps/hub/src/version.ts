/** The hub's version, reported by /healthz and the OpenAPI document. */
export const HUB_VERSION = '0.1.0';
