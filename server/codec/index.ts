/** The protocol v1 codec: pure functions shared by the hub, the simulator and the tests. */

export {
  decodeEnrollFrame,
  ENROLL_PATH,
  ENROLL_SUBPROTOCOL,
  type Enroll,
  type EnrollConfirm,
  EnrollLimits,
  type EnrollMessage,
  EnrollMessageType,
  EnrollStatus,
  type EnrollStatusId,
  type EnrollStatusMessage,
  encodeEnrollFrame,
} from './enroll.ts';
export { decodeFrame, descriptorHash, descriptorPayload, encodeFrame, readEnvelope } from './frame.ts';
export {
  type ChannelTable,
  newTelemetryScan,
  peekDescriptorHash,
  scanTelemetry,
  type TelemetryScan,
} from './telemetry-scan.ts';
export * from './types.ts';
export { checkedChannel, f32Value, readingValue, scaledValue } from './values.ts';
export { isChannelKey, isCommandName, isDeviceId, isFreeText } from './wire.ts';
