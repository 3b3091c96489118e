/**
 * Commands for devices whose session is on another instance (docs/scaling.md "Live
 * view and commands across instances"). `POST /api/devices/:id/commands` on A for a device held by
 * B: A finds the holder (the shared session claims when a cluster store is given, else the relayed
 * presence), asks B over the relay's RPC (MQTT 5 request/response) to issue it; B sends it through
 * its own session and command tracker and answers the record, which A answers with 202 as for a
 * local device. `GET …/commands/:commandId` on A: from a cache fed by the RPC answers and the relayed
 * command updates (`remote:command`) when the command is finished, else asked from the instance that
 * issued it. No holder anywhere: `null` (the route answers 409 DEVICE_OFFLINE); no answer in time:
 * CLUSTER_RPC_TIMEOUT (504).
 */
import type { CommandArg } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import type { CommandUpdate, HubEventBus } from '../events.ts';
import { type CommandView, commandToView, type RemoteCommands } from '../http/commands.ts';
import type { Logger } from '../log/index.ts';
import { type CommandTracker, parseCommandRequest } from '../pipeline/commands.ts';
import type { Relay } from './relay.ts';
import type { SessionClaim } from './store/types.ts';

export interface RemoteCommandsOptions {
  relay: Relay;
  commands: CommandTracker;
  /** The device's local session, if ready. */
  session(
    deviceId: string,
  ): { isReady(): boolean; sendCommand(id: number, name: string, args: CommandArg[]): void } | undefined;
  bus: HubEventBus;
  logger: Logger;
  /** The shared session claims (PostgreSQL), when there is a cluster store. */
  store?: { sessionHolder(deviceId: string): Promise<SessionClaim | null> } | null;
  /** Commands of other instances remembered at most. Default 1000 (as the tracker's table). */
  maxCached?: number;
}

export interface ClusterCommands extends RemoteCommands {
  start(): void;
  stop(): void;
}

const FINAL = new Set<CommandView['state']>(['done', 'failed', 'timeout']);

export function createRemoteCommands(opts: RemoteCommandsOptions): ClusterCommands {
  const { relay, bus } = opts;
  const logger = opts.logger.child({ component: 'cluster-commands' });
  const maxCached = opts.maxCached ?? 1000;
  /** Commands issued on other instances for this one's API: the record and who holds it. */
  const cache = new Map<string, { view: CommandView; instanceId: string }>();
  const key = (deviceId: string, commandId: number) => `${deviceId}\u0000${commandId}`;

  function remember(view: CommandView, instanceId: string): void {
    const k = key(view.deviceId, view.commandId);
    cache.delete(k);
    cache.set(k, { view, instanceId });
    if (cache.size > maxCached) cache.delete(cache.keys().next().value as string);
  }

  const onRemoteCommand = (u: CommandUpdate, instanceId: string): void => {
    const cached = cache.get(key(u.deviceId, u.commandId));
    if (!cached || cached.instanceId !== instanceId) return;
    const v = cached.view;
    v.state = u.state;
    v.status = u.status ?? v.status;
    v.message = u.message ?? v.message;
    v.updatedAtMs = Math.max(v.updatedAtMs, u.atMs);
  };

  /** The other instance holding the device's session, or null (none, or this one). */
  async function holderOf(deviceId: string): Promise<string | null> {
    if (opts.store) {
      try {
        const claim = await opts.store.sessionHolder(deviceId);
        if (claim) return claim.instanceId === relay.instanceId ? null : claim.instanceId;
      } catch (err) {
        logger.warn({ err, device: deviceId }, 'session holder lookup failed; using relayed presence');
      }
    }
    return relay.holderOf(deviceId);
  }

  // Served for other instances: issue through this instance's session and tracker.
  relay.handle('command.send', (params) => {
    const p = params as { deviceId?: unknown; name?: unknown; args?: unknown };
    if (typeof p?.deviceId !== 'string') throw new HubError('BAD_REQUEST', 'deviceId missing');
    const { name, args } = parseCommandRequest({ name: p.name, args: p.args });
    const session = opts.session(p.deviceId);
    if (!session?.isReady()) throw new HubError('DEVICE_OFFLINE', `${p.deviceId} is not connected here`);
    const commandId = opts.commands.nextId();
    session.sendCommand(commandId, name, args);
    return commandToView(opts.commands.record(p.deviceId, commandId, name, args));
  });
  relay.handle('command.get', (params) => {
    const p = params as { deviceId?: unknown; commandId?: unknown };
    if (typeof p?.deviceId !== 'string' || typeof p.commandId !== 'number') {
      throw new HubError('BAD_REQUEST', 'deviceId and commandId required');
    }
    const rec = opts.commands.get(p.deviceId, p.commandId);
    if (!rec) throw new HubError('NOT_FOUND', 'no such command');
    return commandToView(rec);
  });

  return {
    start() {
      bus.on('remote:command', onRemoteCommand);
    },
    stop() {
      bus.off('remote:command', onRemoteCommand);
    },
    async send(deviceId, name, args) {
      const holder = await holderOf(deviceId);
      if (holder === null) return null;
      try {
        const view = (await relay.call(holder, 'command.send', {
          deviceId,
          name,
          args: Object.fromEntries(args.map((a) => [a.key, a.value])),
        })) as CommandView;
        remember(view, holder);
        return view;
      } catch (err) {
        // It left that instance meanwhile: online nowhere as far as we know.
        if (err instanceof HubError && err.code === 'DEVICE_OFFLINE') return null;
        throw err;
      }
    },
    async get(deviceId, commandId) {
      const cached = cache.get(key(deviceId, commandId));
      if (cached && FINAL.has(cached.view.state)) return cached.view;
      const target = cached?.instanceId ?? (await holderOf(deviceId));
      if (target === null) return null;
      try {
        const view = (await relay.call(target, 'command.get', { deviceId, commandId })) as CommandView;
        remember(view, target);
        return view;
      } catch (err) {
        if (cached) return cached.view; // the last state we heard of
        if (err instanceof HubError && err.code === 'NOT_FOUND') return null;
        throw err;
      }
    },
  };
}
