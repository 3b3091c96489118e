/**
 * The operator CLI: `npm run hub -- <group> <command> ...`. A separate entry point from `main.ts`
 * (it reads argv and sets the exit code). Each group lives with its module; add new groups to
 * GROUPS. Like `npm start` it reads its settings (HUB_DATA_DIR, INFLUX_*, MQTT_*) from the
 * environment over `.env` (or `--env-file <path>` / `ENV_FILE`), so both see the same data directory.
 */
import { type CliIo, EXIT, usageError } from './cli-args.ts';
import { takeEnvFileArg, withEnvFile } from './config/env-file.ts';
import { FIRMWARE_USAGE, runFirmwareCli } from './enroll/firmware-cli.ts';
import { OTA_USAGE, runOtaCli } from './ota/cli.ts';
import { DEVICES_USAGE, runDevicesCli } from './registry/devices-cli.ts';
import { DEAD_LETTERS_USAGE, runDeadLettersCli } from './storage/dead-letters-cli.ts';

type Group = (args: string[], io: CliIo) => Promise<number>;

const GROUPS: Record<string, { run: Group; summary: string }> = {
  devices: { run: runDevicesCli, summary: 'add, list, revoke and rotate device tokens' },
  'dead-letters': { run: runDeadLettersCli, summary: 'list, replay and drop lines InfluxDB rejected' },
  firmware: { run: runFirmwareCli, summary: 'images the Add a board page flashes: add, list, remove' },
  ota: { run: runOtaCli, summary: 'signed OTA images: keygen, sign, upload, list, delete' },
};

const USAGE = `Usage: npm run hub -- [--env-file <path>] <group> <command> [options]

Groups:
${Object.entries(GROUPS)
  .map(([name, g]) => `  ${name.padEnd(13)} ${g.summary}`)
  .join('\n')}

Run "npm run hub -- <group> --help" for a group's commands.

${DEVICES_USAGE}
${DEAD_LETTERS_USAGE}
${FIRMWARE_USAGE}
${OTA_USAGE}`;

const args = takeEnvFileArg(process.argv.slice(2));
const [groupName, ...rest] = args.rest;
const settings = withEnvFile(process.env, { cwd: process.cwd(), envFile: args.envFile });
const io: CliIo = { env: settings.env, stdout: process.stdout, stderr: process.stderr };
const group = groupName === undefined ? undefined : GROUPS[groupName];
if (args.problem !== undefined) {
  process.exitCode = usageError(io, { text: USAGE }, args.problem);
} else if (settings.problems.length > 0) {
  process.stderr.write(`error: invalid configuration:\n  - ${settings.problems.join('\n  - ')}\n`);
  process.exitCode = EXIT.USAGE;
} else if (groupName === '--help' || groupName === '-h') {
  process.stdout.write(USAGE);
  process.exitCode = EXIT.OK;
} else if (group === undefined) {
  process.exitCode = usageError(
    io,
    { text: USAGE },
    groupName === undefined ? 'missing group' : `unknown group "${groupName}"`,
  );
} else {
  process.exitCode = await group.run(rest, io);
}
