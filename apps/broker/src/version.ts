/** The broker's version, reported in the join and every hello. */
export const BROKER_VERSION = '0.1.0';
