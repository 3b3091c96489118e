/**
 * Runs a repository script as `npm run …` would (`node --import tsx`, a minimal environment),
 * collecting its output. The one script runner of the integration tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * `node` with tsx's loader, as package.json's scripts run an entry point (`node --import tsx …`):
 * one process, so a stop signal reaches the script itself. The loader is named by URL so the script
 * may run from any directory (a bare `tsx` resolves against the working directory).
 */
export const NODE_TSX = {
  command: process.execPath,
  args: ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href],
} as const;

export interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunScriptOptions {
  /** Working directory (default: the repository root, where `npm run` runs scripts). */
  cwd?: string;
  /**
   * Kills the script (SIGKILL, code null) if it has not exited by then: for scripts expected to exit
   * at once, such as a hub that must refuse to start, so a regression fails instead of hanging.
   */
  killAfterMs?: number;
}

/** A script started with {@link startScript}: its output so far, and its end. */
export interface StartedScript {
  readonly child: ChildProcess;
  /** Everything the script has written so far. */
  output(): { stdout: string; stderr: string };
  /** Resolves when the script has exited, with all its output. */
  readonly exited: Promise<ScriptRun>;
}

/**
 * Starts `script` (relative to the repository root); `env` is added to PATH and HOME only (and, run
 * from the repository root, ENV_FILE=/dev/null).
 */
export function startScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
  options: RunScriptOptions = {},
): StartedScript {
  // In the repository root a developer's own .env would reach the script (npm start and npm run hub
  // read it): an empty env file keeps the run to the settings the test gives.
  const envFile = options.cwd === undefined ? { ENV_FILE: '/dev/null' } : {};
  const child = spawn(NODE_TSX.command, [...NODE_TSX.args, resolve(REPO_ROOT, script), ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...envFile, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c;
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c;
  });
  const exited = new Promise<ScriptRun>((done, reject) => {
    const killer = options.killAfterMs ? setTimeout(() => child.kill('SIGKILL'), options.killAfterMs) : undefined;
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      done({ code, stdout, stderr });
    });
  });
  return { child, output: () => ({ stdout, stderr }), exited };
}

/** Runs `script` (relative to the repository root) to its end; `env` is added to PATH and HOME only. */
export function runScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
  options: RunScriptOptions = {},
): Promise<ScriptRun> {
  return startScript(script, args, env, options).exited;
}
