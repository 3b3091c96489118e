/**
 * `npm run hub -- firmware <add|list|remove>`: the firmware images the dashboard's "Add a board" page
 * flashes (server/enroll/firmware.ts), managed from the command line on the hub's data directory; a
 * running hub serves a new image at once (it reads the directory per request).
 */
import { readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/index.ts';
import { type CliIo, EXIT, failed, pick } from '../registry/devices-cli.ts';
import { CHIP_FAMILIES, type FirmwareImage, MAX_FIRMWARE_BYTES, openFirmwareStore } from './firmware.ts';

export const FIRMWARE_USAGE = `Usage: npm run hub -- firmware <command> [options]

Commands:
  add <file> --name <name> --version <v> --chip <family> [--offset <n>]
                     store a merged image (bootloader + partitions + app, flashed at --offset,
                     default 0) for the dashboard's Add a board page; replaces an image of that name
  list               list the stored images
  remove <name>      delete an image

Options:
  --data-dir <dir>   the hub's data directory (default: HUB_DATA_DIR, else .data)
  --json             machine-readable output on stdout
  -h, --help         show this help

Chip families: ${CHIP_FAMILIES.join(', ')}. At most 16 images of ${MAX_FIRMWARE_BYTES / 1024 / 1024} MiB.
`;

export async function runFirmwareCli(args: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n\n${FIRMWARE_USAGE}`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(FIRMWARE_USAGE);
    return EXIT.OK;
  }
  const usage = (message: string): number => {
    io.stderr.write(`error: ${message}\n\n${FIRMWARE_USAGE}`);
    return EXIT.USAGE;
  };
  const [command, ...rest] = positionals;
  if (command !== 'add' && command !== 'list' && command !== 'remove') {
    return usage(command === undefined ? 'missing command' : `unknown command "${command}"`);
  }
  if (command === 'add' && (rest.length !== 1 || !values.name || !values.version || !values.chip)) {
    return usage('add needs <file>, --name, --version and --chip');
  }
  if (command === 'remove' && rest.length !== 1) return usage('remove needs one image name');
  if (command === 'list' && rest.length > 0) return usage('list takes no arguments');
  let dataDir: string;
  try {
    dataDir = values['data-dir'] ?? loadConfig(pick(io.env, ['HUB_CONFIG_FILE', 'HUB_DATA_DIR'])).storage.dataDir;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`error: ${err.message}\n`);
    return EXIT.USAGE;
  }
  const json = values.json === true;
  const store = openFirmwareStore(dataDir);
  const print = (v: unknown) => io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
  try {
    if (command === 'list') {
      const images = await store.list();
      if (json) print({ images });
      else io.stdout.write(images.length === 0 ? 'No firmware images.\n' : `${images.map(line).join('\n')}\n`);
      return EXIT.OK;
    }
    if (command === 'remove') {
      await store.remove(rest[0] as string);
      if (json) print({ name: rest[0] });
      else io.stdout.write(`Removed ${rest[0]}.\n`);
      return EXIT.OK;
    }
    const file = rest[0] as string;
    if (statSync(file).size > MAX_FIRMWARE_BYTES) {
      return failed(io, json, new Error(`${file} is larger than ${MAX_FIRMWARE_BYTES} bytes`));
    }
    const offset = values.offset === undefined ? 0 : Number(values.offset);
    if (!Number.isInteger(offset) || offset < 0 || offset > 0x1000000) return usage('--offset must be 0..16777216');
    const image = await store.add(
      values.name as string,
      { version: values.version as string, chipFamily: values.chip as FirmwareImage['chipFamily'], offset },
      readFileSync(file),
    );
    if (json) print(image);
    else io.stdout.write(`Stored ${line(image)}\nThe Add a board page offers it now (${image.manifestUrl}).\n`);
    return EXIT.OK;
  } catch (err) {
    return failed(io, json, err);
  }
}

function line(i: FirmwareImage): string {
  return `${i.name} ${i.version} · ${i.chipFamily} · ${i.size} bytes at 0x${i.offset.toString(16)} · sha256 ${i.sha256.slice(0, 12)}… · ${i.uploadedAt}`;
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      'data-dir': { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string' },
      chip: { type: 'string' },
      offset: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
