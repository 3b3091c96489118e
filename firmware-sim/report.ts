/**
 * What people see: the live status line (a TTY only) and the end-of-run summary table. Pure
 * formatting; `cli.ts` decides where it goes.
 */
import type { FleetSnapshot, FleetSummary } from './fleet.ts';

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(sec).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function rate(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

/**
 * One status line from two snapshots: connected boards, frames/s sent and acked over the interval,
 * total outbox depth, reconnects and drops so far.
 */
export function statusLine(scenario: string, prev: FleetSnapshot, now: FleetSnapshot, elapsedMs: number): string {
  const secs = Math.max(0.001, (now.atMs - prev.atMs) / 1000);
  return [
    `sim ${scenario} ${formatDuration(elapsedMs)}`,
    `${now.connected}/${now.devices} connected`,
    `sent ${rate((now.framesSent - prev.framesSent) / secs)}/s`,
    `acked ${rate((now.framesAcked - prev.framesAcked) / secs)}/s`,
    `outbox ${now.outboxDepth}`,
    `reconnects ${now.reconnects}`,
    `dropped ${now.framesDropped}`,
  ].join(' · ');
}

function table(rows: string[][], rightAlignFrom = 1): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (let i = 0; i < r.length; i++) widths[i] = Math.max(widths[i] ?? 0, (r[i] as string).length);
  }
  return rows
    .map((r) =>
      r
        .map((c, i) => (i >= rightAlignFrom ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const ms = (v: number | null) => (v === null ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(1));

/** The summary as a human-readable block: totals table, latency, errors; per-device rows on request. */
export function summaryTable(s: FleetSummary, options: { perDevice?: boolean } = {}): string {
  const t = s.totals;
  const n = (k: string) => String(t[k] ?? 0);
  const out: string[] = [];
  out.push(
    `Simulated ${s.devices} device(s), scenario ${s.scenario}, seed ${s.seed}, ${s.ratePerDevice} frame/s each, ran ${formatDuration(s.durationMs)}`,
    '',
  );
  out.push(
    table([
      ['', 'frames', 'readings'],
      ['generated', n('framesGenerated'), n('readingsGenerated')],
      ['sent (incl. replays)', n('framesSent'), ''],
      ['acked', n('framesAcked'), n('readingsAcked')],
      ['replayed', n('framesReplayed'), ''],
      ['dropped (outbox full)', n('framesDropped'), n('readingsDropped')],
      ['  of which never sent', n('framesDroppedUnsent'), ''],
      ['lost in RAM (crash, power cut)', '', n('readingsLostOnCrash')],
      ['restored from flash at power-on', n('framesRestored'), ''],
      ['left in outboxes', String(s.outboxDepth), ''],
    ]),
    '',
  );
  out.push(
    table([
      ['connections', ''],
      ['sessions (WELCOME)', n('sessions')],
      ['reconnects', n('reconnects')],
      ['attempts failed', n('connectFailures')],
      ['handshakes refused', n('handshakeRefusals')],
      ['Wi-Fi drops (scenario)', n('wifiDrops')],
      ['reboots', n('reboots')],
      ['power cuts', n('powerCuts')],
      ...(t.flushes || t.flushesIncomplete
        ? [
            ['deep-sleep flushes (complete / not)', `${n('flushes')} / ${n('flushesIncomplete')}`],
            ['awake (radio on)', `${((100 * (t.awakeMs ?? 0)) / Math.max(1, s.durationMs * s.devices)).toFixed(1)} %`],
          ]
        : []),
      ['heartbeat / ack timeouts', `${n('heartbeatTimeouts')} / ${n('ackTimeouts')}`],
    ]),
    '',
  );
  const l = s.ackLatencyMs;
  out.push(`ack latency (ms): p50 ${ms(l.p50)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (${l.count} acked sends)`);
  const kv = (r: Record<string, number>) =>
    Object.entries(r)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  if (Object.keys(s.errorsByCode).length) out.push(`hub errors: ${kv(s.errorsByCode)}`);
  if (Object.keys(s.refusalsByStatus).length) out.push(`handshake refusals by HTTP status: ${kv(s.refusalsByStatus)}`);
  if (Object.keys(s.closesByCode).length) out.push(`close codes: ${kv(s.closesByCode)}`);
  if (t.malformedSent) {
    out.push(
      `malformed frames: ${n('malformedSent')} sent, ${n('malformedRejected')} rejected with a coded ERROR, ${n('malformedUnanswered')} not rejected`,
    );
    out.push(`  ${kv(s.malformedByOutcome)}`);
  }
  if (t.bootIdReused)
    out.push(
      `WARNING: ${n('bootIdReused')} boot(s) found their boot id already used at the hub; their frames were restamped with a new one`,
    );
  if (t.ackRegressions)
    out.push(`WARNING: ${n('ackRegressions')} WELCOME(s) reported less than the hub had acked before`);
  if (options.perDevice) {
    out.push(
      '',
      table([
        ['device', 'boot', 'sent', 'acked', 'replayed', 'dropped', 'reconnects', 'readings', 'outbox'],
        ...s.perDevice.map((d) => [
          d.id,
          d.bootId.toString(16).padStart(8, '0'),
          String(d.framesSent),
          String(d.framesAcked),
          String(d.framesReplayed),
          String(d.framesDropped),
          String(d.reconnects),
          String(d.readingsAcked),
          String(d.outboxDepth),
        ]),
      ]),
    );
  }
  return `${out.join('\n')}\n`;
}
