/**
 * OTA updates on the hub (docs/ota.md): the signed image store, the admin routes, the `ota` command
 * [PROTO-3.6] with a per-device download credential, and the throttled download endpoint.
 */
import { readFileSync } from 'node:fs';
import { type CommandArg, ValueType } from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import { HubError } from '../errors.ts';
import type { HubEventBus } from '../events.ts';
import type { Guard, Router } from '../http/router.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { CommandRecord, CommandTracker } from '../pipeline/commands.ts';
import type { SessionTable } from '../transport/device-session.ts';
import { type Campaigns, openCampaigns } from './campaign.ts';
import { registerCampaignRoutes } from './campaign-routes.ts';
import { createOtaCredentials, type OtaCredentials } from './credentials.ts';
import { type OtaMetrics, otaMetrics } from './metrics.ts';
import { registerOtaRoutes } from './routes.ts';
import { parsePublicKey } from './signing.ts';
import { type OtaImage, type OtaStore, openOtaStore } from './store.ts';
import { createDownloadThrottle } from './throttle.ts';

export interface OtaOptions {
  config: Readonly<HubConfig>;
  router: Router;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  sessions: SessionTable;
  commands: CommandTracker;
  guard: Guard;
  readGuard: Guard;
  bus: HubEventBus;
  /** Registered, not revoked device ids (campaign targets). */
  knownDevices: () => string[];
  /**
   * Several instances: the other instance holding a device's session, if any ({@link otaHolderIn}).
   * OTA stays per instance (its images, download credentials and image URL are the instance's own),
   * so an update for a board held elsewhere is refused with OTA_DEVICE_ON_OTHER_INSTANCE naming the
   * instance to send it to, instead of DEVICE_OFFLINE.
   */
  holderElsewhere?: (deviceId: string) => Promise<OtaHolder | null>;
}

export interface OtaHolder {
  instanceId: string;
  /** Its HUB_PUBLIC_URL as its membership record says, when known. */
  url: string | null;
}

/** The other instance holding a device, from the session claims in PostgreSQL and the members' records. */
export function otaHolderIn(cluster: {
  instanceId: string;
  store: { sessionHolder(deviceId: string): Promise<{ instanceId: string } | null> };
  membership: { member(id: string): { url: string | null } | undefined | null } | null;
}): (deviceId: string) => Promise<OtaHolder | null> {
  return async (deviceId) => {
    const claim = await cluster.store.sessionHolder(deviceId);
    if (claim === null || claim.instanceId === cluster.instanceId) return null;
    return { instanceId: claim.instanceId, url: cluster.membership?.member(claim.instanceId)?.url ?? null };
  };
}

export interface Ota {
  store: OtaStore;
  credentials: OtaCredentials;
  metrics: OtaMetrics;
  campaigns: Campaigns;
  /** Sends the `ota` command for `image` to a connected board (DEVICE_OFFLINE when it is not). */
  sendUpdate(deviceId: string, image: OtaImage): CommandRecord;
  /** The port the hub listens on (the image URL's port when HUB_PUBLIC_URL says port 0). */
  setListeningPort(port: number): void;
  stop(): Promise<void>;
}

/** Loads the OTA public key named by the config; null when none is set. */
export function loadOtaPublicKey(config: Readonly<HubConfig>) {
  const file = config.ota.publicKeyFile;
  if (file === null) return null;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new HubError('CONFIG_INVALID', `OTA_PUBLIC_KEY_FILE: cannot read ${file} (${(err as Error).message})`);
  }
  return parsePublicKey(pem);
}

export function startOta(o: OtaOptions): Ota {
  const logger = o.logger.child({ component: 'ota' });
  const store = openOtaStore({
    dataDir: o.config.storage.dataDir,
    maxImages: o.config.ota.maxImages,
    maxImageBytes: o.config.ota.maxImageBytes,
    publicKey: loadOtaPublicKey(o.config),
    now: o.now,
  });
  const credentials = createOtaCredentials({ ttlMs: o.config.ota.credentialTtlSec * 1000, now: o.now });
  const throttle = createDownloadThrottle({
    maxConcurrent: o.config.ota.maxConcurrentDownloads,
    bytesPerSec: o.config.ota.maxBytesPerSec,
  });
  const metrics = otaMetrics(o.metrics);
  let port: number | null = null;
  const imageUrl = (id: string) => {
    const url = new URL(o.config.server.publicUrl);
    if (port !== null && (url.port === '0' || url.port === '')) url.port = String(port);
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/ota/images/${id}`;
    url.search = '';
    url.hash = '';
    return url.toString();
  };
  const sendUpdate = (deviceId: string, image: OtaImage): CommandRecord => {
    const session = o.sessions.get(deviceId);
    if (!session?.isReady()) throw new HubError('DEVICE_OFFLINE', `${deviceId} is not connected`);
    const args: CommandArg[] = [
      { key: 'url', valueType: ValueType.STRING, value: imageUrl(image.id) },
      { key: 'credential', valueType: ValueType.STRING, value: credentials.issue(deviceId, image.id) },
      { key: 'sha256', valueType: ValueType.STRING, value: image.sha256 },
      { key: 'signature', valueType: ValueType.STRING, value: image.signature },
      { key: 'version', valueType: ValueType.STRING, value: image.version },
      { key: 'size', valueType: ValueType.U32, value: image.size },
    ];
    const commandId = o.commands.nextId();
    session.sendCommand(commandId, 'ota', args);
    logger.info({ deviceId, imageId: image.id, version: image.version, commandId }, 'OTA command sent');
    // The record keeps the arguments for the API: never the credential.
    const shown = args.map((a) => (a.key === 'credential' ? { ...a, value: '(hidden)' } : a));
    return o.commands.record(deviceId, commandId, 'ota', shown);
  };
  const campaigns = openCampaigns({
    dataDir: o.config.storage.dataDir,
    store,
    bus: o.bus,
    metrics,
    logger,
    now: o.now,
    knownDevices: o.knownDevices,
    isOnline: (id) => o.sessions.get(id)?.isReady() === true,
    send: (id, image) => sendUpdate(id, image).commandId,
    resultTimeoutMs: o.config.ota.resultTimeoutSec * 1000,
  });
  registerCampaignRoutes(o.router, { campaigns, guard: o.guard, readGuard: o.readGuard });
  registerOtaRoutes(o.router, {
    store,
    credentials,
    throttle,
    metrics,
    logger,
    guard: o.guard,
    readGuard: o.readGuard,
    sendUpdate: async (deviceId, imageId) => {
      if (o.holderElsewhere && !o.sessions.get(deviceId)?.isReady()) {
        const holder = await o.holderElsewhere(deviceId);
        if (holder) {
          throw new HubError(
            'OTA_DEVICE_ON_OTHER_INSTANCE',
            `${deviceId} is connected to instance ${holder.instanceId}${holder.url ? ` (${holder.url})` : ''}: send its OTA update there (images, download credentials and campaigns are per instance)`,
          );
        }
      }
      const rec = sendUpdate(deviceId, await store.get(imageId));
      return { ...rec, args: Object.fromEntries(rec.args.map((a) => [a.key, a.value])) };
    },
  });
  return {
    store,
    credentials,
    metrics,
    campaigns,
    sendUpdate,
    setListeningPort(p) {
      port = p;
    },
    stop: () => campaigns.stop(),
  };
}
