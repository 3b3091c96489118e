/** What a chaos run found, and how it is printed. */
import type { FleetCounters } from './fleet.ts';
import type { DeviceLedger } from './ledger.ts';
import { type ReconcileResult, reconcileIsClean } from './reconcile.ts';

export interface ChaosReport {
  scenario: string;
  /** Set when the run could not take place (e.g. not root); `ok` is then false and nothing was proven. */
  skipped: string | null;
  /** Everything that went wrong; empty when the run passed. */
  failures: string[];
  /** Figures in print order: [label, value]. */
  figures: [string, string][];
  reconcile: ReconcileResult | null;
  /** The devices' ledgers (for a second reconciliation by a test). */
  ledgers: DeviceLedger[];
}

export function newReport(scenario: string): ChaosReport {
  return { scenario, skipped: null, failures: [], figures: [], reconcile: null, ledgers: [] };
}

export function passed(r: ChaosReport): boolean {
  return r.skipped === null && r.failures.length === 0 && r.reconcile !== null && reconcileIsClean(r.reconcile);
}

/** Adds what the devices saw of the hub: closes and ERROR frames by code, reconnects. */
export function addFleetFigures(r: ChaosReport, c: FleetCounters): void {
  const byCode = (m: Map<number, number>) =>
    [...m.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([k, v]) => `${k}: ${fmtInt(v)}`)
      .join(', ') || 'none';
  r.figures.push(
    ['connections (failed attempts)', `${fmtInt(c.connects)} (${fmtInt(c.connectFailures)})`],
    ['closes seen by devices (close code: count)', byCode(c.closes)],
    ['ERROR frames besides STORAGE_FULL (wire code: count)', byCode(c.errors)],
    ['frames sent (replays included)', fmtInt(c.framesSent)],
    ['WELCOME behind an ACK already received', fmtInt(c.welcomeBehindAck)],
    ['ACK for a frame never sent', fmtInt(c.ackBeyondSent)],
    ['frames from the hub that did not decode', fmtInt(c.undecodable)],
  );
  if (c.welcomeBehindAck > 0) r.failures.push(`${c.welcomeBehindAck} WELCOMEs forgot an ACK the device had received`);
  if (c.ackBeyondSent > 0) r.failures.push(`${c.ackBeyondSent} ACKs named frames that were never sent`);
  if (c.undecodable > 0) r.failures.push(`${c.undecodable} frames from the hub did not decode`);
}

/** Adds the reconciliation's figures and turns any discrepancy into a failure. */
export function addReconcile(r: ChaosReport, rec: ReconcileResult): void {
  r.reconcile = rec;
  r.figures.push(
    ['store checked', rec.store],
    ['acknowledged readings', fmtInt(rec.ackedReadings)],
    ['lost (acked, not stored)', fmtInt(rec.lost)],
    ['duplicated (points at one device/channel/time beyond the first)', fmtInt(rec.duplicated)],
    ['changed (stored value differs from the value sent)', fmtInt(rec.changed)],
    ['unexpected (stored at a time never sampled)', fmtInt(rec.unexpected)],
    ['sent but never acknowledged (stored anyway)', `${fmtInt(rec.unackedReadings)} (${fmtInt(rec.unackedStored)})`],
  );
  if (rec.lost > 0) r.failures.push(`${rec.lost} acknowledged readings are not stored`);
  if (rec.duplicated > 0) r.failures.push(`${rec.duplicated} readings are stored more than once`);
  if (rec.changed > 0) r.failures.push(`${rec.changed} stored values differ from what the devices sent`);
  if (rec.unexpected > 0) r.failures.push(`${rec.unexpected} stored readings have times no device sampled`);
}

export function formatReport(r: ChaosReport): string {
  const lines = [`chaos ${r.scenario}`];
  const width = Math.max(0, ...r.figures.map(([k]) => k.length));
  for (const [k, v] of r.figures) lines.push(`  ${k.padEnd(width)}  ${v}`);
  if (r.reconcile && r.reconcile.examples.length > 0) {
    lines.push('  first discrepancies:');
    for (const d of r.reconcile.examples) {
      const what = [
        d.expected !== undefined ? `sent ${String(d.expected)}` : '',
        d.stored !== undefined ? `stored ${String(d.stored)}` : '',
      ]
        .filter(Boolean)
        .join(', ');
      lines.push(`    ${d.kind} ${d.deviceId}/${d.channel} @ ${new Date(d.timeMs).toISOString()} ${what}`);
    }
  }
  if (r.skipped !== null) lines.push(`SKIPPED: ${r.skipped}`);
  else if (passed(r)) lines.push('PASS');
  else {
    lines.push('FAIL');
    for (const f of r.failures) lines.push(`  - ${f}`);
  }
  return lines.join('\n');
}

/** Nearest-rank percentile of `values` (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
export const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
