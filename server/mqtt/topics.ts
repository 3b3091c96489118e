/**
 * Topic names of the MQTT device transport [PROTO-1.6]: `<prefix>/v1/<deviceId>/up` (device → hub,
 * QoS 1) and `<prefix>/v1/<deviceId>/down` (hub → device). Device ids never contain `/`, `+` or `#`
 * (their alphabet is [PROTO-2.8]), so a topic names exactly one device. Hub instances talk to each
 * other under `<prefix>/cluster/v1/...` (server/cluster/).
 */
import { isDeviceId } from '../codec/index.ts';

export interface Topics {
  /** `<prefix>/v1/<deviceId>/up`. */
  up(deviceId: string): string;
  /** `<prefix>/v1/<deviceId>/down`. */
  down(deviceId: string): string;
  /** The hub's subscription: `<prefix>/v1/+/up`. */
  readonly allUp: string;
  /** The device id an up topic names, or null when the topic is not one. */
  deviceOfUp(topic: string): string | null;
  /** `<prefix>/cluster/v1/<path>`: the topics between hub instances (docs/scaling.md). */
  cluster(path: string): string;
  /** `<prefix>/cluster/#`: every cluster topic (the hub role's ACL). */
  readonly clusterAll: string;
}

export function topicsFor(prefix: string): Topics {
  const head = `${prefix}/v1/`;
  return {
    cluster: (path) => `${prefix}/cluster/v1/${path}`,
    clusterAll: `${prefix}/cluster/#`,
    up: (id) => `${head}${id}/up`,
    down: (id) => `${head}${id}/down`,
    allUp: `${head}+/up`,
    deviceOfUp(topic) {
      if (!topic.startsWith(head) || !topic.endsWith('/up')) return null;
      const id = topic.slice(head.length, -3);
      return isDeviceId(id) ? id : null;
    },
  };
}
