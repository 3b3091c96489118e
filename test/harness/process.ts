/**
 * Running real server binaries (influxd, nginx, mosquitto, postgres, haproxy) as child processes for tests.
 *
 * - Each server gets its own process group (`detached`), so stopping it also stops its children
 *   (nginx workers) and a Ctrl-C in the terminal does not hit it before the harness can.
 * - stdout and stderr go to a log file in the server's temp dir; its tail is put into every error.
 * - Where util-linux `setpriv` exists (always on Debian) the server is started with a parent-death
 *   signal: if the test process dies without running any handler (SIGKILL, OOM), the kernel sends
 *   the server SIGTERM, so nothing keeps running on this shared machine.
 * - Every process is registered with the safety net in `cleanup.ts`.
 * - The server starters (influx.ts, mosquitto.ts, postgres.ts, haproxy.ts) share one frame,
 *   {@link startInServerDir}: a temp dir per server, processes started in it with a readiness probe
 *   ({@link startServerProcess}), one idempotent `stop` for the processes and the dir, and a retry with
 *   fresh ports when a port was taken.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { registerCleanup } from './cleanup.ts';
import { tempDir } from './temp.ts';

/** How a process ended. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all (e.g. ENOENT). */
  readonly error?: Error;
}

/** A running (or finished) server process. */
export interface ServerProcess {
  /** Short name used in messages, e.g. `influxd`. */
  readonly name: string;
  readonly pid: number;
  /** File receiving the process's stdout and stderr. */
  readonly logFile: string;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  hasExited(): boolean;
  /** The last `maxLines` lines of the log file. */
  logTail(maxLines?: number): string;
  /**
   * Sends `signal` (default SIGTERM) to the process group, waits up to `timeoutMs` (default 10 s)
   * for the process to exit, then SIGKILLs the group. Idempotent.
   */
  stop(options?: StopOptions): Promise<void>;
}

/** Options for {@link ServerProcess.stop}. */
export interface StopOptions {
  signal?: NodeJS.Signals;
  timeoutMs?: number;
}

/** Options for {@link startProcess}. */
export interface StartProcessOptions {
  name: string;
  /** Absolute path of the executable (see {@link findExecutable}). */
  command: string;
  args: readonly string[];
  cwd: string;
  logFile: string;
  /** Environment of the child; defaults to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /**
   * Runs the server as this user (and its groups), through setpriv, which sets the parent-death signal
   * after switching user (a credential change clears it). For servers that refuse to run as root
   * (PostgreSQL); needs root and setpriv.
   */
  runAs?: string;
  /** Signal {@link ServerProcess.stop} sends when given none. Default SIGTERM. */
  stopSignal?: NodeJS.Signals;
  /** More log files of the server (e.g. nginx's error.log): their tails follow the main log's in `logTail()`. */
  extraLogs?: readonly string[];
}

/** Thrown when a server does not come up; the message carries the tail of its log. */
export class ServerStartError extends Error {
  readonly code = 'SERVER_START_FAILED';
  /** The log says the port was taken: starting again on fresh ports is worth a try. */
  readonly addressInUse: boolean;

  constructor(message: string, logTail: string) {
    super(`${message}\n--- log tail ---\n${logTail || '(empty log)'}\n--- end of log ---`);
    this.name = 'ServerStartError';
    this.addressInUse = /address already in use|EADDRINUSE/i.test(logTail);
  }
}

const EXTRA_BIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];

/**
 * Finds an executable on PATH (plus the sbin directories, where Debian puts nginx and mosquitto
 * and which a non-root PATH often lacks). Throws an error that says how to install it.
 */
export function findExecutable(name: string): string {
  const found = tryFindExecutable(name);
  if (found !== undefined) return found;
  throw new Error(
    `${name} was not found on PATH or in ${EXTRA_BIN_DIRS.join(', ')}. ` +
      'Run `bash scripts/ensure-system-deps.sh` (as root it installs the Debian packages the tests need; ' +
      'otherwise it prints the install command).',
  );
}

/** Like {@link findExecutable} but returns `undefined` when the executable is missing. */
export function tryFindExecutable(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter(Boolean), ...EXTRA_BIN_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

let setprivPath: string | null | undefined;

function parentDeathWrapper(): string | null {
  if (setprivPath === undefined) {
    setprivPath = process.platform === 'linux' ? (tryFindExecutable('setpriv') ?? null) : null;
  }
  return setprivPath;
}

/** Starts a server process in its own process group with its output going to `logFile`. */
export function startProcess(options: StartProcessOptions): ServerProcess {
  const { name, command, args, cwd, logFile } = options;
  const logFd = openSync(logFile, 'a');
  const setpriv = parentDeathWrapper();
  if (options.runAs !== undefined && !setpriv) {
    closeSync(logFd);
    throw new Error(`${name}: running it as ${options.runAs} needs util-linux setpriv`);
  }
  const user =
    options.runAs === undefined ? [] : [`--reuid=${options.runAs}`, `--regid=${options.runAs}`, '--init-groups'];
  let child: ChildProcess;
  try {
    child = spawn(setpriv ?? command, setpriv ? [...user, '--pdeathsig', 'TERM', '--', command, ...args] : [...args], {
      cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }

  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo ??= { code, signal };
      resolve(exitInfo);
    });
    child.once('error', (error) => {
      // 'error' without 'exit' happens when the spawn itself failed.
      if (child.pid === undefined) {
        exitInfo ??= { code: null, signal: null, error };
        resolve(exitInfo);
      }
    });
  });
  // The child must not keep the test process alive on its own; stop() awaits it explicitly.
  child.unref();

  const pid = child.pid ?? -1;
  const killGroup = (signal: NodeJS.Signals): void => {
    if (pid <= 0) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is already gone.
    }
  };

  let stopping: Promise<void> | undefined;
  const unregister = registerCleanup({
    label: `${name} (pid ${pid})`,
    stop: () => proc.stop(),
    killSync: () => killGroup('SIGKILL'),
  });

  const proc: ServerProcess = {
    name,
    pid,
    logFile,
    exited,
    hasExited: () => exitInfo !== undefined,
    logTail: (maxLines = 40) =>
      [logFile, ...(options.extraLogs ?? [])]
        .map((file) => readTail(file, maxLines))
        .filter(Boolean)
        .join('\n'),
    stop(stopOptions = {}) {
      stopping ??= (async () => {
        const { signal = options.stopSignal ?? 'SIGTERM', timeoutMs = 10_000 } = stopOptions;
        if (exitInfo === undefined) {
          killGroup(signal);
          let timer: NodeJS.Timeout | undefined;
          const timedOut = await Promise.race([
            exited.then(() => false),
            new Promise<boolean>((resolve) => {
              timer = setTimeout(() => resolve(true), timeoutMs);
            }),
          ]);
          clearTimeout(timer);
          if (timedOut) {
            killGroup('SIGKILL');
            await exited;
          }
        }
        // Sweep: anything the leader left behind in its group (e.g. workers of a killed master).
        killGroup('SIGKILL');
        unregister();
      })();
      return stopping;
    },
  };
  return proc;
}

/** Options for {@link waitForReady}. */
export interface WaitForReadyOptions {
  /** Give up after this long (default 30 s); the process is then stopped. */
  timeoutMs?: number;
  /** What is being waited for, for the error message (e.g. `GET /ping`). */
  what?: string;
}

/**
 * Polls `probe` until it returns true. Fails fast with the log tail when the process exits first,
 * and after `timeoutMs` (stopping the process) when it never becomes ready; never hangs.
 */
export async function waitForReady(
  proc: ServerProcess,
  probe: () => Promise<boolean>,
  options: WaitForReadyOptions = {},
): Promise<void> {
  const { timeoutMs = 30_000, what = 'readiness' } = options;
  const deadline = Date.now() + timeoutMs;
  let delayMs = 25;
  for (;;) {
    if (proc.hasExited()) {
      const info = await proc.exited;
      await proc.stop();
      throw new ServerStartError(`${proc.name} exited while starting (${describeExit(info)})`, proc.logTail());
    }
    let ready = false;
    try {
      ready = await probe();
    } catch {
      ready = false;
    }
    if (ready) return;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new ServerStartError(`${proc.name} did not pass ${what} within ${timeoutMs} ms`, proc.logTail());
    }
    await Promise.race([proc.exited, sleep(delayMs)]);
    delayMs = Math.min(delayMs * 2, 250);
  }
}

/** Options for {@link startServerProcess}: the process, and how to tell that it serves. */
export interface ServerProcessOptions extends StartProcessOptions, WaitForReadyOptions {
  /** Resolves true once the server serves (polled; a rejection counts as not yet). */
  ready: () => Promise<boolean>;
}

/**
 * Starts a server process ({@link startProcess}) and waits until `ready` says it serves
 * ({@link waitForReady}). When it does not come up, the process is stopped and a
 * {@link ServerStartError} carrying its log tail is thrown.
 */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const proc = startProcess(options);
  await waitForReady(proc, options.ready, options);
  return proc;
}

/** Options for {@link ServerDir.start}: as {@link startServerProcess}, working dir and log file defaulting to the dir. */
export type ServerDirProcessOptions = Omit<ServerProcessOptions, 'cwd' | 'logFile'> &
  Partial<Pick<ServerProcessOptions, 'cwd' | 'logFile'>>;

/** A server's temp dir and the processes started in it (see {@link startInServerDir}). */
export interface ServerDir {
  /** Absolute path of the directory. */
  readonly path: string;
  /**
   * {@link startServerProcess} with the dir as working dir and `<dir>/<name>.log` as log file unless
   * given; the process stops with the dir.
   */
  start(options: ServerDirProcessOptions): Promise<ServerProcess>;
  /** Stops every process started in the dir, newest first, then removes the dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The frame of every server starter: runs `setup` with a fresh temp dir (`/tmp/esp32hub-<label>-*`),
 * in which it writes its config and starts its process(es) with {@link ServerDir.start}, and returns
 * what `setup` returns (whose `stop` is typically the dir's). When `setup` fails, everything it started
 * is stopped and the dir removed before the error propagates; when it failed because a port was taken
 * (see {@link retryOnAddressInUse}), it runs again in a new dir.
 */
export function startInServerDir<T>(label: string, setup: (dir: ServerDir) => Promise<T>): Promise<T> {
  return retryOnAddressInUse(async () => {
    const dir = await serverDir(label);
    try {
      return await setup(dir);
    } catch (err) {
      await dir.stop();
      throw err;
    }
  });
}

async function serverDir(label: string): Promise<ServerDir> {
  const temp = await tempDir(label);
  const started: ServerProcess[] = [];
  let stopped: Promise<void> | undefined;
  return {
    path: temp.path,
    async start(options) {
      // One that does not come up is stopped by startServerProcess: only running ones are kept.
      const proc = await startServerProcess({
        cwd: temp.path,
        logFile: join(temp.path, `${options.name}.log`),
        ...options,
      });
      started.push(proc);
      return proc;
    },
    stop() {
      stopped ??= (async () => {
        for (const proc of [...started].reverse()) await proc.stop();
        await temp.remove();
      })();
      return stopped;
    },
  };
}

/**
 * Runs `attempt` again (up to `attempts` times) when it fails because a port was taken between
 * choosing it and binding it, which can happen with many test runs sharing one machine.
 */
export async function retryOnAddressInUse<T>(attempt: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof ServerStartError && err.addressInUse) || i >= attempts) throw err;
    }
  }
}

/** `GET url` answered with one of `statuses` within one second. */
export async function httpProbe(url: string, statuses: readonly number[] = [200, 204]): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
  await response.body?.cancel();
  return statuses.includes(response.status);
}

function describeExit(info: ExitInfo): string {
  if (info.error) return `spawn failed: ${info.error.message}`;
  return info.signal ? `signal ${info.signal}` : `exit code ${info.code}`;
}

/** The last `maxLines` lines of a text file; '' when it does not exist. */
export function readTail(file: string, maxLines: number): string {
  try {
    const lines = readFileSync(file, 'utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-maxLines).join('\n');
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
