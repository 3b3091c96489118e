/**
 * `npm start` stopped as an operator stops it (a signal to the whole process group: Ctrl-C on a
 * terminal, `kill -- -<pgid>`, a service manager): the hub shuts down cleanly and says so, even when
 * the signal finds it busy. A launcher between npm and the hub that gives the hub a few milliseconds
 * to answer a relayed signal and then SIGKILLs it (the tsx CLI does) fails this: the hub must be the
 * process npm's shell starts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  type ServerProcess,
  startProcess,
  type TempDir,
  tempDir,
  until,
  waitForReady,
} from '../harness/index.ts';
import { REPO_ROOT } from './run-script.ts';

/** The fields of a /proc `stat` file after the command name ("(comm)" may hold spaces): state, ppid, pgrp, … */
function statFields(path: string): string[] {
  const stat = readFileSync(path, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The processes of process group `pgid`, with their parent and command line. */
function processGroup(pgid: number): { pid: number; ppid: number; cmdline: string }[] {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const [, ppid, pgrp] = statFields(`/proc/${entry}/stat`);
      if (Number(pgrp) !== pgid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      found.push({ pid: Number(entry), ppid: Number(ppid), cmdline });
    } catch {
      // the process ended while being read
    }
  }
  return found;
}

/** The process running server/main.ts: the innermost one, if a launcher runs it in a child. */
function hubPid(pgid: number): number | undefined {
  const hubs = processGroup(pgid).filter((p) => p.cmdline.includes('server/main.ts') && !p.cmdline.startsWith('sh '));
  return hubs.find((p) => !hubs.some((child) => child.ppid === p.pid))?.pid;
}

/** Whether every thread of `pid` is stopped (SIGSTOP takes effect per thread, as each is scheduled). */
function allThreadsStopped(pid: number): boolean {
  return readdirSync(`/proc/${pid}/task`).every((tid) => statFields(`/proc/${pid}/task/${tid}/stat`)[0] === 'T');
}

/** Whether `signal` (a number) is pending for `pid`, delivered but not yet handled. */
function signalPending(pid: number, signal: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const bit = 1n << BigInt(signal - 1);
  return ['SigPnd', 'ShdPnd'].some((field) => {
    const mask = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & bit) !== 0n;
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start, stopped by a signal to its process group', () => {
  let dir: TempDir;
  const started: ServerProcess[] = [];

  beforeAll(async () => {
    dir = await tempDir('npm-start-stop');
  });
  afterAll(async () => {
    for (const p of started) await p.stop();
    await dir?.remove();
  });

  // SIGINT: Ctrl-C on a terminal; SIGTERM: kill, a service manager.
  it.each([
    ['SIGINT', 2],
    ['SIGTERM', 15],
  ] as const)('shuts the hub down cleanly when %s finds it busy', async (signal, signalNumber) => {
    const port = await freePort();
    const logFile = join(dir.path, `npm-start-${signal}.log`);
    const npm = startProcess({
      name: 'npm start',
      command: 'npm',
      args: ['start'],
      cwd: REPO_ROOT,
      logFile,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        // A developer's own .env in the repository root stays out of the run.
        ENV_FILE: '/dev/null',
        // npm checks for a newer npm now and then; nothing in this test needs the network.
        npm_config_update_notifier: 'false',
        HUB_HOST: '127.0.0.1',
        HUB_PORT: String(port),
        HUB_DATA_DIR: join(dir.path, `data-${signal}`),
        HUB_LOG_FORMAT: 'json',
      },
    });
    started.push(npm);
    await waitForReady(npm, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, { what: 'GET /readyz' });
    const hub = hubPid(npm.pid);
    expect(hub, 'a process running server/main.ts in npm start’s group').toBeDefined();
    if (hub === undefined) return;

    // The hub is busy (here: stopped) while the stop signal reaches every process of the group.
    process.kill(hub, 'SIGSTOP');
    try {
      // Once no thread runs, none can take the signal off the queue: it waits for the hub's return.
      await until('every thread of the hub stopped', () => allThreadsStopped(hub));
      process.kill(-npm.pid, signal);
      await until(`${signal} pending in the busy hub`, () => signalPending(hub, signalNumber));
      // The hub's busy spell: longer than a launcher's patience for a relayed signal (tsx: 60 ms).
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      if (alive(hub)) process.kill(hub, 'SIGCONT');
    }
    await until('the hub process to end', () => !alive(hub), 30_000);

    const lines = readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; signal?: string });
    const messages = lines.map((l) => l.msg);
    expect(messages, 'the hub handled the signal (it was not killed first)').toContain('shutting down');
    // `stopped` is logged once every commit is done and the store is closed, just before exit 0.
    expect(lines.find((l) => l.msg === 'stopped')).toMatchObject({ signal });
    expect(messages).not.toContain('second signal: exiting at once');
  });
});
