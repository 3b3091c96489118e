/**
 * The harness's safety net: every server, browser and temp dir the harness creates registers here,
 * so that nothing survives the test process, even when a test fails, a hook times out or the
 * worker is interrupted.
 *
 * Normal path: each test stops what it started in `afterAll` (or calls {@link stopAll}).
 * Safety net: on `exit`, and on SIGINT/SIGTERM/SIGHUP, every still-registered resource is killed
 * synchronously (process groups get SIGKILL, temp dirs are removed).
 * Last resort: server processes are started with a parent-death signal (see `process.ts`), so they
 * die even if this process is killed with SIGKILL and no handler runs.
 */
import { rmSync } from 'node:fs';

/** A resource the safety net knows how to release. */
export interface Cleanup {
  /** Shown in warnings. */
  readonly label: string;
  /** Graceful, asynchronous release (used by {@link stopAll}). */
  stop(): Promise<void>;
  /** Last-resort, synchronous release, safe to call from an `exit` handler. */
  killSync(): void;
}

const registry = new Set<Cleanup>();
let installed = false;

/** Registers a resource; returns a function that unregisters it (call it once it is released). */
export function registerCleanup(cleanup: Cleanup): () => void {
  installSafetyNet();
  registry.add(cleanup);
  return () => {
    registry.delete(cleanup);
  };
}

/** Registers a directory to be removed recursively when the process exits, unless removed before. */
export function registerTempDir(path: string): () => void {
  return registerCleanup({
    label: `temp dir ${path}`,
    stop: async () => removeDirSync(path),
    killSync: () => removeDirSync(path),
  });
}

/**
 * Stops everything still registered, newest first (so an nginx goes before the engine behind it).
 * Errors are collected and rethrown together after every resource had its turn.
 */
export async function stopAll(): Promise<void> {
  const errors: unknown[] = [];
  for (const cleanup of [...registry].reverse()) {
    try {
      await cleanup.stop();
    } catch (err) {
      errors.push(err);
    } finally {
      registry.delete(cleanup);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, `stopAll: ${errors.length} resource(s) failed to stop`);
}

/** Number of registered resources (servers, browsers, temp dirs); tests of the harness use it. */
export function pendingCleanups(): number {
  return registry.size;
}

/** True when temp dirs should be kept for post-mortem inspection (`HARNESS_KEEP_TMP=1`). */
export function keepTempDirs(): boolean {
  return process.env['HARNESS_KEEP_TMP'] === '1';
}

function removeDirSync(path: string): void {
  if (keepTempDirs()) return;
  rmSync(path, { recursive: true, force: true, maxRetries: 3 });
}

function killAllSync(): void {
  for (const cleanup of [...registry].reverse()) {
    try {
      cleanup.killSync();
    } catch {
      // Best effort: the process is going away and must not throw from an exit handler.
    }
  }
  registry.clear();
}

function installSafetyNet(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync();
      // Adding a listener disables Node's default "die on signal". When we are the only listener,
      // restore the default and re-raise so the process still ends the way its sender intended.
      if (process.listenerCount(signal) === 1) {
        process.off(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}
