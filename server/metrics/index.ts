/**
 * Every metric the hub exposes on /metrics, in one place. A registry per hub instance (never the
 * global default) so tests can build several hubs in one process. Names follow Prometheus
 * conventions: `_total` counters, base units in names.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  const r = [registry];
  const metrics = {
    registry,

    // Device transport.
    handshakesRejected: new Counter({
      name: 'hub_handshakes_rejected_total',
      help: 'Device and live handshakes refused before the upgrade, by error code.',
      labelNames: ['endpoint', 'code'] as const,
      registers: r,
    }),
    deviceSessions: new Gauge({ name: 'hub_device_sessions', help: 'Live device sessions.', registers: r }),
    // Enrollment [PROTO-8.3.9].
    enrollRequests: new Counter({
      name: 'hub_enroll_requests_total',
      help: 'Enrollment decisions: pending, approved (operator), auto_approved (fleet secret), handed_over, confirmed, rejected.',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    enrollPending: new Gauge({ name: 'hub_enroll_pending', help: 'Pending enrollment requests.', registers: r }),
    enrollConnections: new Gauge({
      name: 'hub_enroll_connections',
      help: 'Open enrollment sockets (/v1/enroll).',
      registers: r,
    }),
    enrollRefused: new Counter({
      name: 'hub_enroll_refused_total',
      help: 'Enrollment requests and handshakes refused, by reason (error code).',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    framesIn: new Counter({
      name: 'hub_frames_received_total',
      help: 'Frames received from devices, by message type.',
      labelNames: ['type'] as const,
      registers: r,
    }),
    bytesIn: new Counter({ name: 'hub_bytes_received_total', help: 'Bytes received from devices.', registers: r }),
    frameErrors: new Counter({
      name: 'hub_frame_errors_total',
      help: 'Frames rejected, by error code (decode and session errors).',
      labelNames: ['code'] as const,
      registers: r,
    }),
    deviceDisconnects: new Counter({
      name: 'hub_device_disconnects_total',
      help: 'Device sessions ended, by reason.',
      labelNames: ['reason'] as const,
      registers: r,
    }),

    // Pipeline.
    readingsStored: new Counter({
      name: 'hub_readings_stored_total',
      help: 'Readings committed to the local log.',
      registers: r,
    }),
    readingsMissing: new Counter({
      name: 'hub_readings_missing_total',
      help: 'Samples marked missing (or f32 NaN) by devices; stored as absent.',
      registers: r,
    }),
    bootIdsReused: new Counter({
      name: 'hub_boot_ids_reused_total',
      help: 'HELLOs whose boot id the hub already held frames of, from a boot that started later (stored as a new boot).',
      registers: r,
    }),
    duplicates: new Counter({
      name: 'hub_duplicate_frames_total',
      help: 'TELEMETRY frames already stored (replays); acknowledged again, not stored again.',
      registers: r,
    }),
    gaps: new Counter({
      name: 'hub_sequence_gap_frames_total',
      help: 'Frames missing between stored sequence numbers of a boot (device outbox drops, lost data).',
      registers: r,
    }),
    timestampsClamped: new Counter({
      name: 'hub_timestamps_clamped_total',
      help: 'Frames whose timestamps were implausible and were clamped, by reason.',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    acksSent: new Counter({ name: 'hub_acks_sent_total', help: 'ACK frames sent to devices.', registers: r }),
    ingestInflightFrames: new Gauge({
      name: 'hub_ingest_inflight_frames',
      help: 'TELEMETRY frames handed to the local log and not yet durable, hub-wide.',
      registers: r,
    }),
    ingestInflightBytes: new Gauge({
      name: 'hub_ingest_inflight_bytes',
      help: 'Highest bytes of TELEMETRY frames in flight (not yet durable), hub-wide, over the last second or since the previous scrape, each frame counted with a 512 B overhead; above 16 MiB device links are paused.',
      registers: r,
    }),
    sessionPauses: new Counter({
      name: 'hub_device_session_pauses_total',
      help: 'Times a device link was paused because the bytes in flight hub-wide exceeded their bound (backpressure to the device).',
      registers: r,
    }),
    ackLatency: new Histogram({
      name: 'hub_ack_latency_seconds',
      help: 'Time from a TELEMETRY frame arriving to its ACK being due: durable (with ACK_DURABILITY=influx, also confirmed by InfluxDB). While the hub streams, ACK pacing may send the ACK up to 250 ms later, covering several frames.',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),

    // Local log.
    logDepthFrames: new Gauge({
      name: 'hub_local_log_unforwarded_frames',
      help: 'Frames in the local log not yet confirmed by InfluxDB (0 in embedded mode).',
      registers: r,
    }),
    logBytes: new Gauge({
      name: 'hub_local_log_bytes',
      help: 'Logical size of the local log (records, index and key overhead): what LOG_MAX_BYTES caps.',
      registers: r,
    }),
    logStoreBytes: new Gauge({
      name: 'hub_local_log_store_bytes',
      help: "Pages the local log's databases occupy (lmdb's own accounting); the cap is scaled by store/logical.",
      registers: r,
    }),
    dataDirFreeBytes: new Gauge({
      name: 'hub_data_dir_free_bytes',
      help: "Free bytes on the data directory's filesystem (statfs, checked every second).",
      registers: r,
    }),
    logFull: new Gauge({
      name: 'hub_local_log_full',
      help: 'STORAGE_FULL now (1) or not (0), by reason: cap (backpressure policy) or disk (free space below LOG_MIN_FREE_BYTES).',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    logFullEpisodes: new Counter({
      name: 'hub_local_log_full_episodes_total',
      help: 'Times the local log started refusing frames (STORAGE_FULL), by reason.',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    logCommitFailures: new Counter({
      name: 'hub_local_log_commit_failures_total',
      help: 'Group commits that failed (their frames and those queued behind them were not acknowledged).',
      registers: r,
    }),
    callbackErrors: new Counter({
      name: 'hub_callback_errors_total',
      help: 'Callbacks or event listeners that threw (isolated: the others still ran), by component.',
      labelNames: ['component'] as const,
      registers: r,
    }),
    logCommits: new Counter({ name: 'hub_local_log_commits_total', help: 'Group commits.', registers: r }),
    logIndexBacklog: new Gauge({
      name: 'hub_local_log_index_backlog_entries',
      help: 'Stored frames whose time-index entry is still written behind (in memory, batched per device; a restart re-reads their frames).',
      registers: r,
    }),
    logFullRejections: new Counter({
      name: 'hub_local_log_full_rejections_total',
      help: 'Frames refused (not acknowledged) because the local log was full (backpressure policy).',
      registers: r,
    }),
    logEvicted: new Counter({
      name: 'hub_local_log_evicted_frames_total',
      help: 'Frames removed from the local log, by reason (retention, size cap, drop-oldest while unforwarded).',
      labelNames: ['reason'] as const,
      registers: r,
    }),

    // InfluxDB forwarder.
    forwarderLagSeconds: new Gauge({
      name: 'hub_forwarder_lag_seconds',
      help: 'Age of the oldest frame not yet confirmed by InfluxDB.',
      registers: r,
    }),
    forwardedLines: new Counter({
      name: 'hub_forwarder_lines_written_total',
      help: 'Line-protocol lines InfluxDB confirmed.',
      registers: r,
    }),
    writeFailures: new Counter({
      name: 'hub_forwarder_write_failures_total',
      help: 'Failed InfluxDB write requests, by HTTP status (or "network").',
      labelNames: ['status'] as const,
      registers: r,
    }),
    deadLettered: new Counter({
      name: 'hub_forwarder_dead_lettered_lines_total',
      help: 'Lines InfluxDB rejected permanently (400/422 after bisection), kept in the dead-letter store.',
      registers: r,
    }),
    deadLetterEvicted: new Counter({
      name: 'hub_dead_letter_evicted_lines_total',
      help: 'Dead-lettered lines removed, oldest first, to keep the dead-letter store within its byte cap (lost).',
      registers: r,
    }),
    deadLetterLines: new Gauge({
      name: 'hub_dead_letter_lines',
      help: 'Lines kept in the dead-letter store.',
      registers: r,
    }),
    deadLetterBytes: new Gauge({
      name: 'hub_dead_letter_bytes',
      help: 'Bytes the dead-letter store counts against its cap (INFLUX_DEAD_LETTER_MAX_BYTES).',
      registers: r,
    }),
    deadLetterMaxBytes: new Gauge({
      name: 'hub_dead_letter_max_bytes',
      help: 'The dead-letter store cap, bytes (INFLUX_DEAD_LETTER_MAX_BYTES).',
      registers: r,
    }),
    deadLetterReplayed: new Counter({
      name: 'hub_dead_letter_replayed_lines_total',
      help: 'Dead-lettered lines replayed by an operator, by outcome: stored (InfluxDB took them) or rejected (kept again).',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    deadLetterDropped: new Counter({
      name: 'hub_dead_letter_dropped_lines_total',
      help: 'Dead-lettered lines an operator dropped (CLI or admin API).',
      registers: r,
    }),
    statsDropped: new Counter({
      name: 'hub_forwarder_stats_dropped_total',
      help: 'hub_stats points replaced by a newer one before they could be written (InfluxDB slow or down).',
      registers: r,
    }),

    // Commands.
    commands: new Counter({
      name: 'hub_commands_total',
      help: 'Commands by outcome (sent, accepted, ok, failed, timeout, ...).',
      labelNames: ['outcome'] as const,
      registers: r,
    }),

    // Live fan-out.
    liveClients: new Gauge({ name: 'hub_live_clients', help: 'Connected live (browser) clients.', registers: r }),
    liveMessages: new Counter({
      name: 'hub_live_messages_sent_total',
      help: 'Messages sent to live clients.',
      registers: r,
    }),
    liveCoalesced: new Counter({
      name: 'hub_live_coalesced_updates_total',
      help: 'Updates folded into a later one because the client was behind (high-water mark).',
      registers: r,
    }),
    liveEvictions: new Counter({
      name: 'hub_live_evictions_total',
      help: 'Live clients disconnected, by reason (drain timeout, policy).',
      labelNames: ['reason'] as const,
      registers: r,
    }),

    // MQTT.
    mqttMessages: new Counter({
      name: 'hub_mqtt_messages_total',
      help: 'MQTT messages, by direction (in, out) and outcome (in: delivered, no_session, unknown_device, bad_topic, not_owner (several instances: another one handles the device); out: sent, dropped, failed).',
      labelNames: ['direction', 'outcome'] as const,
      registers: r,
    }),
    mqttConnected: new Gauge({
      name: 'hub_mqtt_connected',
      help: "1 while the hub's MQTT client is connected to the broker (MQTT_URL), else 0.",
      registers: r,
    }),
    mqttConnectFailures: new Counter({
      name: 'hub_mqtt_connect_failures_total',
      help: 'Failed or lost broker connections, by reason (unreachable, not_authorized, lost).',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    mqttInflight: new Gauge({
      name: 'hub_mqtt_inflight_messages',
      help: 'QoS 1 messages published to the broker and not yet acknowledged by it (bounded by MQTT_MAX_INFLIGHT).',
      registers: r,
    }),
    mqttQueued: new Gauge({
      name: 'hub_mqtt_queued_messages',
      help: 'Messages waiting for the broker (offline or in-flight window full); bounded by MQTT_OFFLINE_QUEUE_MAX.',
      registers: r,
    }),
    mqttInputPaused: new Gauge({
      name: 'hub_mqtt_input_paused',
      help: '1 while the hub holds back PUBACKs to the broker because device sessions are paused (backpressure).',
      registers: r,
    }),
    mqttBrokerAccess: new Counter({
      name: 'hub_mqtt_broker_access_total',
      help: 'Broker credential and ACL changes (dynamic security), by action (grant, revoke, setup) and outcome (ok, failed).',
      labelNames: ['action', 'outcome'] as const,
      registers: r,
    }),
  };
  // The event-loop delay histogram samples every 100 ms instead of prom-client's 10 ms: its timer woke
  // an idle hub 100 times a second, a third of its idle CPU (docs/performance.md, "Issue 12, sixth
  // pass"). A stall of 100 ms or more always delays a sample; a shorter one shows when a sample falls due
  // during it, so the lag percentiles weigh short stalls by chance rather than every 10 ms.
  collectDefaultMetrics({ register: registry, prefix: 'hub_process_', eventLoopMonitoringPrecision: 100 });
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
