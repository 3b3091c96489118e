/**
 * The firmware's host tests, run by `npm test`: builds the portable C++ protocol core and its Unity test
 * program with the machine's g++ (`make -C firmware/test`, incremental, no PlatformIO), runs it and checks
 * its report. Drift checks: the C++ tests must have consumed the very vector file the TypeScript vector
 * tests read (same path, same SHA-256, same counts), the shared-cases file the simulator side checks,
 * and a frame-error table equal to server/errors.ts.
 */

import { spawnSync } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, type ErrorCode } from '../../server/errors.ts';
import { VECTORS_PATH, type VectorFile } from '../vectors/generate.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIRMWARE_TEST_DIR = join(REPO_ROOT, 'firmware/test');
const SHARED_CASES_PATH = join(FIRMWARE_TEST_DIR, 'shared-cases.json');
const TS_VECTOR_TEST = join(REPO_ROOT, 'test/unit/codec-vectors.test.ts');

interface HostReport {
  tests: number;
  failures: number;
  vectorsPath: string;
  vectorsSha256: string;
  valid: number;
  validPassed: number;
  malformed: number;
  malformedPassed: number;
  sharedPath: string;
  sharedSha256: string;
  shared: number;
  sharedPassed: number;
  errors: { code: string; wire: number; close: number }[];
}

/** Runs a make target of firmware/test under a lock: several engineers (and test runs) share this checkout. */
function make(target: string): { ms: number; output: string } {
  for (const tool of ['g++', 'make']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} not found: install a C++17 compiler and make (Debian/Ubuntu: apt-get install g++ make)`);
    }
  }
  mkdirSync(join(FIRMWARE_TEST_DIR, 'build'), { recursive: true });
  const cmdline = ['make', '-s', '-C', FIRMWARE_TEST_DIR, '-j2', target];
  const haveFlock = spawnSync('sh', ['-c', 'command -v flock']).status === 0;
  const [cmd, ...args] = haveFlock ? ['flock', join(FIRMWARE_TEST_DIR, 'build/.lock'), ...cmdline] : cmdline;
  const started = performance.now();
  const r = spawnSync(cmd as string, args, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`make ${target} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return { ms: Math.round(performance.now() - started), output: r.stdout };
}

/**
 * Why the ESP32-C3 cross-build cannot run here, or null when it can: Debian's gcc-riscv64-unknown-elf
 * and picolibc-riscv64-unknown-elf (scripts/ensure-system-deps.sh installs both where it can).
 */
function riscvToolchainMissing(): string | null {
  if (spawnSync('sh', ['-c', 'command -v riscv64-unknown-elf-g++']).status !== 0) {
    return 'riscv64-unknown-elf-g++ not installed (Debian: apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)';
  }
  const specs = spawnSync('riscv64-unknown-elf-gcc', ['-print-file-name=picolibc.specs'], { encoding: 'utf8' });
  if (specs.status !== 0 || !specs.stdout.trim().startsWith('/')) {
    return 'picolibc for riscv64-unknown-elf not installed (Debian: apt-get install picolibc-riscv64-unknown-elf)';
  }
  return null;
}
const RISCV_MISSING = riscvToolchainMissing();

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

let report: HostReport;
let output = '';
let exitCode: number | null = null;

beforeAll(() => {
  const bin = join(FIRMWARE_TEST_DIR, 'build/host/bin/hub_tests');
  const { ms } = make(bin);
  const r = spawnSync(bin, [], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ESP32HUB_REPO_ROOT: REPO_ROOT },
  });
  output = r.stdout;
  exitCode = r.status;
  const line = output.split('\n').find((l) => l.startsWith('ESP32HUB-REPORT '));
  if (!line) throw new Error(`the host test program printed no report (exit ${r.status}):\n${output}\n${r.stderr}`);
  report = JSON.parse(line.slice('ESP32HUB-REPORT '.length)) as HostReport;
  console.info(`firmware host tests: build ${ms} ms, ${report.tests} Unity tests`);
}, 900_000);

describe('firmware host tests (C++ core built with g++)', () => {
  it('every Unity test passes', () => {
    const failed = output.split('\n').filter((l) => /:FAIL(:|$)/.test(l));
    expect(failed).toEqual([]);
    expect(report.failures).toBe(0);
    expect(report.tests).toBeGreaterThanOrEqual(40);
    expect(exitCode).toBe(0);
  });

  it('every golden vector passes in C++: valid ones decode and re-encode, malformed ones give the TS code', () => {
    const cases = output.split('\n').filter((l) => l.startsWith('ESP32HUB-CASE '));
    expect(cases.filter((l) => !l.endsWith(' PASS'))).toEqual([]);
    expect(report.valid).toBeGreaterThan(0);
    expect(report.malformed).toBeGreaterThan(0);
    expect(report.validPassed).toBe(report.valid);
    expect(report.malformedPassed).toBe(report.malformed);
  });

  it('drift check: the C++ tests read the same vector file as the TypeScript vector tests', () => {
    // The TypeScript vector tests read VECTORS_PATH (imported from the generator, as here).
    expect(readFileSync(TS_VECTOR_TEST, 'utf8')).toMatch(/readFileSync\(VECTORS_PATH/);
    expect(realpathSync(report.vectorsPath)).toBe(realpathSync(VECTORS_PATH));
    expect(report.vectorsSha256).toBe(sha256(VECTORS_PATH));
    const file = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as VectorFile;
    expect(report.valid).toBe(file.valid.length);
    expect(report.malformed).toBe(file.malformed.length);
    const names = output
      .split('\n')
      .filter((l) => /^ESP32HUB-CASE (valid|malformed) /.test(l))
      .map((l) => l.split(' ')[2]);
    expect(names).toEqual([...file.valid.map((v) => v.name), ...file.malformed.map((v) => v.name)]);
  });

  it('drift check: the C++ tests read the shared-cases file the simulator side checks, and pass every case', () => {
    expect(realpathSync(report.sharedPath)).toBe(realpathSync(SHARED_CASES_PATH));
    expect(report.sharedSha256).toBe(sha256(SHARED_CASES_PATH));
    const file = JSON.parse(readFileSync(SHARED_CASES_PATH, 'utf8')) as { cases: { name: string }[] };
    expect(report.shared).toBe(file.cases.length);
    expect(report.sharedPassed).toBe(report.shared);
  });

  it('flash outbox: power cut at every program/erase step of a scripted run; capacity and wear of the shipped partition', () => {
    // firmware/test/test_protocol/test_flash_outbox.cpp asserts the promises per cut point; these are its figures.
    const figures = (tag: string): Record<string, number | number[]> => {
      const line = output.split('\n').find((l) => l.startsWith(`${tag} `));
      if (!line) throw new Error(`no ${tag} line in the host test output`);
      return JSON.parse(line.slice(tag.length + 1)) as Record<string, number | number[]>;
    };
    const cut = figures('ESP32HUB-POWERCUT');
    const full = figures('ESP32HUB-POWERCUT-FULL');
    const flash = figures('ESP32HUB-FLASH');
    console.info(`firmware flash outbox power-cut test: ${JSON.stringify(cut)}; full ring: ${JSON.stringify(full)}`);
    console.info(`firmware flash outbox at the default rate: ${JSON.stringify(flash)}`);
    expect(cut.cutPoints).toBeGreaterThan(5000);
    expect(cut.sectorErases).toBeGreaterThanOrEqual(8); // the run goes round the ring
    expect(cut.acksInSectorHeaders).toBeGreaterThan(0);
    expect(full.droppedInRun).toBeGreaterThan(0); // the second run reaches drop-oldest
    expect(flash.capacityHours).toBeGreaterThanOrEqual(24);
    const [minErases, maxErases] = flash.minMaxErases as number[];
    expect((maxErases as number) - (minErases as number)).toBeLessThanOrEqual(1);
    // The partition the figures assume is the one platformio.ini ships.
    const ini = readFileSync(join(REPO_ROOT, 'firmware/platformio.ini'), 'utf8');
    const table = ini.match(/^board_build\.partitions\s*=\s*(\S+)/m)?.[1];
    expect(table).toBeDefined();
    const csv = readFileSync(join(REPO_ROOT, 'firmware', table as string), 'utf8');
    const outbox = csv
      .split('\n')
      .find((l) => l.startsWith('outbox'))
      ?.split(',')
      .map((c) => c.trim());
    expect(Number(outbox?.[4])).toBe(flash.partitionBytes);
    // firmware/README.md quotes these very figures.
    const readme = readFileSync(join(REPO_ROOT, 'firmware/README.md'), 'utf8');
    const n = (v: unknown): string => (v as number).toLocaleString('en-US').replaceAll(',', ' ');
    for (const quoted of [
      `${n(flash.framesKept)} frames = **${flash.capacityHours} h**`,
      `**${flash.writeAmplification}** bytes programmed`,
      `| ${flash.erasesPerSectorPerDay} (min/max erases per sector after a day: ${minErases}/${maxErases})`,
      `**~${flash.lifeYears} years**`,
      `${n(flash.partitionBytes)} bytes (${flash.sectors} sectors)`,
      `averages ${flash.avgFrameBytes}-byte frames, ${flash.recordBytes}-byte records`,
      `every one of the run's ${n(cut.cutPoints)} steps`,
      `${cut.frames} frames of varying size`,
      `${cut.sectorErases} sector erases`,
      `At most ${cut.maxAckedReplayed} acknowledged frames came back after a cut (${cut.cutsReplayingAckedFrames} of the cuts)`,
      `${full.sectors}-sector ring with ${full.frames} unacknowledged-at-first frames`,
      `(${full.droppedInRun} dropped), and is cut at every one of its ${n(full.cutPoints)} steps`,
    ]) {
      expect(readme).toContain(quoted);
    }
  });

  it.skipIf(RISCV_MISSING !== null)(
    `the core cross-builds for the ESP32-C3 (rv32imc, ilp32, picolibc, -Os, warnings as errors) and links${RISCV_MISSING ? ` (skipped: ${RISCV_MISSING})` : ''}`,
    () => {
      const { output } = make('riscv-check');
      const sizes = Object.fromEntries(
        output
          .split('\n')
          .filter((l) => l.startsWith('RISCV-SIZE '))
          .map((l) => {
            const [, what, text, data, bss] = l.split(' ');
            return [what, { text: Number(text), data: Number(data), bss: Number(bss) }];
          }),
      );
      console.info(`firmware core for the ESP32-C3 (rv32imc -Os): ${JSON.stringify(sizes)}`);
      expect(sizes['core-objects']?.text).toBeGreaterThan(10_000);
      expect(sizes['linked-probe']?.text).toBeGreaterThan(10_000);
    },
    300_000,
  );

  it('the Arduino layer (src/) compiles against API stubs in 6 build configurations (one over MQTT, one with nothing compiled in: the fleet image); wss:// without a CA does not', () => {
    // firmware/test/arduino_stubs/README.md: a syntax and type check, not an ESP32 build.
    const { output } = make('arduino-check');
    if (output !== '') expect(output).not.toMatch(/ARDUINO-CHECK FAIL/);
    if (output !== '') expect(output).toMatch(/ARDUINO-CHECK OK config_mqtt\.h/);
    if (output !== '') expect(output).toMatch(/ARDUINO-CHECK OK config_fleet\.h/);
    if (output !== '') expect(output).toMatch(/ARDUINO-CHECK OK ota_update\.cpp with ota_public_key\.h/);
  }, 300_000);

  it('OTA state machine: good image, corrupt chunk, bad signature, resume, health-check rollback, busy, bad args, power cut at every write step', () => {
    const names = [
      'good_image_switches_boots_and_is_confirmed_by_welcome',
      'corrupt_chunk_fails_on_hash_and_old_image_still_boots',
      'bad_signature_fails_without_switching',
      'resumes_after_disconnects_from_the_bytes_written',
      'failed_health_check_rolls_back',
      'busy_while_an_update_runs',
      'bad_arguments_and_unsupported',
      'power_cut_at_every_write_step_leaves_a_bootable_image',
    ];
    for (const n of names) expect(output).toMatch(new RegExp(`:test_ota_${n}:PASS`));
    expect(output).toMatch(/ota power cut \(healthy\): \d+ steps, every one cut/);
    // The C++ side verifies these with OpenSSL; Node must agree (the hub signs and verifies with Node).
    const c = JSON.parse(readFileSync(join(FIRMWARE_TEST_DIR, 'ota-cases.json'), 'utf8'));
    const image = Buffer.from(c.newImage, 'base64');
    expect(createHash('sha256').update(image).digest('hex')).toBe(c.newSha256);
    expect(verify('sha256', image, c.publicKeyPem, Buffer.from(c.newSignature, 'base64'))).toBe(true);
    expect(verify('sha256', image, c.publicKeyPem, Buffer.from(c.otherKeySignature, 'base64'))).toBe(false);
  });

  it('OTA build settings: the partition table has otadata and two equal app slots; app rollback is on', () => {
    const rows = readFileSync(join(FIRMWARE_TEST_DIR, '../partitions-4MB.csv'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
      .map((l) => l.split(',').map((f) => f.trim()));
    const byName = new Map(rows.map((r) => [r[0], r]));
    expect(byName.get('otadata')?.slice(1, 3)).toEqual(['data', 'ota']);
    expect(Number(byName.get('otadata')?.[4])).toBe(0x2000);
    const slots = rows.filter((r) => r[1] === 'app').map((r) => [r[2], Number(r[4])]);
    expect(slots.map((s) => s[0]).sort()).toEqual(['ota_0', 'ota_1']);
    expect(slots[0]?.[1]).toBe(slots[1]?.[1]);
    const sdk = readFileSync(join(FIRMWARE_TEST_DIR, '../sdkconfig.defaults'), 'utf8');
    expect(sdk).toMatch(/^CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y$/m);
    const src = readFileSync(join(FIRMWARE_TEST_DIR, '../src/ota_update.cpp'), 'utf8');
    expect(src).toMatch(/#error "OTA needs CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE/);
  });

  it("drift check: the C++ frame-error table equals server/errors.ts's frame layer", () => {
    const frameCodes = (Object.keys(ERRORS) as ErrorCode[]).filter((c) => ERRORS[c].layer === 'frame');
    expect(report.errors.map((e) => e.code).sort()).toEqual([...frameCodes].sort());
    for (const e of report.errors) {
      const spec = ERRORS[e.code as ErrorCode];
      expect({ code: e.code, wire: e.wire, close: e.close }).toEqual({
        code: e.code,
        wire: spec.wire,
        close: spec.close,
      });
    }
  });
});
