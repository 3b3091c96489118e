/**
 * Metrics of one part of the hub (alerts, MQTT bridge, ...) kept next to that part but registered on
 * the hub's registry: created at the first request for a registry, then the same set for every part
 * that asks again (a registry refuses a second metric of the same name), and separate sets for
 * separate hubs in one process.
 */
import type { Registry } from 'prom-client';
import type { Metrics } from './index.ts';

/** Wraps `create` (given the `registers` to pass to each metric) into a once-per-registry lookup. */
export function metricsPerRegistry<T>(create: (registers: Registry[]) => T): (metrics: Metrics) => T {
  const byRegistry = new WeakMap<Registry, T>();
  return (metrics) => {
    let set = byRegistry.get(metrics.registry);
    if (set === undefined) {
      set = create([metrics.registry]);
      byRegistry.set(metrics.registry, set);
    }
    return set;
  };
}
