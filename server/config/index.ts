/**
 * The hub's one configuration: read from the environment (and an optional JSON file named by
 * HUB_CONFIG_FILE), validated once with every problem listed, then frozen. Nothing else in the hub
 * reads `process.env`; `main.ts` passes `process.env` in.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ALERT_ENV_SCHEMA, alertsConfigFrom, loadAlertRules } from '../alerts/config.ts';
import type { AlertsConfig } from '../alerts/types.ts';
import { HubError } from '../errors.ts';
import { COMMIT_WINDOW_MAX_LIMIT_MS, COMMIT_WINDOW_MAX_MS, COMMIT_WINDOW_MS } from '../storage/commit-window.ts';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const list = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean));
const secret = (minLength: number) =>
  z.string().min(minLength, `must be at least ${minLength} characters (use: openssl rand -hex 32)`);

/** Every variable, its schema and default. `.env.example` lists the same names (a test checks). */
export const ENV_SCHEMA = {
  HUB_HOST: z.string().min(1).default('0.0.0.0'),
  HUB_PORT: int(0, 65535).default(8080),
  HUB_DATA_DIR: z.string().min(1).default('.data'),
  HUB_PUBLIC_URL: z.url().optional(),
  HUB_ALLOWED_ORIGINS: list.default([]),
  HUB_TLS_CERT_FILE: z.string().min(1).optional(),
  HUB_TLS_KEY_FILE: z.string().min(1).optional(),
  HUB_ADMIN_TOKEN: secret(32).optional(),
  HUB_DASHBOARD_PASSWORD: secret(12).optional(),
  HUB_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HUB_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
  HUB_HEAP_GROWTH_PERCENT: int(0, 400).default(60),

  DEVICE_MAX_CONNECTIONS: int(1, 1_000_000).default(20_000),
  DEVICE_HANDSHAKES_PER_SEC: int(1, 100_000).default(500),
  DEVICE_HEARTBEAT_INTERVAL_SEC: int(1, 3600).default(15),
  DEVICE_HELLO_TIMEOUT_MS: int(100, 60_000).default(10_000),
  DEVICE_MAX_PAYLOAD_BYTES: int(4096, 16_384).default(16_384),
  DEVICE_SAMPLE_INTERVAL_MS: int(0, 3_600_000).default(0),
  DEVICE_MAX_FUTURE_SKEW_MS: int(0, 86_400_000).default(300_000),

  LOG_MAX_BYTES: int(16 * 1024 * 1024, Number.MAX_SAFE_INTEGER).default(2 * 1024 ** 3),
  LOG_RETENTION_HOURS: int(1, 24 * 3650).default(24 * 7),
  LOG_FULL_POLICY: z.enum(['backpressure', 'drop-oldest']).default('backpressure'),
  LOG_MIN_FREE_BYTES: int(1024 * 1024, Number.MAX_SAFE_INTEGER).default(64 * 1024 * 1024),
  LOG_COMMIT_WINDOW_MAX_MS: int(COMMIT_WINDOW_MS, COMMIT_WINDOW_MAX_LIMIT_MS).default(COMMIT_WINDOW_MAX_MS),

  INFLUX_URL: z.url().optional(),
  INFLUX_TOKEN: z.string().min(1).optional(),
  INFLUX_ORG: z.string().min(1).optional(),
  INFLUX_BUCKET: z.string().min(1).optional(),
  INFLUX_BATCH_LINES: int(1, 100_000).default(20_000),
  INFLUX_FLUSH_INTERVAL_MS: int(10, 60_000).default(250),
  INFLUX_MAX_IN_FLIGHT_WRITES: int(1, 16).default(2),
  INFLUX_TIMEOUT_MS: int(100, 300_000).default(10_000),
  INFLUX_MAX_RETRY_DELAY_MS: int(100, 600_000).default(30_000),
  INFLUX_STATS_INTERVAL_MS: int(0, 3_600_000).default(5000),
  INFLUX_DEAD_LETTER_MAX_BYTES: int(1024 * 1024, Number.MAX_SAFE_INTEGER).default(1024 ** 3),

  LIVE_MAX_CLIENTS: int(1, 100_000).default(1000),
  LIVE_HIGH_WATER_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  LIVE_DRAIN_TIMEOUT_MS: int(100, 600_000).default(10_000),
  LIVE_MAX_SUBSCRIPTIONS: int(1, 10_000).default(100),
  GRAFANA_URL: z.url().optional(),

  MQTT_URL: z.url().optional(),
  MQTT_USERNAME: z.string().optional(),
  MQTT_PASSWORD: z.string().optional(),
  MQTT_TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'must be topic levels without wildcards, e.g. esp32hub')
    .default('esp32hub'),
  MQTT_CLIENT_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -')
    .default('esp32hub-hub'),
  MQTT_SESSION_EXPIRY_SEC: int(0, 4_294_967_295).default(7 * 24 * 3600),
  MQTT_DEVICE_ACCESS: z.enum(['none', 'dynsec']).default('none'),
  MQTT_DEVICE_IDLE_SEC: int(5, 86_400).default(120),
  MQTT_MAX_INFLIGHT: int(1, 65_535).default(1000),
  MQTT_OFFLINE_QUEUE_MAX: int(0, 10_000_000).default(10_000),
  MQTT_BRIDGE: z.enum(['off', 'on']).default('off'),
  MQTT_BRIDGE_INTERVAL_MS: int(100, 3_600_000).default(1000),
  MQTT_HA_DISCOVERY: z.enum(['off', 'on']).default('off'),
  MQTT_HA_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'must be topic levels without wildcards, e.g. homeassistant')
    .default('homeassistant'),

  ENROLL_MODE: z.enum(['off', 'approve', 'secret']).default('approve'),
  ENROLL_FLEET_SECRET: secret(16)
    .max(64, 'must be at most 64 characters')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
    .optional(),
  ENROLL_MAX_PENDING: int(1, 100_000).default(1000),
  ENROLL_PENDING_TTL_SEC: int(60, 365 * 86_400).default(7 * 86_400),
  ENROLL_MAX_CONNECTIONS: int(1, 100_000).default(1000),
  ENROLL_HANDSHAKES_PER_MIN_PER_IP: int(1, 100_000).default(60),

  OTA_PUBLIC_KEY_FILE: z.string().min(1).optional(),
  OTA_MAX_IMAGES: int(1, 1000).default(16),
  OTA_MAX_IMAGE_BYTES: int(1024, 64 * 1024 * 1024).default(4 * 1024 * 1024),
  OTA_CREDENTIAL_TTL_SEC: int(10, 86_400).default(900),
  OTA_MAX_CONCURRENT_DOWNLOADS: int(1, 10_000).default(4),
  OTA_MAX_BYTES_PER_SEC: int(1024, 1024 ** 3).default(1024 * 1024),
  OTA_RESULT_TIMEOUT_SEC: int(1, 86_400).default(600),

  // Built-in alerts (docs/alerts.md): ALERT_OFFLINE_AFTER_SEC, ALERT_RULES_FILE, ALERT_WEBHOOK_*.
  ...ALERT_ENV_SCHEMA,

  // Several hub instances serving one fleet (docs/scaling.md): PostgreSQL holds the shared state.
  CLUSTER_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\/\S+$/, 'must be a postgres:// or postgresql:// connection URL')
    .optional(),
  HUB_INSTANCE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -')
    .optional(),
  ACK_DURABILITY: z.enum(['local', 'influx']).default('local'),
} as const;

export type EnvName = keyof typeof ENV_SCHEMA;
const envSchema = z.object(ENV_SCHEMA);
type Env = z.infer<typeof envSchema>;

export interface InfluxConfig {
  url: string;
  token: string;
  org: string;
  bucket: string;
  batchLines: number;
  flushIntervalMs: number;
  timeoutMs: number;
  maxRetryDelayMs: number;
  statsIntervalMs: number;
  /**
   * Cap on the dead-letter store, bytes (oldest evicted first, counted and logged). Loaded configs
   * always set it; default 1 GiB (`DEFAULT_DEAD_LETTER_MAX_BYTES`).
   */
  deadLetterMaxBytes?: number;
  /**
   * Write requests the forwarder keeps in flight at once (`INFLUX_MAX_IN_FLIGHT_WRITES`, default 2,
   * `DEFAULT_MAX_IN_FLIGHT_WRITES`); the cursor still moves only over batches confirmed in order.
   */
  maxInFlightWrites?: number;
}

/** Write requests in flight when a config does not say (docs/storage.md §3). */
export const DEFAULT_MAX_IN_FLIGHT_WRITES = 2;

export interface MqttConfig {
  url: string;
  username: string | undefined;
  /** Never logged. */
  password: string | undefined;
  /** Topics are `<prefix>/v1/<deviceId>/up` and `.../down` [PROTO-1.6]. */
  topicPrefix: string;
  /** The hub's client id: stable, so its persistent session survives restarts. */
  clientId: string;
  /** MQTT 5 session expiry: how long the broker keeps the hub's session (and queues frames) while it is away. */
  sessionExpirySec: number;
  /** `dynsec`: the hub issues per-device broker credentials and ACLs (Mosquitto); `none`: the operator does. */
  deviceAccess: 'none' | 'dynsec';
  /** A device session with no frame for this long ends (`reason="heartbeat"`). */
  deviceIdleSec: number;
  /** QoS 1 messages in flight each way (hub → broker publishes awaiting PUBACK; broker → hub, MQTT 5 receive maximum). */
  maxInflight: number;
  /** Frames to devices held while the broker is unreachable or the in-flight window is full; beyond it the oldest is dropped. */
  offlineQueueMax: number;
}

export interface HubConfig {
  server: {
    host: string;
    port: number;
    /** Base URL people and devices use, for printed hints; derived from host/port when unset. */
    publicUrl: string;
    /** Origins browsers may connect from; the hub's own origin is always allowed. */
    allowedOrigins: string[];
    tls: { certFile: string; keyFile: string } | null;
  };
  auth: {
    /** Enables the admin API when set. Compared in constant time, never logged. */
    adminToken: string | null;
    /** Read-only dashboard password; null means the dashboard needs no login (loopback-only default). */
    dashboardPassword: string | null;
  };
  devices: {
    maxConnections: number;
    handshakesPerSec: number;
    heartbeatIntervalSec: number;
    helloTimeoutMs: number;
    maxPayloadBytes: number;
    sampleIntervalMs: number;
    maxFutureSkewMs: number;
  };
  storage: {
    dataDir: string;
    maxBytes: number;
    retentionHours: number;
    fullPolicy: 'backpressure' | 'drop-oldest';
    /** Free space kept on the data directory's filesystem; below it frames are refused (STORAGE_FULL). */
    minFreeBytes: number;
    /** The longest a frame waits for its group's commit, so for its ACK (ms). */
    commitWindowMaxMs: number;
  };
  influx: InfluxConfig | null;
  live: {
    maxClients: number;
    highWaterBytes: number;
    drainTimeoutMs: number;
    maxSubscriptions: number;
    /** Grafana's base URL as browsers reach it (GRAFANA_URL): the device page links to its dashboard; null = no link. */
    grafanaUrl: string | null;
  };
  /** The MQTT device transport (server/mqtt/); null when MQTT_URL is unset. */
  mqtt: MqttConfig | null;
  /**
   * The readings bridge (server/mqtt/bridge.ts) and Home Assistant discovery (ha-discovery.ts); null
   * when MQTT_URL is unset or MQTT_BRIDGE is off.
   */
  mqttBridge: { intervalMs: number; haDiscovery: { prefix: string } | null } | null;
  /** Self-enrollment of boards over `/v1/enroll` [PROTO-8] (server/enroll/). */
  enroll: {
    /** off: the endpoint answers 404; approve: an operator (or the fleet secret) approves; secret: only the fleet secret. */
    mode: 'off' | 'approve' | 'secret';
    /** Auto-approves requests that carry it. Compared in constant time, never logged. */
    fleetSecret: string | null;
    maxPending: number;
    pendingTtlSec: number;
    /** Open enrollment sockets at most; more are refused with 503 AT_CAPACITY. */
    maxConnections: number;
    /** Enrollment handshakes per remote address per minute (burst of as many); more get 429. */
    handshakesPerMinPerIp: number;
  };
  /** OTA updates (server/ota/, docs/ota.md). */
  ota: {
    /** The operator's ECDSA P-256 public key (PEM file); null: image uploads are refused. */
    publicKeyFile: string | null;
    maxImages: number;
    maxImageBytes: number;
    /** Lifetime of a per-device download credential. */
    credentialTtlSec: number;
    /** Downloads running at once; more are answered 503 with Retry-After. */
    maxConcurrentDownloads: number;
    /** Bytes per second across all downloads (token bucket). */
    maxBytesPerSec: number;
    /** A campaign board without an outcome this long after its command is `timed_out`. */
    resultTimeoutSec: number;
  };
  /** Built-in alert rules and their sinks (server/alerts/, docs/alerts.md). */
  alerts: AlertsConfig;
  /** `format`: auto = human-readable on a terminal, JSON lines otherwise (main.ts decides). */
  log: { level: Env['HUB_LOG_LEVEL']; format: Env['HUB_LOG_FORMAT'] };
  /**
   * How far V8 lets the heap grow past what the last full collection kept, in percent (0: V8's own
   * choice, up to 4× under fast allocation). Applied by the process entry (main.ts), not by buildHub.
   */
  heapGrowthPercent: number;
  /**
   * Several instances serving one fleet (server/cluster/, docs/scaling.md); null when
   * CLUSTER_DATABASE_URL is unset (one instance, as always).
   */
  cluster: ClusterConfig | null;
  /**
   * What a device ACK waits for: `local` = the local log's flushed commit (default); `influx` = also
   * InfluxDB's confirmation of the frame's lines (server/storage/influx/, docs/scaling.md).
   */
  ackDurability: 'local' | 'influx';
}

export interface ClusterConfig {
  /** PostgreSQL connection URL: registry, sessions, per-device state. Holds a password: never logged. */
  databaseUrl: string;
  /** This instance's stable name (HUB_INSTANCE_ID, default the host name): unique in the cluster. */
  instanceId: string;
}

/** Thrown when configuration is invalid; `problems` lists every one of them. */
export class ConfigError extends HubError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

type Source = Record<string, string | undefined>;

/**
 * Builds the config from environment variables; `HUB_CONFIG_FILE` may name a JSON file whose keys
 * are the same variable names (the environment wins). Empty strings count as unset.
 */
export function loadConfig(env: Source): Readonly<HubConfig> {
  const problems: string[] = [];
  let fileValues: Record<string, unknown> = {};
  const file = env.HUB_CONFIG_FILE;
  if (file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      fileValues = parsed as Record<string, unknown>;
      for (const key of Object.keys(fileValues)) {
        if (!Object.hasOwn(ENV_SCHEMA, key)) problems.push(`${file}: unknown setting ${key}`);
      }
    } catch (err) {
      problems.push(`HUB_CONFIG_FILE ${file}: ${(err as Error).message}`);
    }
  }
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(ENV_SCHEMA)) {
    const fromEnv = env[key];
    raw[key] = fromEnv !== undefined && fromEnv !== '' ? fromEnv : fileValues[key];
  }
  const parsed = envSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  }
  // Cross-field checks look at which variables are set (raw), so they are reported together with
  // any schema problems rather than only after those are fixed.
  const influxKeys = ['INFLUX_URL', 'INFLUX_TOKEN', 'INFLUX_ORG', 'INFLUX_BUCKET'] as const;
  const influxSet = influxKeys.filter((k) => raw[k] !== undefined);
  if (influxSet.length > 0 && influxSet.length < influxKeys.length) {
    const missing = influxKeys.filter((k) => raw[k] === undefined);
    problems.push(`${missing.join(', ')}: required when ${influxSet.join(', ')} is set`);
  }
  if (raw.MQTT_URL !== undefined && !/^(mqtts?|wss?):\/\//.test(String(raw.MQTT_URL))) {
    problems.push('MQTT_URL: must start with mqtt://, mqtts://, ws:// or wss://');
  }
  if (raw.MQTT_URL === undefined && raw.MQTT_DEVICE_ACCESS === 'dynsec') {
    problems.push('MQTT_DEVICE_ACCESS: dynsec needs MQTT_URL');
  }
  if (raw.MQTT_URL === undefined && raw.MQTT_BRIDGE === 'on') problems.push('MQTT_BRIDGE: on needs MQTT_URL');
  if (raw.CLUSTER_DATABASE_URL !== undefined) {
    // The broker is the bus between instances; InfluxDB the one store every instance's history reads.
    if (raw.MQTT_URL === undefined) problems.push('CLUSTER_DATABASE_URL: several instances need MQTT_URL (the bus)');
    if (raw.INFLUX_URL === undefined) {
      problems.push('CLUSTER_DATABASE_URL: several instances need INFLUX_URL (the shared store)');
    }
  }
  if (raw.ACK_DURABILITY === 'influx' && raw.INFLUX_URL === undefined) {
    problems.push('ACK_DURABILITY: influx needs INFLUX_URL');
  }
  if (raw.ACK_DURABILITY === 'influx' && raw.LOG_FULL_POLICY === 'drop-oldest') {
    // drop-oldest may evict a frame InfluxDB has not confirmed; the cursor then passes it and its ACK follows.
    problems.push('ACK_DURABILITY: influx needs LOG_FULL_POLICY=backpressure (drop-oldest would ACK evicted frames)');
  }
  if (raw.MQTT_HA_DISCOVERY === 'on' && raw.MQTT_BRIDGE !== 'on') {
    problems.push(
      "MQTT_HA_DISCOVERY: on needs MQTT_BRIDGE=on (the entities read the bridge's state and status topics)",
    );
  }
  if (raw.ENROLL_MODE === 'secret' && raw.ENROLL_FLEET_SECRET === undefined) {
    problems.push('ENROLL_MODE: secret needs ENROLL_FLEET_SECRET');
  }
  if ((raw.HUB_TLS_CERT_FILE === undefined) !== (raw.HUB_TLS_KEY_FILE === undefined)) {
    problems.push('HUB_TLS_CERT_FILE, HUB_TLS_KEY_FILE: set both or neither');
  }
  const origins = ENV_SCHEMA.HUB_ALLOWED_ORIGINS.safeParse(raw.HUB_ALLOWED_ORIGINS);
  for (const origin of origins.success ? origins.data : []) {
    if (!/^https?:\/\/[^/]+$/.test(origin))
      problems.push(`HUB_ALLOWED_ORIGINS: ${origin} is not an origin like https://host:port`);
  }
  // The alert rules file is read and checked here, so its problems are listed with the others.
  const alertRules = loadAlertRules(raw, problems);
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;

  const scheme = e.HUB_TLS_CERT_FILE ? 'https' : 'http';
  const instanceId = e.HUB_INSTANCE_ID ?? instanceIdFromHost(hostname());
  const shownHost = e.HUB_HOST === '0.0.0.0' || e.HUB_HOST === '::' ? 'localhost' : e.HUB_HOST;
  const config: HubConfig = {
    server: {
      host: e.HUB_HOST,
      port: e.HUB_PORT,
      publicUrl: e.HUB_PUBLIC_URL ?? `${scheme}://${shownHost}:${e.HUB_PORT}`,
      allowedOrigins: e.HUB_ALLOWED_ORIGINS,
      tls:
        e.HUB_TLS_CERT_FILE && e.HUB_TLS_KEY_FILE
          ? { certFile: e.HUB_TLS_CERT_FILE, keyFile: e.HUB_TLS_KEY_FILE }
          : null,
    },
    auth: { adminToken: e.HUB_ADMIN_TOKEN ?? null, dashboardPassword: e.HUB_DASHBOARD_PASSWORD ?? null },
    devices: {
      maxConnections: e.DEVICE_MAX_CONNECTIONS,
      handshakesPerSec: e.DEVICE_HANDSHAKES_PER_SEC,
      heartbeatIntervalSec: e.DEVICE_HEARTBEAT_INTERVAL_SEC,
      helloTimeoutMs: e.DEVICE_HELLO_TIMEOUT_MS,
      maxPayloadBytes: e.DEVICE_MAX_PAYLOAD_BYTES,
      sampleIntervalMs: e.DEVICE_SAMPLE_INTERVAL_MS,
      maxFutureSkewMs: e.DEVICE_MAX_FUTURE_SKEW_MS,
    },
    storage: {
      dataDir: e.HUB_DATA_DIR,
      maxBytes: e.LOG_MAX_BYTES,
      retentionHours: e.LOG_RETENTION_HOURS,
      fullPolicy: e.LOG_FULL_POLICY,
      minFreeBytes: e.LOG_MIN_FREE_BYTES,
      commitWindowMaxMs: e.LOG_COMMIT_WINDOW_MAX_MS,
    },
    influx:
      e.INFLUX_URL && e.INFLUX_TOKEN && e.INFLUX_ORG && e.INFLUX_BUCKET
        ? {
            url: e.INFLUX_URL,
            token: e.INFLUX_TOKEN,
            org: e.INFLUX_ORG,
            bucket: e.INFLUX_BUCKET,
            batchLines: e.INFLUX_BATCH_LINES,
            flushIntervalMs: e.INFLUX_FLUSH_INTERVAL_MS,
            timeoutMs: e.INFLUX_TIMEOUT_MS,
            maxRetryDelayMs: e.INFLUX_MAX_RETRY_DELAY_MS,
            statsIntervalMs: e.INFLUX_STATS_INTERVAL_MS,
            deadLetterMaxBytes: e.INFLUX_DEAD_LETTER_MAX_BYTES,
            maxInFlightWrites: e.INFLUX_MAX_IN_FLIGHT_WRITES,
          }
        : null,
    live: {
      maxClients: e.LIVE_MAX_CLIENTS,
      highWaterBytes: e.LIVE_HIGH_WATER_BYTES,
      drainTimeoutMs: e.LIVE_DRAIN_TIMEOUT_MS,
      maxSubscriptions: e.LIVE_MAX_SUBSCRIPTIONS,
      grafanaUrl: e.GRAFANA_URL ? e.GRAFANA_URL.replace(/\/+$/, '') : null,
    },
    mqtt: e.MQTT_URL
      ? {
          url: e.MQTT_URL,
          username: e.MQTT_USERNAME,
          password: e.MQTT_PASSWORD,
          topicPrefix: e.MQTT_TOPIC_PREFIX,
          // Each instance needs its own persistent broker session.
          clientId: e.CLUSTER_DATABASE_URL ? `${e.MQTT_CLIENT_ID}-${instanceId}` : e.MQTT_CLIENT_ID,
          sessionExpirySec: e.MQTT_SESSION_EXPIRY_SEC,
          deviceAccess: e.MQTT_DEVICE_ACCESS,
          deviceIdleSec: e.MQTT_DEVICE_IDLE_SEC,
          maxInflight: e.MQTT_MAX_INFLIGHT,
          offlineQueueMax: e.MQTT_OFFLINE_QUEUE_MAX,
        }
      : null,
    mqttBridge:
      e.MQTT_URL && e.MQTT_BRIDGE === 'on'
        ? {
            intervalMs: e.MQTT_BRIDGE_INTERVAL_MS,
            haDiscovery: e.MQTT_HA_DISCOVERY === 'on' ? { prefix: e.MQTT_HA_PREFIX } : null,
          }
        : null,
    enroll: {
      mode: e.ENROLL_MODE,
      fleetSecret: e.ENROLL_FLEET_SECRET ?? null,
      maxPending: e.ENROLL_MAX_PENDING,
      pendingTtlSec: e.ENROLL_PENDING_TTL_SEC,
      maxConnections: e.ENROLL_MAX_CONNECTIONS,
      handshakesPerMinPerIp: e.ENROLL_HANDSHAKES_PER_MIN_PER_IP,
    },
    ota: {
      publicKeyFile: e.OTA_PUBLIC_KEY_FILE ?? null,
      maxImages: e.OTA_MAX_IMAGES,
      maxImageBytes: e.OTA_MAX_IMAGE_BYTES,
      credentialTtlSec: e.OTA_CREDENTIAL_TTL_SEC,
      maxConcurrentDownloads: e.OTA_MAX_CONCURRENT_DOWNLOADS,
      maxBytesPerSec: e.OTA_MAX_BYTES_PER_SEC,
      resultTimeoutSec: e.OTA_RESULT_TIMEOUT_SEC,
    },
    alerts: alertsConfigFrom(e, alertRules),
    log: { level: e.HUB_LOG_LEVEL, format: e.HUB_LOG_FORMAT },
    heapGrowthPercent: e.HUB_HEAP_GROWTH_PERCENT,
    cluster: e.CLUSTER_DATABASE_URL ? { databaseUrl: e.CLUSTER_DATABASE_URL, instanceId } : null,
    ackDurability: e.ACK_DURABILITY,
  };
  return deepFreeze(config);
}

/** A valid config for tests and embedding: defaults plus overrides given as variable names. */
export function configFrom(overrides: Partial<Record<EnvName, string>> = {}): Readonly<HubConfig> {
  return loadConfig(overrides);
}

/** A host name as an instance id: its allowed characters only, at most 64. */
function instanceIdFromHost(host: string): string {
  return host.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64) || 'hub';
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
