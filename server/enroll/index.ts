/**
 * Self-enrollment of boards [PROTO-8] (docs/provisioning.md): the `/v1/enroll` endpoint, the durable
 * enrollment store in the data dir, the decisions and token hand-over, the operator API, and the
 * firmware images the "Add a board" page flashes. `startEnrollment` wires them into a running hub:
 *
 * ```ts
 * const enrollment = await startEnrollment({ config, registry, router, metrics, logger, now, guard, readGuard });
 * gateway.registerUpgrade(ENROLL_PATH, enrollment.handleUpgrade);   // unless ENROLL_MODE=off
 * ...
 * await enrollment.stop();
 * ```
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HubConfig } from '../config/index.ts';
import type { Guard, Router } from '../http/router.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { DeviceRegistry } from '../registry/index.ts';
import { createEnrollEndpoint } from './endpoint.ts';
import { registerFirmwareRoutes } from './firmware.ts';
import { registerEnrollRoutes } from './routes.ts';
import { createEnrollService } from './service.ts';
import { openEnrollStore } from './store.ts';
import { registerWebToolsRoutes } from './web-tools.ts';

export { ENROLL_PATH } from '../codec/index.ts';

export interface EnrollmentOptions {
  config: Readonly<HubConfig>;
  registry: Pick<DeviceRegistry, 'add' | 'rotate' | 'get'>;
  router: Router;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  /** Who may decide (the commands API's guard: operators, admin token). */
  guard: Guard;
  /** Who may read the firmware manifests and images (dashboard access, admin token). */
  readGuard: Guard;
}

export interface Enrollment {
  /** The `/v1/enroll` upgrade handler (registered unless ENROLL_MODE=off). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Open enrollment sockets. */
  connections(): number;
  stop(): Promise<void>;
}

export async function startEnrollment(o: EnrollmentOptions): Promise<Enrollment> {
  const store = openEnrollStore({
    dataDir: o.config.storage.dataDir,
    logger: o.logger,
    ttlSec: o.config.enroll.pendingTtlSec,
    now: o.now,
  });
  const service = createEnrollService({
    config: o.config.enroll,
    store,
    registry: o.registry,
    metrics: o.metrics,
    logger: o.logger,
    now: o.now,
  });
  await service.start();
  const endpoint = createEnrollEndpoint({
    config: o.config,
    service,
    metrics: o.metrics,
    logger: o.logger,
    now: o.now,
  });
  const deviceExists = (id: string) => o.registry.get(id) !== undefined;
  registerEnrollRoutes(o.router, { store, deviceExists, now: o.now, guard: o.guard, logger: o.logger });
  registerFirmwareRoutes(o.router, {
    dataDir: o.config.storage.dataDir,
    guard: o.guard,
    readGuard: o.readGuard,
    logger: o.logger,
  });
  registerWebToolsRoutes(o.router);
  return {
    handleUpgrade: endpoint.handleUpgrade,
    connections: endpoint.connections,
    async stop() {
      endpoint.stop();
      service.stop();
      await store.close();
    },
  };
}
