/**
 * The transport-neutral link a device session talks through. One session state machine
 * (`device-session.ts`) serves every transport: a WebSocket link (`gateway.ts`) and an MQTT link
 * (`server/mqtt/device-transport.ts`) implement this interface; the session never sees the socket or
 * the broker.
 */

/** What a link tells its session. */
export interface LinkHandlers {
  /** One protocol frame from the device (`isBinary` false: a WebSocket text message [PROTO-1.3]). */
  message(data: Buffer, isBinary: boolean): void;
  /** The device answered a liveness probe, or (MQTT) sent anything since the last one. */
  pong(): void;
  /** The link is gone; `code` is the close code (1006: lost without a close handshake). Called once. */
  closed(code: number): void;
}

export interface DeviceLink {
  /** The transport's name, for logs and metrics labels: `websocket` or `mqtt`. */
  readonly transport: 'websocket' | 'mqtt';
  /** Where the device connects from, when the transport knows (WebSocket: the socket's address). */
  readonly remoteAddress: string | undefined;
  /** Bytes queued towards the device and not yet handed to the network (0 when unknown). */
  readonly bufferedAmount: number;
  /** Installs the session's handlers; called once, by the session's constructor. */
  attach(handlers: LinkHandlers): void;
  /** True while frames can still be sent. */
  isOpen(): boolean;
  /** Queues one frame to the device. */
  send(frame: Uint8Array): void;
  /**
   * Queues the cumulative ACK (boot, seq): the same bytes as `send(encodeAck(bootId, seq))`, sent the
   * cheapest way the transport has (optional; without it the session uses `send`).
   */
  sendAck?(bootId: number, seq: number): void;
  /**
   * Ends the link: sends `finalFrame` (the fatal ERROR [PROTO-3.8]) when given, then closes with
   * `code` (a WebSocket close code, [PROTO-7]). `closed` follows, once.
   */
  close(code: number, reason: string, finalFrame?: Uint8Array): void;
  /** Drops the link at once, without a close handshake. `closed` follows with 1006. */
  terminate(): void;
  /** A liveness probe [PROTO-1.5]; the answer comes back as `pong`. */
  ping(): void;
  /** Stops reading from the device (backpressure) until `resume`. */
  pause(): void;
  resume(): void;
}
