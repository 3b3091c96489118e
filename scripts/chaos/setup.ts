/** What every chaos scenario sets up: a temp dir, the hub process, registered devices and the fleet. */
import { join } from 'node:path';
import { freePort, type InfluxServer, type TempDir, tempDir } from '../../test/harness/index.ts';
import { ChaosFleet, waitFor } from './fleet.ts';
import {
  type HubProcess,
  type HubProcessOptions,
  newAdminToken,
  registerDevices,
  startHubProcess,
} from './hub-process.ts';

export interface FleetSize {
  /** Devices in the fleet. */
  devices: number;
  /** Readings per second over the fleet. */
  rate: number;
}

/** Progress lines (stderr for the CLI, nothing in tests unless asked). */
export type Say = (line: string) => void;

export interface Stage {
  dir: TempDir;
  hubOptions: HubProcessOptions;
  hub: HubProcess;
  fleet: ChaosFleet;
  adminToken: string;
  /** Stops the hub (SIGKILL) and starts a new one on the same port and data dir; waits for /readyz. */
  restartHub(signal?: NodeJS.Signals): Promise<HubProcess>;
  /** Closes the fleet, stops the hub and removes the temp dir. */
  teardown(): Promise<void>;
}

export interface StageOptions extends FleetSize {
  label: string;
  influx?: InfluxServer;
  /** Data directory (default: `<temp dir>/data`). */
  dataDir?: string;
  /** More hub environment. */
  env?: Record<string, string>;
  say: Say;
}

/** Starts the hub, registers the devices over the admin API, starts the fleet and waits for every device's first ACK. */
export async function stage(o: StageOptions): Promise<Stage> {
  const dir = await tempDir(`chaos-${o.label}`);
  const adminToken = newAdminToken();
  const hubOptions: HubProcessOptions = {
    dataDir: o.dataDir ?? join(dir.path, 'data'),
    port: await freePort(),
    adminToken,
    logDir: dir.path,
    ...(o.influx ? { influx: o.influx } : {}),
    ...(o.env ? { env: o.env } : {}),
  };
  let hub = startHubProcess(hubOptions);
  let fleet: ChaosFleet | null = null;
  const teardown = async () => {
    await fleet?.close();
    await hub.stop();
    await dir.remove();
  };
  try {
    await hub.ready();
    o.say(`hub up on ${hub.baseUrl} (logs in ${dir.path})`);
    const ids = Array.from({ length: o.devices }, (_, i) => `chaos-${o.label}-${String(i).padStart(3, '0')}`);
    const devices = await registerDevices(hub.baseUrl, adminToken, ids);
    fleet = new ChaosFleet({ url: hub.wsUrl, devices, readingsPerSec: o.rate });
    const f = fleet;
    f.start();
    f.mark();
    await waitFor(() => f.allAckedSinceMark() !== null, 'every device got its first ACK', 60_000);
    o.say(
      `fleet: ${o.devices} devices, ${Math.round(f.readingsPerSec)} readings/s (a sample of 4 channels every ${f.samplePeriodMs} ms per device)`,
    );
    return {
      dir,
      hubOptions,
      get hub() {
        return hub;
      },
      fleet: f,
      adminToken,
      async restartHub(signal = 'SIGKILL') {
        await hub.stop(signal);
        hub = startHubProcess(hubOptions);
        await hub.ready();
        return hub;
      },
      teardown,
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}

/** Stops sampling and waits until every frame is acknowledged (devices replay what they must). */
export async function drainFleet(s: Stage, timeoutMs = 180_000): Promise<void> {
  s.fleet.stopSampling();
  await waitFor(
    () => s.fleet.unackedFrames() === 0 || !s.hub.alive(),
    `every frame acknowledged (${s.fleet.unackedFrames()} left)`,
    timeoutMs,
  );
  if (!s.hub.alive()) throw new Error(`the hub exited while the fleet drained:\n${s.hub.proc.logTail(20)}`);
}

/** Waits until the forwarder has written everything in the local log to InfluxDB. */
export async function forwarderCaughtUp(s: Stage, timeoutMs = 600_000): Promise<void> {
  await waitFor(
    async () => (await s.hub.metric('hub_local_log_unforwarded_frames')) === 0,
    'the forwarder wrote the whole local log to InfluxDB',
    timeoutMs,
    200,
  );
}
