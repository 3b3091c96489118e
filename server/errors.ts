/**
 * The one catalogue of coded errors. Every error the hub logs, counts, sends in an ERROR frame or
 * answers over HTTP has an entry here; `docs/errors.md` lists the same table and a test fails when
 * the two drift. Match on `err.code`, never on message text.
 */

/** Where an error is detected. */
export type ErrorLayer =
  | 'frame'
  | 'session'
  | 'storage'
  | 'handshake'
  | 'http'
  | 'config'
  | 'mqtt'
  | 'enroll'
  | 'ota'
  | 'cluster';

export interface ErrorSpec {
  /** u16 code carried in ERROR frames [PROTO-3.8]. */
  readonly wire: number;
  /** WebSocket close code sent to the peer, or null when the error does not close the connection. */
  readonly close: number | null;
  /** HTTP status for errors answered over HTTP (handshake refusals, REST), else null. */
  readonly http: number | null;
  readonly layer: ErrorLayer;
  readonly summary: string;
}

function spec(wire: number, layer: ErrorLayer, close: number | null, http: number | null, summary: string): ErrorSpec {
  return { wire, layer, close, http, summary };
}

export const ERRORS = {
  // Frame layer: produced by the pure codec [PROTO-2.7].
  TRUNCATED: spec(100, 'frame', 1007, null, 'The frame or a field ends before its declared size.'),
  BAD_MAGIC: spec(101, 'frame', 1002, null, 'The frame does not start with the magic bytes "ES".'),
  BAD_VERSION: spec(
    102,
    'frame',
    1003,
    null,
    'The frame is written in a protocol version the receiver does not speak.',
  ),
  TOO_LARGE: spec(103, 'frame', 1009, null, 'The frame is larger than 4096 bytes.'),
  BAD_LENGTH: spec(
    104,
    'frame',
    1007,
    null,
    'Bytes are left over after the frame or after the last field of the payload.',
  ),
  BAD_CRC: spec(105, 'frame', 1007, null, 'The CRC-32 trailer does not match the frame.'),
  UNKNOWN_TYPE: spec(106, 'frame', 1003, null, 'The message type is not defined in this protocol version.'),
  BAD_FLAGS: spec(107, 'frame', 1002, null, 'The reserved byte or a flag bit undefined for the message type is set.'),
  BAD_FIELD: spec(108, 'frame', 1007, null, 'A field is out of range, has a bad alphabet or is not canonical.'),
  BAD_VALUE_TYPE: spec(109, 'frame', 1007, null, 'A value type id is unknown or not allowed where it is used.'),

  // Session layer: the hub's device session [PROTO-5].
  TEXT_FRAME: spec(200, 'session', 1003, null, 'A text WebSocket message arrived; devices send binary frames only.'),
  UNEXPECTED_MESSAGE: spec(
    201,
    'session',
    1002,
    null,
    'A message arrived that is not allowed in the session state (e.g. TELEMETRY before HELLO).',
  ),
  DEVICE_MISMATCH: spec(
    202,
    'session',
    1008,
    null,
    'HELLO names a device other than the one the token was issued for.',
  ),
  UNKNOWN_DESCRIPTORS: spec(
    203,
    'session',
    null,
    null,
    'TELEMETRY refers to a descriptor set the hub does not hold; send DESCRIPTORS and replay.',
  ),
  UNKNOWN_CHANNEL: spec(
    204,
    'session',
    1007,
    null,
    'A TELEMETRY block names a channel index missing from its descriptor set.',
  ),
  TYPE_MISMATCH: spec(
    205,
    'session',
    1007,
    null,
    "A TELEMETRY block's value type differs from its channel descriptor.",
  ),
  HELLO_TIMEOUT: spec(206, 'session', 1002, null, 'No HELLO arrived within 10 s of the upgrade.'),
  REPLACED: spec(207, 'session', 4001, null, 'A newer connection of the same device replaced this one.'),
  REVOKED: spec(208, 'session', 1008, null, "The device's token was revoked or rotated."),
  COMMAND_UNKNOWN: spec(
    209,
    'session',
    null,
    null,
    'COMMAND_ACCEPTED or COMMAND_RESULT names a command id the hub did not send.',
  ),
  CONNECTION_LOST: spec(
    210,
    'session',
    null,
    null,
    "The device's connection ended without a close: over MQTT its last will, a FATAL ERROR on its up topic.",
  ),

  // Storage layer.
  STORAGE_FULL: spec(
    300,
    'storage',
    null,
    507,
    'The local log is full (backpressure policy) or the disk is short of LOG_MIN_FREE_BYTES; the frame is not acknowledged.',
  ),
  INTERNAL: spec(301, 'storage', 1011, 500, 'The hub failed internally; the frame is not acknowledged.'),
  SHUTTING_DOWN: spec(302, 'storage', 1001, 503, 'The hub is shutting down.'),

  // Handshake: answered over HTTP before any WebSocket exists.
  UNAUTHORIZED: spec(400, 'handshake', null, 401, 'Missing, malformed or unknown credentials.'),
  BAD_SUBPROTOCOL: spec(401, 'handshake', null, 400, 'The client did not offer a subprotocol this endpoint speaks.'),
  FORBIDDEN_ORIGIN: spec(402, 'handshake', null, 403, 'The Origin header is not on the allowlist.'),
  RATE_LIMITED: spec(403, 'handshake', null, 429, 'Too many handshakes or requests; retry later.'),
  AT_CAPACITY: spec(404, 'handshake', null, 503, 'The hub holds as many connections as it is configured for.'),

  // HTTP API.
  NOT_FOUND: spec(500, 'http', null, 404, 'No such route or resource.'),
  BAD_REQUEST: spec(501, 'http', null, 400, 'The request is malformed or a parameter is invalid.'),
  DEVICE_OFFLINE: spec(502, 'http', null, 409, 'The device has no live session to send a command to.'),
  PAYLOAD_TOO_LARGE: spec(503, 'http', null, 413, 'The request body is larger than allowed.'),
  DEVICE_EXISTS: spec(504, 'http', null, 409, 'A device with this id is already registered.'),
  METHOD_NOT_ALLOWED: spec(505, 'http', null, 405, 'The route exists but does not accept this HTTP method.'),

  // Configuration: the hub refuses to start and lists every problem.
  CONFIG_INVALID: spec(600, 'config', null, null, 'The configuration has one or more invalid values.'),
  DATA_DIR_LOCKED: spec(601, 'config', null, null, 'Another running hub holds the data directory.'),
  PORT_IN_USE: spec(602, 'config', null, null, 'Another program listens on the port set by HUB_PORT.'),
  LISTEN_FAILED: spec(
    603,
    'config',
    null,
    null,
    'The hub cannot listen on HUB_HOST:HUB_PORT (a port below 1024 without privileges, or an address not of this machine).',
  ),

  // MQTT: the hub's own broker connection (device frames over MQTT use the codes above).
  MQTT_UNREACHABLE: spec(700, 'mqtt', null, null, 'The MQTT broker (MQTT_URL) cannot be reached.'),
  MQTT_NOT_AUTHORIZED: spec(
    701,
    'mqtt',
    null,
    null,
    'The MQTT broker refused the hub: bad MQTT_USERNAME/MQTT_PASSWORD or missing permissions.',
  ),
  MQTT_BROKER_ACCESS: spec(
    702,
    'mqtt',
    null,
    null,
    "A change to a device's broker credentials or ACLs failed (dynamic-security command refused or unanswered).",
  ),
  MQTT_QUEUE_FULL: spec(
    703,
    'mqtt',
    null,
    null,
    'A frame for a device was dropped: the hub held MQTT_OFFLINE_QUEUE_MAX frames waiting for the broker.',
  ),

  // Enrollment: the /v1/enroll endpoint [PROTO-8].
  ENROLL_SECRET_INVALID: spec(
    800,
    'enroll',
    1008,
    null,
    'The enrollment request carried a fleet secret that does not match (or none where one is required).',
  ),
  ENROLL_REJECTED: spec(801, 'enroll', 1008, null, 'An operator rejected this board (hardware id and enroll key).'),
  ENROLL_PENDING_FULL: spec(
    802,
    'enroll',
    1013,
    null,
    'The pending enrollment list holds ENROLL_MAX_PENDING requests; retry later.',
  ),
  ENROLL_KEY_MISMATCH: spec(
    803,
    'enroll',
    1008,
    null,
    'The hardware id was approved for another enroll key (another board, or a factory-reset one).',
  ),

  // OTA updates (server/ota/, docs/ota.md).
  OTA_SIGNATURE_INVALID: spec(
    900,
    'ota',
    null,
    422,
    'The OTA image is unsigned or its signature does not verify with the OTA public key.',
  ),
  OTA_NOT_CONFIGURED: spec(901, 'ota', null, 409, 'OTA images are refused: OTA_PUBLIC_KEY_FILE is not set.'),
  OTA_STORE_FULL: spec(902, 'ota', null, 409, 'The OTA image store holds OTA_MAX_IMAGES images.'),
  OTA_CREDENTIAL_INVALID: spec(
    903,
    'ota',
    null,
    401,
    'The OTA download credential is missing, unknown, expired or for another image.',
  ),
  OTA_BUSY: spec(904, 'ota', null, 503, 'OTA_MAX_CONCURRENT_DOWNLOADS downloads are running; retry after Retry-After.'),
  OTA_DEVICE_ON_OTHER_INSTANCE: spec(
    905,
    'ota',
    null,
    409,
    'The board is connected to another hub instance; OTA updates are sent by the instance holding it.',
  ),

  // Several instances (server/cluster/, docs/scaling.md).
  CLUSTER_DB_UNAVAILABLE: spec(
    1000,
    'cluster',
    null,
    503,
    'The cluster database (CLUSTER_DATABASE_URL, PostgreSQL) cannot be reached or refused the login.',
  ),
  CLUSTER_RPC_TIMEOUT: spec(
    1030,
    'cluster',
    null,
    504,
    'The instance holding the device did not answer in time, or the broker between instances is unreachable.',
  ),
  CLUSTER_RELAY_DROPPED: spec(
    1031,
    'cluster',
    null,
    null,
    'Live events between instances were dropped (relay buffer full, broker unreachable, or a malformed batch).',
  ),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

const BY_WIRE = new Map<number, ErrorCode>(
  (Object.keys(ERRORS) as ErrorCode[]).map((code) => [ERRORS[code].wire, code]),
);

/** Looks up the symbolic code for a wire code from an ERROR frame. */
export function errorCodeFromWire(wire: number): ErrorCode | undefined {
  return BY_WIRE.get(wire);
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/** An error with a machine code; `closeCode`/`httpStatus` come from the catalogue. */
export class HubError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string = ERRORS[code].summary, options?: ErrorOptions) {
    super(message, options);
    this.name = 'HubError';
    this.code = code;
  }
  get closeCode(): number | null {
    return ERRORS[this.code].close;
  }
  get wireCode(): number {
    return ERRORS[this.code].wire;
  }
  get httpStatus(): number | null {
    return ERRORS[this.code].http;
  }
}

/** A frame-layer error raised by the codec. */
export class ProtocolError extends HubError {
  constructor(code: ErrorCode, message?: string) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}
