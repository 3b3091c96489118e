/**
 * `--record <file>`: every reading's fate as JSON lines, appended as it happens, for reconciling a run
 * (or several runs with one `--state-dir`) against what the hub stored:
 *
 * - `sampled`: sealed into a frame and written to the board's flash (buffered);
 * - `lost`: still in RAM when the board crashed or lost power (never in a frame, never sent);
 * - `acked`: the hub acknowledged its frame (durably stored [PROTO-3.5]);
 * - `dropped` / `dropped-sent`: the full outbox dropped its frame, never sent / after it was sent.
 *
 * A `sampled` line is written right after its frame is in flash, so a run that ends normally (or by
 * Ctrl-C) leaves a complete record; a simulator killed between the two writes may miss the last one.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { type RecordedFrame, type RecordedReading, readingsOf, type SampleRecorder } from './recorder.ts';

export type RecordEvent = 'sampled' | 'lost' | 'acked' | 'dropped' | 'dropped-sent';

/** One line of the record: a reading and what happened to it. */
export interface RecordLine extends RecordedReading {
  event: RecordEvent;
}

export class FileRecorder implements SampleRecorder {
  private fd: number | null;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'a', 0o600);
  }

  private write(event: RecordEvent, frame: RecordedFrame): void {
    if (this.fd === null) return;
    let text = '';
    for (const r of readingsOf(frame)) text += `${JSON.stringify({ event, ...r })}\n`;
    if (text) writeSync(this.fd, text);
  }

  sampled(frame: RecordedFrame): void {
    this.write('sampled', frame);
  }
  lost(frame: RecordedFrame): void {
    this.write('lost', frame);
  }
  acked(frame: RecordedFrame): void {
    this.write('acked', frame);
  }
  dropped(frame: RecordedFrame, wasSent: boolean): void {
    this.write(wasSent ? 'dropped-sent' : 'dropped', frame);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** Reads a record file (a torn last line, from a killed simulator, is skipped). */
export function readRecord(path: string): RecordLine[] {
  const out: RecordLine[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as RecordLine);
    } catch {
      // torn
    }
  }
  return out;
}
