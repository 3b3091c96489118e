/**
 * `npm run hub -- firmware <add|list|remove>`: the firmware images the dashboard's "Add a board" page
 * flashes (server/enroll/firmware.ts), managed from the command line on the hub's data directory; a
 * running hub serves a new image at once (it reads the directory per request).
 */
import { readFileSync, statSync } from 'node:fs';
import { type CliIo, cliConfig, EXIT, failed, HUB_CLI_OPTIONS, parseCli, pick, printJson } from '../cli-args.ts';
import { loadConfig } from '../config/index.ts';
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
  const cli = parseCli(args, io, { text: FIRMWARE_USAGE }, OPTIONS);
  if (typeof cli === 'number') return cli;
  const { values, positionals, usage } = cli;
  const [command, ...rest] = positionals;
  if (command !== 'add' && command !== 'list' && command !== 'remove') {
    return usage(command === undefined ? 'missing command' : `unknown command "${command}"`);
  }
  if (command === 'add' && (rest.length !== 1 || !values.name || !values.version || !values.chip)) {
    return usage('add needs <file>, --name, --version and --chip');
  }
  if (command === 'remove' && rest.length !== 1) return usage('remove needs one image name');
  if (command === 'list' && rest.length > 0) return usage('list takes no arguments');
  const dirs = cliConfig(io, () => ({
    dataDir: values['data-dir'] ?? loadConfig(pick(io.env, ['HUB_CONFIG_FILE', 'HUB_DATA_DIR'])).storage.dataDir,
  }));
  if (typeof dirs === 'number') return dirs;
  const json = values.json === true;
  const store = openFirmwareStore(dirs.dataDir);
  const print = (v: unknown) => printJson(io, v);
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

const OPTIONS = {
  ...HUB_CLI_OPTIONS,
  name: { type: 'string' },
  version: { type: 'string' },
  chip: { type: 'string' },
  offset: { type: 'string' },
} as const;
