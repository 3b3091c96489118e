/**
 * The live side of several instances, as `Cluster.attach` starts it (index.ts): the relay (live
 * events, presence, RPC; relay.ts) and commands for devices held elsewhere (remote-commands.ts).
 * The hub reaches them through `Cluster`: the commands API (`remoteCommands`) and the offline alert
 * rule (`onlineElsewhere`).
 */
import type { HubContext } from '../hub.ts';
import { createRelay, type MemberSource, type Relay, type RelayOptions } from './relay.ts';
import { type ClusterCommands, createRemoteCommands } from './remote-commands.ts';
import type { SessionClaim } from './store/types.ts';

export interface ClusterLive {
  readonly relay: Relay;
  readonly commands: ClusterCommands;
  stop(): Promise<void>;
}

export interface ClusterLiveOptions {
  instanceId: string;
  /** Membership (membership.ts); without it the relay learns instances from their interest records. */
  members?: MemberSource | null;
  /** Session claims (PostgreSQL): who holds a device, for commands. */
  store?: { sessionHolder(deviceId: string): Promise<SessionClaim | null> } | null;
  /** Relay tuning (tests). */
  relay?: Pick<RelayOptions, 'flushMs' | 'maxBatchBytes' | 'maxPendingBytes' | 'descriptorRefreshMs' | 'rpcTimeoutMs'>;
}

/** Starts the relay and remote commands on the hub's MQTT connection (cluster mode requires MQTT_URL). */
export function startClusterLive(ctx: HubContext, opts: ClusterLiveOptions): ClusterLive {
  const mqtt = ctx.mqtt;
  const prefix = ctx.config.mqtt?.topicPrefix;
  if (!mqtt || prefix === undefined) throw new Error('several instances need MQTT_URL (the bus between instances)');
  const relay = createRelay({
    instanceId: opts.instanceId,
    topicPrefix: prefix,
    client: mqtt.client,
    bus: ctx.bus,
    metrics: ctx.metrics,
    logger: ctx.logger,
    now: ctx.now,
    channelsOf: (id) => ctx.channelsOf(id),
    isLocalOnline: (id) => ctx.sessions.get(id)?.isReady() === true,
    members: opts.members ?? null,
    needsPresence: ctx.config.alerts.offline !== null,
    ...opts.relay,
  });
  const commands = createRemoteCommands({
    relay,
    commands: ctx.commands,
    session: (id) => ctx.sessions.get(id),
    bus: ctx.bus,
    logger: ctx.logger,
    store: opts.store ?? null,
  });
  relay.start();
  commands.start();
  return {
    relay,
    commands,
    async stop() {
      commands.stop();
      await relay.stop();
    },
  };
}
