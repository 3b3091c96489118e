/** Helpers for benchmarks that run their parts (hub, load, clients) as child processes. */
import type { ChildProcess } from 'node:child_process';
import { encodeFrame } from '../server/codec/index.ts';

/**
 * The next IPC message of `type` from `child`. Rejects when the child exits first or nothing comes
 * within `timeoutMs`, so a crashed worker fails the benchmark instead of hanging it.
 */
export function nextMessage<M extends { type: string }>(
  child: ChildProcess,
  type: M['type'],
  timeoutMs = 120_000,
): Promise<M> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => finish(new Error(`no '${type}' message from worker within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (m: M) => {
      if (m.type === type) finish(null, m);
    };
    const onExit = (code: number | null) => finish(new Error(`worker exited (${code}) before '${type}'`));
    function finish(err: Error | null, m?: M) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m as M);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** A bench device's HELLO [PROTO-3.1]: synced clock, firmware "bench", nothing buffered or dropped. */
export function benchHello(deviceId: string, bootId: number, descriptorHash: number, uptimeMs: number): Uint8Array {
  return encodeFrame({
    type: 'hello',
    timeSynced: true,
    deviceId,
    firmwareVersion: 'bench',
    maxProtocolVersion: 1,
    bootId,
    resetReason: 1,
    uptimeMs,
    descriptorHash,
    bufferedFrames: 0,
    droppedFrames: 0,
  });
}
