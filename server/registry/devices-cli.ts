/**
 * `npm run hub -- devices <add|list|revoke|rotate|pending|approve|reject|forget>`: the operator's side of
 * the registry and of board enrollment (server/enroll/cli.ts). Works on
 * the same store file as a running hub (see store.ts); a revoke or rotate here closes the device's
 * live socket in the hub within a second. With MQTT_DEVICE_ACCESS=dynsec it also creates, replaces or
 * deletes the device's broker login (server/mqtt/dynsec.ts), as the hub's admin API does; a broker it
 * cannot reach leaves the registry change in place and exits 1 naming the retry. With CLUSTER_DATABASE_URL
 * (several instances) it works on the cluster registry in PostgreSQL instead (server/cluster/store/), whose
 * changes every instance applies within a second. Side-effect free at import: `server/cli.ts` calls
 * {@link runDevicesCli} with argv, env and the standard streams.
 */
import { closeSync, fchmodSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { type CliIo, cliConfig, EXIT, failed, HUB_CLI_OPTIONS, parseCli, pick, printJson } from '../cli-args.ts';
import { openClusterStore } from '../cluster/store/index.ts';
import { ConfigError, ENV_SCHEMA, loadConfig, type MqttConfig } from '../config/index.ts';
import { ENROLL_COMMANDS, ENROLL_USAGE, type EnrollCommand, runEnrollCommand } from '../enroll/cli.ts';
import { HubError } from '../errors.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { createMetrics } from '../metrics/index.ts';
import { type BrokerAccess, connectDynsecAdmin } from '../mqtt/dynsec.ts';
import { deviceUrlFrom } from './device-url.ts';
import { type DeviceInfo, type DeviceRegistry, type IssuedToken, openDeviceRegistry } from './registry.ts';

export const DEVICES_USAGE = `Usage: npm run hub -- devices <command> [options]

Commands:
  add <id>...        register one or more devices and print each new token once
  list               list devices: id, status, created, last rotated, revoked
  revoke <id>        revoke a device's token; a running hub closes its connection within 1 s
  rotate <id>        issue a new token and invalidate the old one (re-enables a revoked device)
${ENROLL_USAGE}

Options:
  --data-dir <dir>      the hub's data directory (default: HUB_DATA_DIR, else .data)
  --tokens-file <path>  with add or rotate: also append "id,token" lines to <path> (created with
                        mode 0600), e.g. for the simulator; readers take the last line for an id
  --id <deviceId>       with approve: the device id to give the board
  --json                machine-readable output on stdout
  -h, --help            show this help

Device ids: 1-64 characters of A-Z a-z 0-9 . _ -
With MQTT_URL and MQTT_DEVICE_ACCESS=dynsec (and the hub's MQTT_USERNAME/MQTT_PASSWORD), add and
rotate also create or replace the device's broker login, and revoke deletes it.
With CLUSTER_DATABASE_URL (several hub instances) the registry is the cluster's, in PostgreSQL.
Exit codes: 0 ok, 1 refused or failed (unknown id, duplicate, I/O), 2 usage or configuration error.
`;

/** Runs `devices ...` (args after the word `devices`); resolves to the process exit code. */
export async function runDevicesCli(args: string[], io: CliIo): Promise<number> {
  const cli = parseCli(args, io, { text: DEVICES_USAGE }, OPTIONS);
  if (typeof cli === 'number') return cli;
  const { values, positionals, usage } = cli;
  const json = values.json === true;
  const [command, ...ids] = positionals;
  if (command === undefined) return usage('missing command');
  const enrollCommand = (ENROLL_COMMANDS as readonly string[]).includes(command) ? (command as EnrollCommand) : null;
  if (command !== 'add' && command !== 'list' && command !== 'revoke' && command !== 'rotate' && !enrollCommand) {
    return usage(`unknown command "${command}"`);
  }
  if (command === 'pending' && ids.length > 0) return usage('pending takes no arguments');
  if (enrollCommand && command !== 'pending' && ids.length !== 1) return usage(`${command} needs one hardware id`);
  if (values.id !== undefined && command !== 'approve') return usage('--id only applies to approve');
  if (command === 'list' && ids.length > 0) return usage('list takes no arguments');
  if (command === 'add' && ids.length === 0) return usage('add needs at least one device id');
  if ((command === 'revoke' || command === 'rotate') && ids.length !== 1)
    return usage(`${command} needs one device id`);
  if (values['tokens-file'] !== undefined && command !== 'add' && command !== 'rotate') {
    return usage('--tokens-file only applies to add and rotate');
  }

  // Only the settings the CLI needs, so an unrelated bad variable (say INFLUX_URL) does not block it.
  const settings = cliConfig(io, () => {
    // The cluster registry when the hub runs as several instances (its other cluster settings do not matter here).
    const clusterUrl = io.env.CLUSTER_DATABASE_URL || undefined;
    if (clusterUrl !== undefined && !ENV_SCHEMA.CLUSTER_DATABASE_URL.safeParse(clusterUrl).success) {
      throw new ConfigError(['CLUSTER_DATABASE_URL: must be a postgres:// or postgresql:// connection URL']);
    }
    const config = loadConfig(pick(io.env, CLI_ENV));
    return {
      clusterUrl,
      enrollTtlSec: config.enroll.pendingTtlSec,
      dataDir: values['data-dir'] ?? config.storage.dataDir,
      deviceUrl: deviceUrlFrom(config.server.publicUrl),
      mqtt: config.mqtt?.deviceAccess === 'dynsec' ? config.mqtt : null,
    };
  });
  if (typeof settings === 'number') return settings;
  const { clusterUrl, enrollTtlSec, dataDir, deviceUrl, mqtt } = settings;

  // Logs (warnings only) go to stderr so `--json` output stays clean; tokens are never logged.
  const logger = createLogger('warn', pino.destination({ fd: 2, sync: true }));
  let registry: DeviceRegistry | undefined;
  let closeRegistry = async (): Promise<void> => registry?.close();
  const broker = new BrokerLogins(mqtt, io, json);
  try {
    if (clusterUrl !== undefined) {
      const store = await openClusterStore({
        databaseUrl: clusterUrl,
        instanceId: 'devices-cli',
        dataDir,
        logger,
        metrics: createMetrics(),
      });
      registry = store.registry;
      closeRegistry = () => store.close();
    } else {
      registry = openDeviceRegistry({ dataDir, logger, watchIntervalMs: 0 });
    }
    const out = new Output(io, json, registry.file, deviceUrl);
    if (enrollCommand) {
      const hardwareId = ids[0];
      await runEnrollCommand(
        enrollCommand,
        { json, ...(hardwareId ? { hardwareId } : {}), ...(values.id !== undefined ? { deviceId: values.id } : {}) },
        { dataDir, ttlSec: enrollTtlSec, registry, logger, io },
      );
      return EXIT.OK;
    }
    switch (command) {
      case 'add':
        return worst(await add(registry, ids, values['tokens-file'], out, broker), broker.status);
      case 'list':
        out.list(registry.list());
        return EXIT.OK;
      case 'revoke': {
        const id = ids[0] as string;
        out.revoked(await registry.revoke(id));
        // Also when it was already revoked: a second revoke retries a broker delete that failed.
        await broker.revoke(id);
        return broker.status;
      }
      case 'rotate':
        return worst(await rotate(registry, ids[0] as string, values['tokens-file'], out, broker), broker.status);
      default:
        return usage(`unknown command "${command}"`);
    }
  } catch (err) {
    return failed(io, json, err);
  } finally {
    await closeRegistry();
    await broker.close();
  }
}

const worst = (a: number, b: number): number => Math.max(a, b);

/**
 * The devices' broker logins when the hub manages them (MQTT_DEVICE_ACCESS=dynsec; otherwise it does
 * nothing): one administrative connection, opened at the first change. A failure is reported on stderr
 * (naming the retry) and makes the exit code 1; the registry change stands.
 */
class BrokerLogins {
  status: number = EXIT.OK;
  private admin: ReturnType<typeof connectDynsecAdmin> | null = null;
  private readonly logger: Logger = createLogger('silent');

  constructor(
    private readonly config: MqttConfig | null,
    private readonly io: CliIo,
    private readonly json: boolean,
  ) {}

  grant(id: string, token: string, rotated: boolean): Promise<void> {
    return this.apply(
      (a) => a.grant(id, token),
      `the broker login of ${id} was NOT ${rotated ? 'replaced' : 'created'}`,
      [
        rotated
          ? 'it cannot use MQTT with the new token, and the broker still accepts its old one'
          : 'it can use WebSocket but not MQTT',
        `once the broker is reachable, retry with: npm run hub -- devices rotate ${id}`,
      ],
    );
  }

  revoke(id: string): Promise<void> {
    return this.apply((a) => a.revoke(id), `the broker login of ${id} was NOT deleted`, [
      'a hub connected to the broker deletes it when it notices the revoke, and at its next start',
      `to retry now: npm run hub -- devices revoke ${id}`,
    ]);
  }

  async close(): Promise<void> {
    const admin = await this.admin?.catch(() => null);
    await admin?.close();
  }

  private async apply(op: (a: BrokerAccess) => Promise<void>, what: string, hints: string[]): Promise<void> {
    if (!this.config) return;
    this.admin ??= connectDynsecAdmin({ config: this.config, metrics: createMetrics(), logger: this.logger });
    try {
      await op((await this.admin).access);
    } catch (err) {
      const cause = err instanceof Error ? err.message : String(err);
      this.status = failed(
        this.io,
        this.json,
        new HubError('MQTT_BROKER_ACCESS', `${what} (${cause}); ${hints.join('; ')}`),
      );
    }
  }
}

async function add(
  registry: DeviceRegistry,
  ids: string[],
  tokensFile: string | undefined,
  out: Output,
  broker: BrokerLogins,
): Promise<number> {
  const issued: IssuedToken[] = [];
  let failure: unknown;
  for (const id of ids) {
    try {
      issued.push(await registry.add(id));
    } catch (err) {
      failure = err; // stop here; tokens issued so far are still printed below
      break;
    }
  }
  let fileError: unknown;
  if (tokensFile !== undefined && issued.length > 0) {
    try {
      appendTokens(tokensFile, issued);
    } catch (err) {
      fileError = err;
    }
  }
  out.added(issued, fileError === undefined ? tokensFile : undefined);
  for (const t of issued) await broker.grant(t.device.id, t.token, false);
  if (fileError !== undefined) return tokensFileFailed(out, tokensFile as string, fileError);
  return failure === undefined ? EXIT.OK : failed(out.io, out.json, failure);
}

async function rotate(
  registry: DeviceRegistry,
  id: string,
  tokensFile: string | undefined,
  out: Output,
  broker: BrokerLogins,
): Promise<number> {
  const issued = await registry.rotate(id);
  let fileError: unknown;
  if (tokensFile !== undefined) {
    try {
      appendTokens(tokensFile, [issued]); // readers take the last line for an id
    } catch (err) {
      fileError = err;
    }
  }
  out.rotated(issued, fileError === undefined ? tokensFile : undefined);
  await broker.grant(id, issued.token, true);
  return fileError === undefined ? EXIT.OK : tokensFileFailed(out, tokensFile as string, fileError);
}

function tokensFileFailed(out: Output, tokensFile: string, err: unknown): number {
  return failed(
    out.io,
    out.json,
    new HubError(
      'INTERNAL',
      `could not append to ${tokensFile}: ${(err as Error).message} (the token(s) above are valid; copy them now)`,
    ),
  );
}

/** Appends `id,token` lines; the file is created (or tightened) to 0600 because it holds secrets. */
function appendTokens(path: string, issued: IssuedToken[]): void {
  const fd = openSync(path, 'a', 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, issued.map((t) => `${t.device.id},${t.token}\n`).join(''));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

class Output {
  constructor(
    readonly io: CliIo,
    readonly json: boolean,
    private readonly file: string,
    private readonly deviceUrl: string,
  ) {}

  added(issued: IssuedToken[], tokensFile: string | undefined): void {
    if (this.json) {
      this.print({
        devices: issued.map((t) => ({ id: t.device.id, token: t.token, createdAt: iso(t.device.createdAtMs) })),
        deviceUrl: this.deviceUrl,
        ...(tokensFile === undefined ? {} : { tokensFile: resolve(tokensFile) }),
      });
      return;
    }
    if (issued.length === 0) return;
    const lines: string[] = [];
    for (const t of issued) {
      lines.push(
        `Added device ${t.device.id}. Its token (shown only now; the hub keeps just a hash):`,
        '',
        `  ${t.token}`,
        '',
      );
    }
    if (tokensFile !== undefined) {
      lines.push(`Appended ${issued.length} "id,token" line(s) to ${resolve(tokensFile)} (mode 0600).`, '');
    }
    lines.push(...this.connectHint(issued.length === 1 ? (issued[0] as IssuedToken).token : '<token>'));
    this.io.stdout.write(`${lines.join('\n')}\n`);
  }

  rotated(t: IssuedToken, tokensFile: string | undefined): void {
    if (this.json) {
      this.print({
        id: t.device.id,
        token: t.token,
        rotatedAt: iso(t.device.rotatedAtMs),
        deviceUrl: this.deviceUrl,
        ...(tokensFile === undefined ? {} : { tokensFile: resolve(tokensFile) }),
      });
      return;
    }
    const lines = [
      `Rotated the token of ${t.device.id}. The old token no longer works; a running hub closes its`,
      'connection within a second. The new token (shown only now):',
      '',
      `  ${t.token}`,
      '',
      ...(tokensFile === undefined
        ? []
        : [`Appended "${t.device.id},<token>" to ${resolve(tokensFile)} (mode 0600).`, '']),
      ...this.connectHint(t.token),
    ];
    this.io.stdout.write(`${lines.join('\n')}\n`);
  }

  revoked(d: DeviceInfo): void {
    if (this.json) {
      this.print({ id: d.id, revoked: true, revokedAt: iso(d.revokedAtMs) });
      return;
    }
    this.io.stdout.write(
      `Revoked ${d.id} (at ${iso(d.revokedAtMs)}). Its token no longer works; a running hub closes its\n` +
        `connection within a second. To re-enable it with a new token: npm run hub -- devices rotate ${d.id}\n`,
    );
  }

  list(devices: DeviceInfo[]): void {
    if (this.json) {
      this.print({
        devices: devices.map((d) => ({
          id: d.id,
          revoked: d.revoked,
          createdAt: iso(d.createdAtMs),
          rotatedAt: iso(d.rotatedAtMs),
          revokedAt: iso(d.revokedAtMs),
        })),
      });
      return;
    }
    if (devices.length === 0) {
      this.io.stdout.write(`No devices in ${this.file}. Add one with: npm run hub -- devices add <id>\n`);
      return;
    }
    const rows = [
      ['ID', 'STATUS', 'CREATED', 'LAST ROTATED', 'REVOKED'],
      ...devices.map((d) => [
        d.id,
        d.revoked ? 'revoked' : 'active',
        iso(d.createdAtMs) ?? '-',
        iso(d.rotatedAtMs) ?? '-',
        iso(d.revokedAtMs) ?? '-',
      ]),
    ];
    const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => (r[col] as string).length)));
    const text = rows.map((r) =>
      r
        .map((cell, col) => cell.padEnd(widths[col] as number))
        .join('  ')
        .trimEnd(),
    );
    this.io.stdout.write(`${text.join('\n')}\n`);
  }

  private connectHint(token: string): string[] {
    const lines = [
      'Configure the device to connect to:',
      `  URL:          ${this.deviceUrl}`,
      `  Header:       Authorization: Bearer ${token}`,
      '  Subprotocol:  esp32hub.v1',
      'Never put the token in a URL.',
    ];
    if (/^wss?:\/\/(localhost|127\.0\.0\.1|\[::1\])[:/]/.test(this.deviceUrl)) {
      lines.push('(A board cannot reach "localhost": use the hub\'s LAN address, or set HUB_PUBLIC_URL.)');
    }
    lines.push(`Registry: ${/^postgres(ql)?:/.test(this.file) ? this.file : resolve(this.file)}`);
    return lines;
  }

  private print(value: unknown): void {
    printJson(this.io, value);
  }
}

const OPTIONS = {
  ...HUB_CLI_OPTIONS,
  'tokens-file': { type: 'string' },
  id: { type: 'string' },
} as const;

const CLI_ENV = [
  'HUB_CONFIG_FILE',
  'HUB_DATA_DIR',
  'HUB_HOST',
  'HUB_PORT',
  'HUB_PUBLIC_URL',
  'HUB_TLS_CERT_FILE',
  'HUB_TLS_KEY_FILE',
  // The broker logins of devices, when the hub manages them (MQTT_DEVICE_ACCESS=dynsec).
  'MQTT_URL',
  'MQTT_USERNAME',
  'MQTT_PASSWORD',
  'MQTT_TOPIC_PREFIX',
  'MQTT_CLIENT_ID',
  'MQTT_DEVICE_ACCESS',
  // Enrollment requests expire after this (devices pending|approve|reject|forget).
  'ENROLL_PENDING_TTL_SEC',
] as const;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
