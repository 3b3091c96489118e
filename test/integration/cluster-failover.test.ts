/**
 * Losing an instance (issue 17), all real: two hub processes sharing PostgreSQL, Mosquitto and
 * InfluxDB behind HAProxy (test/harness/cluster.ts); one of them SIGKILLed under load.
 *
 * - WebSocket devices through the balancer: after kill -9 of instance a its devices continue on b
 *   (their reconnects reach b while a is still down); a restarts with the same data dir; then
 *   InfluxDB holds every reading the devices saw acknowledged exactly once, compared point by point
 *   (device, channel, time, value). Part of the fleet has an UNSYNCED clock for the whole run (it
 *   ignores WELCOME's time), so its readings are placed by the hub's per-(device, boot) time offset:
 *   frames a stored and b stored again (a replay after the lost ACKs) must land on the same points.
 * - An MQTT device through the broker: exactly one instance handles it; after kill -9 of its owner it
 *   continues on the other; nothing acknowledged is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimDevice } from '../../firmware-sim/device.ts';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { mqttConnector } from '../../firmware-sim/mqtt-link.ts';
import { MemoryRecorder } from '../../firmware-sim/recorder.ts';
import { type Cluster, type ClusterInstance, startCluster } from '../harness/cluster.ts';
import { until } from '../harness/until.ts';
import { compareExactlyOnce, firstOf } from './cluster-helpers.ts';

const SYNCED = fleetDeviceIds(14, 'fo-s-');
const UNSYNCED = fleetDeviceIds(6, 'fo-u-');
const MQTT_ID = 'fo-mq-0001';

let cluster: Cluster;
let tokens: Map<string, string>;

beforeAll(async () => {
  cluster = await startCluster({ bucket: 'failover' });
  tokens = await cluster.registerDevices([...SYNCED, ...UNSYNCED, MQTT_ID], { waitShared: false });
  await cluster.waitKnown([...SYNCED, ...UNSYNCED, MQTT_ID], { registeredOn: 'a', timeoutMs: 60_000 });
}, 240_000);

afterAll(async () => {
  await cluster?.stop();
});

/** Waits for `n` more acknowledged frames in `fleets` than `from`. */
async function ackedMore(what: string, fleets: Fleet[], n: number, timeoutMs = 120_000): Promise<void> {
  const acked = () => fleets.reduce((s, f) => s + f.snapshot().framesAcked, 0);
  const from = acked();
  await until(`${what}: ${n} more acknowledged frames (from ${from})`, () => acked() >= from + n, timeoutMs);
}

function report(what: string, r: ReturnType<typeof compareExactlyOnce>): void {
  console.log(
    `${what}: ${r.acked} acked readings, ${r.points} points; lost ${r.lost.length}, extra ${r.extra.length}, ` +
      `boots with split offsets ${r.offsets.length}`,
  );
  if (r.shiftedFrames.length > 0)
    console.log(`frames not where expected:\n  ${firstOf(r.shiftedFrames, 20).join('\n  ')}`);
}

describe('kill -9 of an instance', () => {
  it('under load: its devices continue on the other; after it restarts InfluxDB holds every acked reading exactly once', async () => {
    const recorder = new MemoryRecorder();
    const common = {
      url: cluster.lb.deviceUrl,
      tokens,
      rate: 2,
      recorder,
      startSpreadMs: 2000,
    };
    // A big outbox: nothing is dropped while a device moves, so every frame sent is acked in the end.
    const device = { backoff: { initialMs: 500, maxMs: 4000 }, outboxFrames: 4096 };
    const synced = new Fleet({ ...common, devices: SYNCED.length, idPrefix: 'fo-s-', seed: 1, device });
    const unsynced = new Fleet({
      ...common,
      devices: UNSYNCED.length,
      idPrefix: 'fo-u-',
      seed: 2,
      // Never synced: every frame of the run carries uptime and is placed by the hub's boot offset.
      device: { ...device, clockFault: { syncFromWelcome: false } },
    });
    const fleets = [synced, unsynced];
    const all = (): SimDevice[] => fleets.flatMap((f) => f.devices);
    try {
      for (const f of fleets) f.start();
      await until('all 20 devices online', () => all().every((d) => d.state === 'online'), 120_000);
      await ackedMore('load before the kill', fleets, 200);
      const before = await cluster.sessions();
      console.log('device sessions before the kill:', before);
      expect(before.a, 'devices on instance a before its kill').toBeGreaterThan(0);
      const sessionsBefore = new Map(all().map((d) => [d.id, d.stats.sessions]));
      const failed = (d: SimDevice) => d.stats.connectFailures + d.stats.handshakeRefusals;
      const failedBefore = new Map(all().map((d) => [d.id, failed(d)]));

      const killedAt = Date.now();
      await cluster.a.kill();
      // While a is down: every device is online again, on b, and acks go on.
      await until(
        'every device back online on b while a is down',
        async () => all().every((d) => d.state === 'online') && (await cluster.b.deviceSessions()) === 20,
        120_000,
      );
      const backOnB = Date.now() - killedAt;
      const moved = all().filter((d) => d.stats.sessions > (sessionsBefore.get(d.id) ?? 0));
      expect(moved.length, 'devices that reconnected (those of a)').toBeGreaterThanOrEqual(before.a ?? 0);
      // Within their backoff: a reconnect through the balancer reaches b at the first or second attempt
      // (the health check takes a out, a refused connection is retried elsewhere); no device waits for a.
      const failures = moved.map((d) => `${d.id}: ${failed(d) - (failedBefore.get(d.id) ?? 0)}`);
      console.log(
        `kill → all ${moved.length} moved devices online on b: ${backOnB} ms; failed attempts ${failures.join(', ')}`,
      );
      for (const d of moved) {
        expect(
          failed(d) - (failedBefore.get(d.id) ?? 0),
          `failed reconnects of ${d.id} after the kill`,
        ).toBeLessThanOrEqual(1);
      }
      await ackedMore('load on b alone', fleets, 200);
      expect(cluster.a.alive()).toBe(false);

      await cluster.a.restart();
      await cluster.lb.waitForServers('UP', ['a']);
      await ackedMore('load after a restarted', fleets, 200);

      const summaries = await Promise.all(fleets.map((f) => f.stop({ drainMs: 60_000 })));
      for (const s of summaries) {
        expect(s.outboxDepth, 'frames left unacknowledged in the outboxes').toBe(0);
        expect(s.totals.framesDropped).toBe(0);
      }
      // A WELCOME on b may be behind an ACK a sent just before its kill (the shared last ACK is
      // written behind, docs/scaling.md): the device keeps what it knows, nothing is replayed or lost.
      // Shown, not asserted.
      console.log(
        `WELCOMEs behind an ACK already received: ${summaries.map((s) => s.totals.ackRegressions).join(' + ')}`,
      );
      await cluster.forwarded();

      const acked = recorder.ackedReadings();
      const r = compareExactlyOnce(acked, await cluster.telemetryPoints('fo-'));
      report('WebSocket fleet', r);
      expect(acked.some((x) => x.unsynced)).toBe(true);
      expect(firstOf(r.offsets), 'unsynced boots stored with more than one time offset').toEqual([]);
      expect(firstOf(r.lost), 'acked readings missing from InfluxDB').toEqual([]);
      expect(firstOf(r.extra), 'points no acked reading explains (duplicates)').toEqual([]);
      expect(r.points).toBe(r.acked);
    } finally {
      await Promise.all(fleets.map((f) => f.stop({ drainMs: 0 })));
    }
  }, 600_000);

  it('an MQTT device is handled by exactly one instance; after kill -9 of its owner it continues on the other', async () => {
    await until('both instances up', () => cluster.instances.every((x) => x.alive()));
    // Ownership is decided over the members every instance sees: start once both are announced.
    await cluster.waitMembers(['a', 'b']);
    const recorder = new MemoryRecorder();
    const fleet = new Fleet({
      url: cluster.broker.url,
      connector: mqttConnector(),
      devices: 1,
      idPrefix: 'fo-mq-',
      tokens,
      seed: 3,
      rate: 2,
      recorder,
      device: { backoff: { initialMs: 500, maxMs: 4000 }, outboxFrames: 4096 },
    });
    const d = fleet.devices[0] as SimDevice;
    const owner = async (): Promise<ClusterInstance | null> => {
      const s = await cluster.sessions();
      const holding = cluster.instances.filter((x) => (s[x.id] ?? 0) > 0);
      return holding.length === 1 && s[holding[0]?.id as string] === 1 ? (holding[0] as ClusterInstance) : null;
    };
    try {
      fleet.start();
      await until(`${MQTT_ID} online over MQTT`, () => d.state === 'online', 60_000);
      await ackedMore(`${MQTT_ID} streaming`, [fleet], 20);
      const first = await until(`exactly one instance holding ${MQTT_ID}'s session`, owner, 30_000);
      // Still one after more traffic: the other instance does not take its frames.
      await ackedMore(`${MQTT_ID} streaming on ${first.id}`, [fleet], 20);
      expect((await owner())?.id, 'the instance holding the session').toBe(first.id);
      const errorsBefore = { ...d.stats.errorsByCode };

      await first.kill();
      const other = cluster.instances.find((x) => x !== first) as ClusterInstance;
      await until(
        `${MQTT_ID}'s session on ${other.id} after ${first.id} was killed`,
        async () => (await owner()) === other,
        60_000,
      );
      await ackedMore(`${MQTT_ID} streaming on ${other.id}`, [fleet], 20);
      console.log(
        `MQTT device errors after the kill: ${JSON.stringify(d.stats.errorsByCode)} (before ${JSON.stringify(errorsBefore)})`,
      );

      await first.restart();
      await until(`exactly one instance holding ${MQTT_ID}'s session after ${first.id} restarted`, owner, 60_000);
      await ackedMore(`${MQTT_ID} streaming after the restart`, [fleet], 20);

      const summary = await fleet.stop({ drainMs: 60_000 });
      expect(summary.outboxDepth, 'frames left unacknowledged').toBe(0);
      console.log(`MQTT device: WELCOMEs behind an ACK already received: ${summary.totals.ackRegressions}`);
      await cluster.forwarded();
      const r = compareExactlyOnce(recorder.ackedReadings(), await cluster.telemetryPoints('fo-mq-'));
      report('MQTT device', r);
      expect(firstOf(r.lost), 'acked readings missing from InfluxDB').toEqual([]);
      expect(firstOf(r.extra), 'points no acked reading explains (duplicates)').toEqual([]);
      expect(firstOf(r.offsets)).toEqual([]);
    } finally {
      await fleet.stop({ drainMs: 0 });
    }
  }, 600_000);
});
