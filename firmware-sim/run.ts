/**
 * One simulator run as the CLI does it: tokens, fleet, live status, summary. Everything from the
 * process (streams, TTY, Ctrl-C) comes in through `RunIo`, so tests drive it in-process.
 */
import { stateToken } from './board-store.ts';
import { enrollBoard, enrollUrlFor } from './enroll.ts';
import { Fleet, type FleetSummary, type Fleet as FleetType, fleetDeviceIds } from './fleet.ts';
import { wsConnector } from './link.ts';
import { mqttConnector } from './mqtt-link.ts';
import type { CliOptions } from './options.ts';
import { FileRecorder } from './record-file.ts';
import { statusLine, summaryTable } from './report.ts';
import type { ScenarioParams } from './scenarios.ts';
import { adminUrlFor, appendTokens, provisionDevices, readTokensFile } from './tokens.ts';

export interface RunIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Whether stderr is a terminal: the live status line is drawn only there. */
  statusTty: boolean;
  /** Aborted on the first Ctrl-C: the run stops, drains and prints its summary. */
  interrupt: AbortSignal;
  /** Called once the fleet exists (tests use it to look inside). */
  onFleet?: (fleet: FleetType) => void;
}

export interface RunResult {
  exitCode: number;
  summary: FleetSummary | null;
}

export async function runSimulator(opts: CliOptions, io: RunIo): Promise<RunResult> {
  const err = (line: string) => io.stderr.write(`${line}\n`);
  let tokens: Map<string, string>;
  try {
    tokens = opts.tokensFile ? readTokensFile(opts.tokensFile) : new Map();
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return { exitCode: 2, summary: null };
  }
  const ids = fleetDeviceIds(opts.devices, opts.idPrefix, opts.firstIndex);
  if (opts.stateDir) {
    // A board keeps its token in its state (NVS): a later run needs no tokens file.
    for (const id of ids) {
      if (tokens.has(id)) continue;
      const kept = stateToken(opts.stateDir, id);
      if (kept) tokens.set(id, kept);
    }
  }
  const missing = ids.filter((id) => !tokens.has(id));
  if (missing.length > 0 && opts.enroll) {
    const code = await enrollMissing(missing, tokens, opts, io);
    if (code !== 0) return { exitCode: code, summary: null };
  } else if (missing.length > 0) {
    if (!opts.provision || opts.adminToken === null) {
      err(
        `error: no token for ${missing.length} device(s) (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}).`,
      );
      err(
        `Register them with: npm run hub -- devices add ${missing.length > 3 ? `${missing[0]} … ${missing.at(-1)}` : missing.join(' ')} --tokens-file ${opts.tokensFile ?? 'devices.tokens'}`,
      );
      err('or run the simulator with --provision and the admin token in HUB_ADMIN_TOKEN.');
      return { exitCode: 2, summary: null };
    }
    const adminUrl = opts.adminUrl ?? adminUrlFor(opts.url);
    err(`registering ${missing.length} device(s) through ${adminUrl}/api/admin/devices …`);
    const { issued, error } = await provisionDevices(missing, { adminUrl, adminToken: opts.adminToken });
    if (opts.tokensFile && issued.size > 0) appendTokens(opts.tokensFile, issued);
    for (const [id, token] of issued) tokens.set(id, token);
    if (error) {
      err(`error: ${error.message}`);
      if (issued.size > 0) {
        err(
          opts.tokensFile
            ? `${issued.size} device(s) registered before the failure; their tokens were appended to ${opts.tokensFile}.`
            : `${issued.size} device(s) registered before the failure; pass --tokens-file to keep tokens between runs.`,
        );
      }
      return { exitCode: 1, summary: null };
    }
    if (opts.tokensFile) err(`appended ${issued.size} token(s) to ${opts.tokensFile}`);
  }

  const scenarioParams: Partial<ScenarioParams> = {};
  if (opts.faultEveryMs !== null) {
    scenarioParams.flakyMeanUpMs = opts.faultEveryMs;
    scenarioParams.rebootMeanMs = opts.faultEveryMs;
    scenarioParams.powerCutMeanMs = opts.faultEveryMs;
  }
  let recorder: FileRecorder | null = null;
  let fleet: Fleet;
  try {
    if (opts.recordFile) recorder = new FileRecorder(opts.recordFile);
    fleet = new Fleet({
      url: opts.url,
      devices: opts.devices,
      idPrefix: opts.idPrefix,
      firstIndex: opts.firstIndex,
      tokens,
      seed: opts.seed,
      scenario: opts.scenario,
      scenarioParams,
      rate: opts.rate,
      ticksPerFrame: opts.ticksPerFrame,
      connector:
        opts.transport === 'mqtt'
          ? mqttConnector({
              topicPrefix: opts.mqttPrefix,
              ...(opts.insecure ? { tls: { rejectUnauthorized: false } } : {}),
            })
          : wsConnector(opts.insecure ? { tls: { rejectUnauthorized: false } } : {}),
      ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
      ...(recorder ? { recorder } : {}),
      ...(opts.otaFailHealth > 0 ? { otaFailHealth: opts.otaFailHealth } : {}),
      device: {
        outboxFrames: opts.outboxFrames,
        otaPublicKeyPem: opts.otaPublicKeyPem,
        otaInsecure: opts.insecure,
        deepSleep:
          opts.profile === 'deep-sleep'
            ? { flushEverySamples: opts.flushEverySamples, flushIntervalMs: opts.flushIntervalMs }
            : null,
      },
    });
  } catch (e) {
    recorder?.close();
    err(`error: ${(e as Error).message}`);
    return { exitCode: 2, summary: null };
  }
  io.onFleet?.(fleet);
  err(
    `simulating ${opts.devices} board(s) → ${opts.url} · scenario ${opts.scenario} (${fleet.scenario.summary}) · ${opts.profile}${opts.stateDir ? ` · state in ${opts.stateDir}` : ''} · seed ${opts.seed} · ${opts.rate} frame/s each${opts.durationMs ? ` · for ${opts.durationMs / 1000} s` : ' · Ctrl-C to stop'}`,
  );
  // The library's timers are unref'd (a forgotten board never pins a process); the run itself must
  // keep the process alive until it has printed its summary, even while every board is booting.
  const keepAlive = setInterval(() => {}, 3_600_000);
  fleet.start();
  const startedAt = Date.now();

  const drawStatus = io.statusTty && !opts.quiet;
  let prev = fleet.snapshot();
  const status = drawStatus
    ? setInterval(() => {
        const now = fleet.snapshot();
        io.stderr.write(`\r\x1b[2K${statusLine(opts.scenario, prev, now, Date.now() - startedAt)}`);
        prev = now;
      }, 1000)
    : null;
  status?.unref();

  await new Promise<void>((resolve) => {
    const timer = opts.durationMs ? setTimeout(resolve, opts.durationMs) : null;
    if (io.interrupt.aborted) resolve();
    io.interrupt.addEventListener(
      'abort',
      () => {
        if (timer) clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
  if (status) clearInterval(status);
  if (drawStatus) io.stderr.write('\r\x1b[2K');
  const pending = fleet.snapshot().outboxDepth;
  if (pending > 0 && opts.drainMs > 0)
    err(`stopping: waiting up to ${opts.drainMs / 1000} s for ${pending} frame(s) to be acked …`);
  const summary = await fleet.stop({ drainMs: opts.drainMs });
  recorder?.close();
  clearInterval(keepAlive);
  if (opts.json) io.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else io.stdout.write(summaryTable(summary, { perDevice: opts.perDevice }));
  const t = summary.totals;
  if ((t.sessions ?? 0) === 0) {
    const refused = Object.entries(summary.refusalsByStatus);
    err(
      refused.length > 0
        ? `error: the hub refused every handshake (${refused.map(([s, n]) => `HTTP ${s} ×${n}`).join(', ')})${summary.refusalsByStatus['401'] ? ': the tokens do not match this hub' : ''}`
        : `error: no board reached the hub at ${opts.url}`,
    );
    return { exitCode: 1, summary };
  }
  return { exitCode: 0, summary };
}

/**
 * `--enroll`: every board without a token enrolls [PROTO-8] and waits for its approval (Ctrl-C gives
 * up). Approved tokens go into `tokens` (and the boards' state dirs); exit code 0 when all got one.
 */
async function enrollMissing(
  missing: string[],
  tokens: Map<string, string>,
  opts: CliOptions,
  io: RunIo,
): Promise<number> {
  const err = (line: string) => io.stderr.write(`${line}\n`);
  const url = enrollUrlFor(opts.url);
  err(
    `${missing.length} board(s) enrolling at ${url}${opts.fleetSecret ? ' with the fleet secret' : ''}; approve them with: npm run hub -- devices approve <hardwareId>`,
  );
  const announced = new Set<string>();
  const keepAlive = setInterval(() => {}, 3_600_000);
  const results = await Promise.all(
    missing.map((id) =>
      enrollBoard({
        url,
        hardwareId: id,
        stateDir: opts.stateDir,
        ...(opts.fleetSecret ? { fleetSecret: opts.fleetSecret } : {}),
        signal: io.interrupt,
        ...(opts.insecure ? { tls: { rejectUnauthorized: false } } : {}),
        onStatus: (status) => {
          if (status === 'pending' && !announced.has(id)) {
            announced.add(id);
            err(`${id}: pending (waiting for an operator)`);
          }
        },
      }),
    ),
  );
  clearInterval(keepAlive);
  let failed = 0;
  for (const r of results) {
    if (r.outcome === 'approved' && r.deviceId === r.hardwareId) {
      tokens.set(r.deviceId, r.token);
      err(
        `${r.hardwareId}: approved, token stored${opts.stateDir ? ` in ${opts.stateDir}/${r.deviceId}` : ' (in memory)'}`,
      );
    } else if (r.outcome === 'approved') {
      failed++;
      err(
        `${r.hardwareId}: approved as ${r.deviceId}; the simulator streams under its hardware id only (approve without --id)`,
      );
    } else {
      failed++;
      err(`${r.hardwareId}: ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`);
    }
  }
  return failed === 0 ? 0 : 1;
}
