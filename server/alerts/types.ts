/**
 * The shapes of the hub's built-in alerting (docs/alerts.md): rules as configured, and the one event
 * every sink carries (live page, webhook, MQTT, `GET /api/alerts`).
 */

/** Comparison of a channel's value with a rule's `value` [docs/alerts.md §2]. */
export type AlertOp = '>' | '>=' | '<' | '<=' | '==' | '!=';

export type AlertSeverity = 'info' | 'warning' | 'critical';

/** A threshold rule on one channel, from `ALERT_RULES_FILE`. */
export interface ThresholdRule {
  /** Unique among the rules; the `rule` label of the metrics. Never `offline` (the built-in rule). */
  readonly name: string;
  /** A device id, or a glob over ids (`*` any run of characters, `?` one character). */
  readonly device: string;
  /** Channel key [PROTO-2.8]. */
  readonly channel: string;
  readonly op: AlertOp;
  /** Threshold; booleans compare as 1 (true) / 0 (false). */
  readonly value: number;
  /**
   * Hysteresis: a firing alert resolves only when `op(value, clear)` no longer holds (e.g. `> 30`
   * with `clear: 28` resolves at 28 or below). Equal to `value` when not configured.
   */
  readonly clear: number;
  /** The condition must hold this long (sample time, seconds) before the alert fires; 0 = at once. */
  readonly forSec: number;
  readonly severity: AlertSeverity;
}

/** The built-in offline rule (`ALERT_OFFLINE_AFTER_SEC`). */
export interface OfflineRule {
  readonly name: 'offline';
  readonly afterSec: number;
  readonly severity: AlertSeverity;
}

export interface WebhookConfig {
  /** Never logged whole (a webhook URL often holds a secret in its path): only its origin. */
  readonly url: string;
  /** HMAC-SHA256 key for the signature header; never logged. */
  readonly secret: string | null;
  readonly timeoutMs: number;
  /** Attempts per event, the first included. */
  readonly maxAttempts: number;
  /** Events waiting for delivery at most; beyond it the oldest waiting one is dropped. */
  readonly queueMax: number;
}

export interface AlertsConfig {
  /** Null when `ALERT_OFFLINE_AFTER_SEC=0`. */
  readonly offline: OfflineRule | null;
  readonly rules: readonly ThresholdRule[];
  /** Null without `ALERT_WEBHOOK_URL`. */
  readonly webhook: WebhookConfig | null;
}

export type AlertState = 'firing' | 'resolved';

/**
 * One transition of one alert (a rule on one device): the payload of the live `alert` message, the
 * webhook POST body and the MQTT message; `GET /api/alerts` lists the firing ones.
 */
export interface AlertEvent {
  /** The alert episode: `<rule>/<device>/<firingSinceMs>`, the same in its firing and resolved events. */
  id: string;
  rule: string;
  kind: 'offline' | 'threshold';
  device: string;
  state: AlertState;
  severity: AlertSeverity;
  /** One line for people, e.g. `temperature > 30 for 60 s (31.2)`. */
  summary: string;
  /** Hub time (Unix ms) the alert started firing. */
  firingSinceMs: number;
  /** Time of this transition (Unix ms): the sample's time for threshold rules, the hub's for offline. */
  atMs: number;
  /** Transitions counted since the hub started (1, 2, …): orders events, also across alerts. */
  seq: number;
  /** Threshold rules: the channel, the comparison, and the value that caused this transition. */
  channel?: string;
  op?: AlertOp;
  threshold?: number;
  value?: number | boolean;
  /** Offline: why the session ended (firing); `online` or `revoked` (resolved). */
  reason?: string;
  /** Offline (firing): when the device went offline (hub time, Unix ms). */
  offlineSinceMs?: number;
  /**
   * Several instances (docs/scaling.md): the instance that raised the alert, set on alerts adopted
   * from another instance (their `seq` is this instance's); absent on this instance's own alerts.
   */
  instance?: string;
}
