/**
 * The simulator as a library, for tests, demos and benchmarks. See docs/simulator.md.
 *
 * Benchmarks that only need frames use `TelemetryGenerator` (no sockets, no timers); load tests that
 * need real device behaviour (outbox, acks, reconnects) use `Fleet` / `SimDevice`.
 */
export { type BoardNvs, type BoardStore, FileBoardStore, MemoryBoardStore, stateToken } from './board-store.ts';
export { cryptoEntropy, drawBootId, type Entropy, seededEntropy } from './boot-id.ts';
export { type Clock, FakeClock, systemClock, type TimerHandle } from './clock.ts';
export {
  type BackoffOptions,
  type ClockFault,
  type DeepSleepOptions,
  type DeviceEvents,
  type DeviceOptions,
  type DeviceState,
  MALFORMED_KINDS,
  type MalformedKind,
  SimDevice,
} from './device.ts';
export { type EnrollBoardOptions, type EnrollOutcome, enrollBoard, enrollKeyFor, enrollUrlFor } from './enroll.ts';
export { FakeHub, type FakeHubOptions, type FakeWsHub, startFakeWsHub } from './fake-hub.ts';
export {
  deviceId,
  Fleet,
  type FleetOptions,
  type FleetSnapshot,
  type FleetSummary,
  fleetDeviceIds,
} from './fleet.ts';
export {
  type Connector,
  type ConnectRequest,
  type Link,
  type LinkCloseInfo,
  type LinkHandlers,
  slowLink,
  wsConnector,
} from './link.ts';
export { CONNECTION_LOST_FRAME, type MqttConnectorOptions, mqttConnector } from './mqtt-link.ts';
export { Outbox, type OutboxEntry } from './outbox.ts';
export { FileRecorder, type RecordEvent, type RecordLine, readRecord } from './record-file.ts';
export {
  MemoryRecorder,
  type RecordedFrame,
  type RecordedReading,
  readingsOf,
  type SampleRecorder,
} from './recorder.ts';
export { Rng } from './rng.ts';
export {
  createScenario,
  DEFAULT_SCENARIO_PARAMS,
  isScenarioName,
  SCENARIO_NAMES,
  type Scenario,
  type ScenarioName,
  type ScenarioParams,
} from './scenarios.ts';
export { CHANNELS, Channel, type ChannelSpec, channelDescriptors, SensorSuite } from './sensors.ts';
export { DeviceStats, LatencyHistogram, sumStats } from './stats.ts';
export {
  countReadings,
  countSamples,
  FrameBuilder,
  FrameLoop,
  type GeneratorOptions,
  Sampler,
  TelemetryGenerator,
} from './telemetry.ts';
export { adminUrlFor, appendTokens, parseTokens, provisionDevices, readTokensFile } from './tokens.ts';
