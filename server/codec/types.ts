/** Protocol v1 constants and message shapes. See docs/protocol.md; clause ids cite it. */

export const MAGIC = [0x45, 0x53] as const; // "ES" [PROTO-2.1]
export const PROTOCOL_VERSION = 1; // [PROTO-2.2]
export const SUBPROTOCOL = 'esp32hub.v1'; // [PROTO-1.1]
export const HEADER_BYTES = 8;
export const CRC_BYTES = 4;
export const MAX_FRAME_BYTES = 4096; // [PROTO-1.4]
export const MAX_PAYLOAD_BYTES = MAX_FRAME_BYTES - HEADER_BYTES - CRC_BYTES;
export const RECOMMENDED_UPLINK_BYTES = 1024;

export const MessageType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  DESCRIPTORS: 0x03,
  TELEMETRY: 0x04,
  ACK: 0x05,
  COMMAND: 0x06,
  COMMAND_ACCEPTED: 0x07,
  COMMAND_RESULT: 0x08,
  ERROR: 0x09,
} as const;
export type MessageTypeId = (typeof MessageType)[keyof typeof MessageType];

/** Flag bits per message type [PROTO-2.4]; any other bit is BAD_FLAGS. */
export const Flags = {
  HELLO_TIME_SYNCED: 0x01,
  WELCOME_HAS_LAST_ACK: 0x01,
  WELCOME_DESCRIPTORS_KNOWN: 0x02,
  TELEMETRY_UNSYNCED: 0x01,
  ERROR_FATAL: 0x01,
} as const;

/** Value types [PROTO-4]. */
export const ValueType = {
  BOOL: 0,
  I8: 1,
  U8: 2,
  I16: 3,
  U16: 4,
  I32: 5,
  U32: 6,
  F32: 7,
  STRING: 9,
} as const;
export type ValueTypeId = (typeof ValueType)[keyof typeof ValueType];
/** Value types allowed in TELEMETRY and DESCRIPTORS. */
export type SampleValueTypeId = Exclude<ValueTypeId, 9>;

export const ResetReason = {
  UNKNOWN: 0,
  POWER_ON: 1,
  SOFTWARE: 2,
  PANIC: 3,
  WATCHDOG: 4,
  BROWNOUT: 5,
  DEEP_SLEEP: 6,
  EXTERNAL: 7,
} as const;

export const CommandStatus = {
  OK: 0,
  FAILED: 1,
  UNSUPPORTED: 2,
  BAD_ARGUMENTS: 3,
  BUSY: 4,
} as const;

export const Limits = {
  deviceIdBytes: 64,
  firmwareVersionBytes: 64,
  channelKeyBytes: 32,
  unitBytes: 16,
  commandNameBytes: 32,
  messageBytes: 200,
  maxChannels: 64,
  maxChannelIndex: 127,
  maxBlocks: 128,
  maxSamplesPerBlock: 255,
  maxDeltaMs: 0x7fffffff,
  maxCommandArgs: 16,
  minScaleExp: -9,
  maxScaleExp: 9,
} as const;

/** A sample value: number (ints, f32), boolean (bool) or null (missing). */
export type SampleValue = number | boolean | null;

export interface Hello {
  type: 'hello';
  timeSynced: boolean;
  deviceId: string;
  firmwareVersion: string;
  maxProtocolVersion: number;
  bootId: number;
  resetReason: number;
  uptimeMs: number;
  descriptorHash: number;
  bufferedFrames: number;
  droppedFrames: number;
}

export interface FrameRef {
  bootId: number;
  seq: number;
}

export interface Welcome {
  type: 'welcome';
  acceptedVersion: number;
  serverTimeMs: number;
  /** Highest (boot, seq) durably stored for this device, or null when none. */
  lastAck: FrameRef | null;
  descriptorsKnown: boolean;
  sampleIntervalMs: number;
  heartbeatIntervalSec: number;
  maxFrameBytes: number;
}

export interface ChannelDescriptor {
  index: number;
  key: string;
  unit: string;
  valueType: SampleValueTypeId;
  scaleExp: number;
  periodMs: number;
}

export interface Descriptors {
  type: 'descriptors';
  channels: ChannelDescriptor[];
}

/** One channel's samples; `deltasMs[i]` and `values[i]` belong together (columnar: no object per sample). */
export interface Block {
  channel: number;
  valueType: SampleValueTypeId;
  deltasMs: number[];
  values: SampleValue[];
}

export interface Telemetry {
  type: 'telemetry';
  unsynced: boolean;
  bootId: number;
  seq: number;
  descriptorHash: number;
  /** Unix ms, or uptime ms when `unsynced` [PROTO-3.4.1]. */
  baseTime: number;
  blocks: Block[];
}

export interface Ack {
  type: 'ack';
  bootId: number;
  seq: number;
}

export interface CommandArg {
  key: string;
  valueType: ValueTypeId;
  value: number | boolean | string;
}

export interface Command {
  type: 'command';
  commandId: number;
  name: string;
  args: CommandArg[];
}

export interface CommandAccepted {
  type: 'command_accepted';
  commandId: number;
}

export interface CommandResult {
  type: 'command_result';
  commandId: number;
  status: number;
  message: string;
}

export interface ErrorMessage {
  type: 'error';
  fatal: boolean;
  /** Wire code from docs/errors.md. */
  code: number;
  message: string;
}

export type Message =
  | Hello
  | Welcome
  | Descriptors
  | Telemetry
  | Ack
  | Command
  | CommandAccepted
  | CommandResult
  | ErrorMessage;

export type MessageName = Message['type'];
