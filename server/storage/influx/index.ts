/** InfluxDB storage: the forwarder (local log → InfluxDB), hub stats points, and InfluxQL history. */
export { createInfluxForwarder, type ForwarderDeps, type ForwarderStatus, type InfluxForwarder } from './forwarder.ts';
export { createInfluxHistory, type HistoryQuery, type InfluxHistory, type InfluxQLResult } from './history.ts';
export { MEASUREMENT, STATE_FIELD, STATS_MEASUREMENT, VALUE_FIELD } from './line-protocol.ts';
export { createStatsWriter, type StatsWriter } from './stats.ts';
