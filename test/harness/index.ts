/**
 * Real-server test harness: InfluxDB (1.x engine + nginx serving `/api/v2/write`), Mosquitto,
 * HAProxy, Chromium, free ports, temp dirs and a safety net that leaves nothing running.
 * See docs/testing.md.
 */
export {
  CHROMIUM_ARGS,
  findChromium,
  type LoopbackSite,
  launchChromium,
  type PageRoute,
  servePage,
} from './chromium.ts';
export { pendingCleanups, registerCleanup, stopAll } from './cleanup.ts';
export {
  type HaproxyBackend,
  type HaproxyServer,
  type HaproxyServerState,
  haproxyConfig,
  type StartHaproxyOptions,
  startHaproxy,
} from './haproxy.ts';
export {
  type InfluxQLEpoch,
  InfluxQLError,
  type InfluxQLOptions,
  type InfluxQLResult,
  type InfluxQLSeries,
  type InfluxServer,
  influxEnv,
  quoteIdent,
  type StartInfluxOptions,
  startInflux,
} from './influx.ts';
export { type MosquittoServer, type StartMosquittoOptions, startMosquitto } from './mosquitto.ts';
export { freePort, freePorts } from './ports.ts';
export { type PostgresServer, type StartPostgresOptions, startPostgres } from './postgres.ts';
export {
  findExecutable,
  type ServerDir,
  type ServerProcess,
  ServerStartError,
  startInServerDir,
  startProcess,
  startServerProcess,
  waitForReady,
} from './process.ts';
export { type TempDir, tempDir } from './temp.ts';
export { until, untilValue } from './until.ts';
