/**
 * Per-device broker credentials and ACLs, driven by the hub's device registry, through Mosquitto's
 * dynamic-security plugin administered over MQTT (`$CONTROL/dynamic-security/v1`).
 *
 * Per device: a broker client `username = client id = <deviceId>`, `password = <its hub token>`
 * (the plugin stores only a salted PBKDF2-SHA512 hash; the hub never logs it), and a role
 * `esp32hub-device-<deviceId>` allowing exactly: publish to `<prefix>/v1/<deviceId>/up` and subscribe
 * to `<prefix>/v1/<deviceId>/down` (the plugin's defaults deny every other publish and subscribe).
 * Revoking deletes the client: the broker disconnects it at once (reason 0x98, administrative action).
 *
 * The hub's own login gets the role `esp32hub-hub` (subscribe to every up topic, publish to every down
 * topic). Adding a role to a connected client makes the plugin disconnect it, so the very first start
 * costs one reconnect.
 *
 * The registry keeps token hashes only, so credentials are granted where a token is issued: in the hub
 * process (admin API) and in the `devices` CLI ({@link connectDynsecAdmin}); see `docs/architecture.md` §9.
 */
import { randomUUID } from 'node:crypto';
import type { MqttConfig } from '../config/index.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { createHubMqttClient, type HubMqttClient } from './client.ts';
import { type Topics, topicsFor } from './topics.ts';

export const CONTROL_TOPIC = '$CONTROL/dynamic-security/v1';
export const RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';
export const HUB_ROLE = 'esp32hub-hub';
const DEVICE_ROLE_PREFIX = 'esp32hub-device-';
const COMMAND_TIMEOUT_MS = 5000;
const NO_RESPONSE = 'no response from the broker';

/** How device credentials reach the broker. */
export interface BrokerAccess {
  readonly kind: 'dynsec' | 'none';
  /** Lets `deviceId` log in with `password` and use only its own topics. */
  grant(deviceId: string, password: string): Promise<void>;
  /** Removes the device's login and disconnects it from the broker. */
  revoke(deviceId: string): Promise<void>;
  /**
   * Deletes broker logins of devices not in `active`; returns the active devices without one (their
   * tokens were issued where the hub could not see them).
   */
  reconcile(active: ReadonlySet<string>): Promise<string[]>;
}

/** The operator manages device logins and ACLs on the broker (`MQTT_DEVICE_ACCESS=none`). */
export const NO_BROKER_ACCESS: BrokerAccess = {
  kind: 'none',
  grant: async () => undefined,
  revoke: async () => undefined,
  reconcile: async () => [],
};

interface DynsecResponse {
  command: string;
  error?: string;
  data?: unknown;
  correlationData?: string;
}

export interface DynsecOptions {
  client: HubMqttClient;
  topics: Topics;
  /** The hub's own broker username (MQTT_USERNAME), given the hub role. */
  hubUsername: string | undefined;
  metrics: Metrics;
  logger: Logger;
}

export function createDynsecAccess(opts: DynsecOptions): BrokerAccess & { setup(): Promise<void> } {
  const { client, topics, metrics, logger } = opts;
  const pending = new Map<string, { resolve: (r: DynsecResponse) => void; timer: NodeJS.Timeout }>();

  client.subscribe(
    RESPONSE_TOPIC,
    (_topic, payload) => {
      let body: { responses?: DynsecResponse[] };
      try {
        body = JSON.parse(payload.toString('utf8'));
      } catch {
        return;
      }
      for (const r of body.responses ?? []) {
        const p = r.correlationData ? pending.get(r.correlationData) : undefined;
        if (!p) continue;
        pending.delete(r.correlationData as string);
        clearTimeout(p.timer);
        p.resolve(r);
      }
    },
    { early: true },
  );

  /** Sends one command and waits for its response (by correlation data). */
  function run(command: Record<string, unknown>): Promise<DynsecResponse> {
    const correlationData = randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(correlationData);
        resolve({ command: String(command.command), error: NO_RESPONSE });
      }, COMMAND_TIMEOUT_MS);
      timer.unref();
      pending.set(correlationData, { resolve, timer });
      client.publish(CONTROL_TOPIC, JSON.stringify({ commands: [{ ...command, correlationData }] }), { qos: 1 });
    });
  }

  function check(r: DynsecResponse, tolerated: string[] = []): void {
    if (r.error && !tolerated.some((t) => r.error?.includes(t))) {
      throw new HubError('MQTT_BROKER_ACCESS', `${r.command}: ${r.error}`);
    }
  }

  async function audited(action: string, deviceId: string | null, op: () => Promise<void>): Promise<void> {
    try {
      await op();
      metrics.mqttBrokerAccess.inc({ action, outcome: 'ok' });
    } catch (err) {
      metrics.mqttBrokerAccess.inc({ action, outcome: 'failed' });
      // The command is logged, never its password.
      logger.error(
        { code: 'MQTT_BROKER_ACCESS', action, deviceId, cause: (err as Error).message },
        `broker access ${action} failed`,
      );
      throw err;
    }
  }

  const roleOf = (deviceId: string) => `${DEVICE_ROLE_PREFIX}${deviceId}`;

  // Grants and revokes run one after the other: a rotation revokes the old login (from the registry's
  // revoked event) and grants the new one; interleaved, the revoke's deleteRole could land between the
  // grant's createRole and createClient.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = (op: () => Promise<void>): Promise<void> => {
    const result = chain.then(op, op);
    chain = result.catch(() => undefined);
    return result;
  };
  const revokeNow = (deviceId: string) =>
    audited('revoke', deviceId, async () => {
      // Deleting the client disconnects it at once.
      check(await run({ command: 'deleteClient', username: deviceId }), ['not found']);
      check(await run({ command: 'deleteRole', rolename: roleOf(deviceId) }), ['not found']);
    });

  return {
    kind: 'dynsec',

    /** The hub's own role (idempotent); run on every connect, before the subscriptions. */
    setup() {
      return audited('setup', null, async () => {
        check(
          await run({
            command: 'createRole',
            rolename: HUB_ROLE,
            textname: 'esp32hub: the hub (device up topics in, down topics out)',
            acls: [
              { acltype: 'subscribePattern', topic: topics.allUp, allow: true },
              { acltype: 'publishClientSend', topic: topics.down('+'), allow: true },
            ],
          }),
          ['already exists'],
        );
        if (!opts.hubUsername) return;
        const got = await run({ command: 'getClient', username: opts.hubUsername });
        check(got);
        const roles = (got.data as { client?: { roles?: { rolename: string }[] } } | undefined)?.client?.roles ?? [];
        if (roles.some((r) => r.rolename === HUB_ROLE)) return;
        logger.info({ role: HUB_ROLE }, 'giving the hub its broker role (the broker reconnects the hub once)');
        const added = await run({ command: 'addClientRole', username: opts.hubUsername, rolename: HUB_ROLE });
        // Mosquitto disconnects a client whose roles change, and its QoS 0 answer can be lost with that
        // connection. That is the expected outcome, not a failure: setup runs again on the reconnect and
        // checks the role (a refusal still fails, and a missing role then shows as refused subscriptions).
        if (added.error === NO_RESPONSE) {
          logger.info({ role: HUB_ROLE }, 'the broker reconnected the hub before answering; the role is checked again');
          return;
        }
        check(added);
      });
    },

    grant(deviceId, password) {
      return serial(() =>
        audited('grant', deviceId, async () => {
          check(
            await run({
              command: 'createRole',
              rolename: roleOf(deviceId),
              acls: [
                { acltype: 'publishClientSend', topic: topics.up(deviceId), allow: true },
                { acltype: 'subscribePattern', topic: topics.down(deviceId), allow: true },
              ],
            }),
            ['already exists'],
          );
          const created = await run({
            command: 'createClient',
            username: deviceId,
            clientid: deviceId,
            password,
            roles: [{ rolename: roleOf(deviceId) }],
          });
          if (created.error?.includes('already exists')) {
            // A rotated token: the new password replaces the old one (the plugin kicks the old login).
            check(await run({ command: 'setClientPassword', username: deviceId, password }));
            check(await run({ command: 'enableClient', username: deviceId }));
          } else check(created);
        }),
      );
    },

    revoke(deviceId) {
      return serial(() => revokeNow(deviceId));
    },

    async reconcile(active) {
      const listed = await run({ command: 'listClients', verbose: false });
      check(listed);
      const names = (listed.data as { clients?: string[] } | undefined)?.clients ?? [];
      const onBroker = new Set<string>();
      for (const name of names) {
        if (name === opts.hubUsername) continue;
        const roles = await run({ command: 'getClient', username: name });
        const roleNames =
          (roles.data as { client?: { roles?: { rolename: string }[] } } | undefined)?.client?.roles ?? [];
        if (!roleNames.some((r) => r.rolename === roleOf(name))) continue; // not a device login of ours
        onBroker.add(name);
        if (!active.has(name)) {
          logger.info({ deviceId: name }, 'removing the broker login of a device that is revoked or unknown');
          await serial(() => revokeNow(name)).catch(() => undefined);
        }
      }
      return [...active].filter((id) => !onBroker.has(id));
    },
  };
}

/**
 * Several instances (server/cluster/): the hub's role also publishes, subscribes and receives on
 * `<prefix>/cluster/#` (member records and their will, the relay between instances). Sent as
 * `addRoleACL` commands on every connect, before the subscriptions, like the bridge's rights (an ACL
 * the role already has is refused by the plugin and changes nothing). Mosquitto checks the will
 * against the ACLs when it publishes it: without these rights a dead instance's record would stay.
 */
export function clusterRoleAcls(topics: Topics): Record<string, unknown>[] {
  const acls: [acltype: string, topic: string][] = [
    ['publishClientSend', topics.clusterAll],
    ['subscribePattern', topics.clusterAll],
    ['publishClientReceive', topics.clusterAll],
  ];
  return acls.map(([acltype, topic]) => ({ command: 'addRoleACL', rolename: HUB_ROLE, acltype, topic, allow: true }));
}

/**
 * A short-lived administrative connection for another process (the `devices` CLI): the hub's broker
 * login under its own client id (`<MQTT_CLIENT_ID>-admin-<random>`, no persistent session, so the
 * hub's connection and session are untouched). Resolves once connected; rejects with
 * `MQTT_BROKER_ACCESS` if the broker cannot be reached or refuses the login within `timeoutMs`.
 */
export async function connectDynsecAdmin(opts: {
  config: Readonly<MqttConfig>;
  metrics: Metrics;
  logger: Logger;
  timeoutMs?: number;
}): Promise<{ access: BrokerAccess; close(): Promise<void> }> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const config = {
    ...opts.config,
    clientId: `${opts.config.clientId}-admin-${randomUUID().slice(0, 8)}`,
    sessionExpirySec: 0,
  };
  const client = createHubMqttClient({ ...opts, config, connectTimeoutMs: timeoutMs, minRetryMs: timeoutMs });
  const access = createDynsecAccess({
    client,
    topics: topicsFor(config.topicPrefix),
    hubUsername: config.username,
    metrics: opts.metrics,
    logger: opts.logger,
  });
  let connected = false;
  client.onConnect(() => {
    connected = true;
  });
  client.start();
  const deadline = Date.now() + timeoutMs;
  while (!client.isConnected()) {
    const { state, lastError } = client.status();
    if ((!connected && (state === 'unreachable' || state === 'not_authorized')) || Date.now() > deadline) {
      await client.stop(0);
      const cause = lastError?.message ?? `no connection within ${timeoutMs} ms`;
      throw new HubError('MQTT_BROKER_ACCESS', `MQTT broker ${client.status().broker}: ${cause}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { access, close: () => client.stop(1000) };
}
