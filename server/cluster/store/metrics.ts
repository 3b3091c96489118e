/** Metrics of the cluster store (docs/scaling.md "Shared state in PostgreSQL"). */
import { Counter, Gauge } from 'prom-client';
import { metricsPerRegistry } from '../../metrics/per-registry.ts';

export const storeMetrics = metricsPerRegistry((registers) => ({
  up: new Gauge({
    name: 'hub_cluster_db_up',
    help: '1 while the cluster database (PostgreSQL) is connected and listened to, 0 during an outage',
    registers,
  }),
  errors: new Counter({
    name: 'hub_cluster_db_errors_total',
    help: 'Cluster database operations that failed, by operation',
    labelNames: ['op'] as const,
    registers,
  }),
  outages: new Counter({
    name: 'hub_cluster_db_outages_total',
    help: 'Times the cluster database became unreachable (each outage once)',
    registers,
  }),
  reconnects: new Counter({
    name: 'hub_cluster_db_reconnects_total',
    help: 'Times the listening connection to the cluster database came back (each followed by a resync)',
    registers,
  }),
  notifications: new Counter({
    name: 'hub_cluster_db_notifications_total',
    help: 'Change notifications received from the cluster database, by channel',
    labelNames: ['channel'] as const,
    registers,
  }),
  savedDevices: new Counter({
    name: 'hub_cluster_db_saved_devices_total',
    help: 'Device states written to the cluster database by saveDeviceStates (the write-behind)',
    registers,
  }),
}));

export type StoreMetrics = ReturnType<typeof storeMetrics>;
