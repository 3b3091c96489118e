/**
 * The data directory lock (server/storage/data-dir-lock.ts): who holds it, when a lock left behind is
 * stale (dead pid, reused pid, foreign holder without heartbeat), and that of several processes racing
 * for one stale lock exactly one wins.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import {
  acquireDataDirLock,
  type DataDirLock,
  DataDirLockedError,
  LOCK_FILE,
  procStartOf,
} from '../../server/storage/data-dir-lock.ts';
import { type TempDir, tempDir } from '../harness/index.ts';

const REPO = join(import.meta.dirname, '..', '..');

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

/** A pid that certainly has no process: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  return child.pid as number;
}

describe('data directory lock', () => {
  let dir: TempDir;
  const held: DataDirLock[] = [];
  const lockPath = () => join(dir.path, LOCK_FILE);
  const selfLock = () => JSON.parse(readFileSync(lockPath(), 'utf8')) as Record<string, unknown>;

  beforeEach(async () => {
    dir = await tempDir('lock-unit');
  });
  afterEach(async () => {
    for (const l of held.splice(0)) l.release();
    await dir.remove();
  });

  it('refuses a second holder with one line naming the first (pid, host, since, port)', async () => {
    const first = await acquireDataDirLock({ dataDir: dir.path, host: 'hub-a' });
    held.push(first);
    first.setPort(8123);
    const err = await acquireDataDirLock({ dataDir: dir.path }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataDirLockedError);
    const e = err as DataDirLockedError;
    expect(e.code).toBe('DATA_DIR_LOCKED');
    expect(e.message).not.toContain('\n');
    expect(e.message).toContain(`pid ${process.pid} on host hub-a`);
    expect(e.message).toContain(`since ${new Date(first.holder.sinceMs).toISOString()}`);
    expect(e.message).toContain('port 8123');
    expect(e.message).toContain(dir.path);
  });

  it('is free again after release, and release leaves a lock that is not its own alone', async () => {
    const first = await acquireDataDirLock({ dataDir: dir.path });
    first.release();
    expect(existsSync(lockPath())).toBe(false);
    const second = await acquireDataDirLock({ dataDir: dir.path });
    held.push(second);
    first.release(); // idempotent, and must not remove the second holder's lock
    expect(existsSync(lockPath())).toBe(true);
  });

  it('takes over the lock of a process that is gone', async () => {
    const first = await acquireDataDirLock({ dataDir: dir.path });
    first.release();
    const lock = { ...first.holder, pid: await deadPid() };
    writeFileSync(lockPath(), JSON.stringify(lock));
    const { logger, lines } = capture();
    held.push(await acquireDataDirLock({ dataDir: dir.path, logger }));
    expect(selfLock().pid).toBe(process.pid);
    expect(lines.map((l) => l.msg).join('\n')).toContain(`pid ${lock.pid}`);
  });

  it('takes over the lock of a killed process its parent has not reaped yet (a zombie)', async () => {
    // A parent that forks a child which exits at once, and never waits for it: the child stays a
    // zombie. (Not a shell: sh may reap its background job before it execs, which made this flaky.)
    const fork =
      'import os, sys, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(30)';
    const parent = spawn('python3', ['-c', fork], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((r) => parent.stdout.once('data', (b: Buffer) => r(b.toString()))));
      const state = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
      while (state() !== 'Z') await new Promise((r) => setTimeout(r, 10));
      const first = await acquireDataDirLock({ dataDir: dir.path });
      first.release();
      const start = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19] ?? null;
      writeFileSync(lockPath(), JSON.stringify({ ...first.holder, pid, procStart: start, nonce: 'zombie' }));
      held.push(await acquireDataDirLock({ dataDir: dir.path }));
      expect(selfLock().pid).toBe(process.pid);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('takes over when the pid is alive but was reused (another start time)', async () => {
    const first = await acquireDataDirLock({ dataDir: dir.path });
    first.release();
    // Our own pid is alive; a different start time says it is not the process that took the lock.
    expect(first.holder.procStart).toBe(procStartOf(process.pid));
    writeFileSync(lockPath(), JSON.stringify({ ...first.holder, procStart: '1', nonce: 'old' }));
    held.push(await acquireDataDirLock({ dataDir: dir.path }));
    expect(selfLock().nonce).not.toBe('old');
    // The same pid with its real start time is the live holder.
    held.pop()?.release();
    writeFileSync(lockPath(), JSON.stringify({ ...first.holder, nonce: 'live' }));
    await expect(acquireDataDirLock({ dataDir: dir.path })).rejects.toBeInstanceOf(DataDirLockedError);
  });

  describe('holder in another pid namespace or on another machine (judged by its heartbeat)', () => {
    const foreign = (sinceMs: number) => ({
      format: 'esp32hub-lock',
      pid: 1,
      host: 'other-machine',
      sinceMs,
      port: 8080,
      procStart: '42',
      bootId: 'another-kernel',
      pidNs: 'pid:[1]',
      nonce: 'foreign',
    });

    it('takes over at once when the heartbeat is older than staleMs', async () => {
      writeFileSync(lockPath(), JSON.stringify(foreign(Date.now() - 3_600_000)));
      const old = new Date(Date.now() - 3_600_000);
      utimesSync(lockPath(), old, old);
      held.push(await acquireDataDirLock({ dataDir: dir.path, staleMs: 60_000 }));
      expect(selfLock().pid).toBe(process.pid);
    });

    it('refuses when the heartbeat moves while it watches', async () => {
      writeFileSync(lockPath(), JSON.stringify(foreign(Date.now())));
      let beat = Date.now();
      const heart = setInterval(() => {
        beat += 1000; // strictly increasing mtimes, whatever the clock's resolution
        utimesSync(lockPath(), new Date(beat), new Date(beat));
      }, 30);
      try {
        const err = await acquireDataDirLock({ dataDir: dir.path, staleMs: 60_000, heartbeatMs: 100 }).catch(
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(DataDirLockedError);
        expect((err as Error).message).toContain('pid 1 on host other-machine');
      } finally {
        clearInterval(heart);
      }
      expect(selfLock().nonce).toBe('foreign');
    });

    it('takes over when the heartbeat stops for staleMs', async () => {
      writeFileSync(lockPath(), JSON.stringify(foreign(Date.now())));
      const { logger, lines } = capture();
      held.push(await acquireDataDirLock({ dataDir: dir.path, staleMs: 300, heartbeatMs: 100, logger }));
      expect(selfLock().pid).toBe(process.pid);
      const msgs = lines.map((l) => String(l.msg));
      expect(msgs.some((m) => m.includes('watching its heartbeat'))).toBe(true);
      expect(msgs.some((m) => m.includes('took over'))).toBe(true);
    });
  });

  it('keeps its heartbeat going while held', async () => {
    const lock = await acquireDataDirLock({ dataDir: dir.path, heartbeatMs: 20 });
    held.push(lock);
    const past = new Date(Date.now() - 60_000);
    utimesSync(lockPath(), past, past);
    while (Date.now() - statSync(lockPath()).mtimeMs > 30_000) {
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  it('says loudly when its lock file is removed while it runs', async () => {
    const { logger, lines } = capture();
    held.push(await acquireDataDirLock({ dataDir: dir.path, heartbeatMs: 20, logger }));
    unlinkSync(lockPath());
    while (!lines.some((l) => l.level === 50 && String(l.msg).includes('lock file was removed or replaced'))) {
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  it('of six processes racing for one stale lock, exactly one wins', async () => {
    const first = await acquireDataDirLock({ dataDir: dir.path });
    first.release();
    writeFileSync(lockPath(), JSON.stringify({ ...first.holder, pid: await deadPid(), nonce: 'stale' }));
    // Each child loads the module, says "ready", and races once every child is ready ("go").
    const script = `
      import { acquireDataDirLock } from './server/storage/data-dir-lock.ts';
      process.stdout.write('ready\\n');
      process.stdin.setEncoding('utf8');
      let input = '';
      let lock = null;
      process.stdin.on('data', async (chunk) => {
        input += chunk;
        if (input === 'go\\n') {
          try {
            lock = await acquireDataDirLock({ dataDir: ${JSON.stringify(dir.path)} });
            process.stdout.write('won\\n');
          } catch (err) {
            process.stdout.write((err.code ?? 'error: ' + err.message) + '\\n');
          }
        }
      });
      process.stdin.on('end', () => { lock?.release(); process.exit(0); });`;
    const n = 6;
    const children = Array.from({ length: n }, () =>
      spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: REPO,
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const lines = children.map((c) => {
      const queue: string[] = [];
      const waiters: ((line: string) => void)[] = [];
      let buf = '';
      c.stdout.on('data', (b: Buffer) => {
        buf += b.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const w = waiters.shift();
          if (w) w(line);
          else queue.push(line);
        }
      });
      c.once('exit', () => {
        for (const w of waiters.splice(0)) w('exited');
      });
      return () =>
        new Promise<string>((resolve) => (queue.length ? resolve(queue.shift() as string) : waiters.push(resolve)));
    });
    try {
      expect(await Promise.all(lines.map((next) => next()))).toEqual(Array(n).fill('ready'));
      for (const c of children) c.stdin.write('go\n');
      const outcomes = await Promise.all(lines.map((next) => next()));
      expect(outcomes.sort()).toEqual([...Array(n - 1).fill('DATA_DIR_LOCKED'), 'won']);
    } finally {
      for (const c of children) c.stdin.end();
      await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))));
    }
    expect(existsSync(lockPath())).toBe(false);
  });
});
