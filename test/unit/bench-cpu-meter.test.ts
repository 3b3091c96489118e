import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { cpuMeter, describeCpuShare, processTree } from '../../bench/workers.ts';

/**
 * The benchmarks' CPU meter (bench/workers.ts): the rows that say how busy the machine was, and who
 * used it, during a step. Measured against a real process burning a known amount of CPU.
 */
describe('bench cpuMeter', () => {
  it("attributes a busy process's CPU to it, and the machine's busy time covers it", async () => {
    // A child that spins until it has used 400 ms of CPU, then says so and waits to be ended.
    const marker = `cpu-meter-test-${process.pid}`;
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const t0 = process.cpuUsage(); for (;;) { const u = process.cpuUsage(t0); if (u.user + u.system >= 400_000) break; } console.log('done'); setInterval(() => {}, 1000); // ${marker}`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const meter = cpuMeter({ spinner: [child.pid as number], nobody: [] });
      await once(child.stdout, 'data');
      const share = meter.stop();
      // Ticks are 10 ms; node's start-up adds a little on top of the 400 ms of spinning.
      expect(share.seconds.spinner).toBeGreaterThanOrEqual(0.38);
      expect(share.seconds.nobody).toBe(0);
      // /proc/stat and /proc/<pid>/stat are both sampled per 10 ms tick: a little slack between them.
      const machineBusySeconds = (share.machinePercent / 100) * share.cores * share.wallSeconds;
      expect(machineBusySeconds).toBeGreaterThanOrEqual((share.seconds.spinner ?? 0) * 0.8);
      expect(share.machinePercent).toBeLessThanOrEqual(100);
      expect(describeCpuShare(share)).toMatch(/^machine \d+ % of \d+ cores busy; spinner \d+ %, nobody 0 % of a core$/);
      // The child is found by its command line.
      expect(processTree(marker)).toContain(child.pid);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
