/**
 * Grafana alerting as provisioning files (`dashboards/grafana/provisioning/alerting/`): the alert rules
 * on what the hub writes to InfluxDB (docs/storage.md), one contact point whose webhook URL and email
 * addresses come from the environment, and the notification policy that sends every rule there.
 *
 * Rules are built with Grafana's typed builders (`@grafana/grafana-foundation-sdk/alerting` and
 * `/expr`) and written in the file format Grafana's provisioning reads (`apiVersion: 1`, `groups`,
 * `contactPoints`, `policies`). Every rule is the same three steps, which the integration test
 * (test/integration/grafana-alerts.test.ts) evaluates against the real InfluxDB exactly as written here:
 *
 *   A  an InfluxQL query over the last `windowSec` seconds, one series per device or hub (GROUP BY tag)
 *   B  reduce each series to one number (`last`, `max`, `sum`; nulls dropped)
 *   C  a threshold on B; a series for which it holds is a firing alert instance labelled with the tag
 *
 * docs/grafana.md lists the rules and the contact point settings.
 */
import * as alerting from '@grafana/grafana-foundation-sdk/alerting';
import * as expr from '@grafana/grafana-foundation-sdk/expr';
import { stringify } from 'yaml';
import { DATASOURCE_UID, InfluxQLQuery } from './influxql.ts';

/**
 * The rules' folder, by title. Not the dashboards' folder ("ESP32 hub", uid esp32hub): Grafana
 * provisions alerting before dashboards and creates a missing rule folder with a random uid, so
 * sharing the title would leave the dashboard provider creating a second folder of the same title
 * under its fixed uid, which Grafana may refuse (and then provisions no dashboard).
 */
export const ALERT_FOLDER = 'ESP32 hub alerts';
export const ALERT_GROUP = 'esp32hub';
export const CONTACT_POINT = 'ESP32 hub';
/** Environment variables Grafana interpolates into the contact point (documented in .env.example). */
export const CONTACT_POINT_ENV = ['GRAFANA_ALERT_WEBHOOK_URL', 'GRAFANA_ALERT_EMAIL'] as const;
/** A variable as Grafana's provisioning interpolates it from its environment. */
const env = (name: (typeof CONTACT_POINT_ENV)[number]) => `\${${name}}`;
/** Server-side expressions' datasource (Grafana's `__expr__`). */
const EXPR = { type: '__expr__', uid: '__expr__' } as const;

type Evaluator = 'gt' | 'lt';
type Reducer = 'last' | 'max' | 'sum';

export interface AlertSpec {
  uid: string;
  title: string;
  /** InfluxQL with `$timeFilter`, grouped by the tag that names the alert instance. */
  query: string;
  windowSec: number;
  reducer: Reducer;
  evaluator: Evaluator;
  threshold: number;
  /** How long the condition must hold before the rule fires (Grafana's pending period). */
  for: string;
  /** What an evaluation with no series at all means. */
  noData: 'OK' | 'Alerting';
  summary: string;
  description: string;
  severity: 'warning' | 'critical';
}

export const ALERTS: AlertSpec[] = [
  {
    uid: 'esp32hub-device-offline',
    title: 'Device offline',
    // The highest presence any hub instance reported in the last 30 s: with several instances, one
    // that holds the device's session says online while the others say offline.
    query: 'SELECT max("state_code") FROM "device_status" WHERE $timeFilter GROUP BY "device"',
    windowSec: 30,
    reducer: 'max',
    evaluator: 'lt',
    threshold: 0.5,
    for: '2m',
    // No device_status at all means the hub writes nothing: the forwarder-lag rule reports that.
    noData: 'OK',
    summary: 'Device {{ $labels.device }} is offline',
    description:
      'No hub instance has had a session with {{ $labels.device }} for about 2.5 minutes (device_status.state_code = 0). ' +
      'Check its power and Wi-Fi; its outbox keeps what it samples meanwhile.',
    severity: 'warning',
  },
  {
    uid: 'esp32hub-data-gap',
    title: 'Data gap',
    // Per device and hub: each instance's gaps_total is its own counter (several instances).
    query:
      'SELECT non_negative_difference("gaps_total") FROM "device_status" WHERE $timeFilter GROUP BY "device", "hub"',
    windowSec: 900,
    reducer: 'sum',
    evaluator: 'gt',
    threshold: 0,
    for: '0s',
    noData: 'OK',
    summary: 'Device {{ $labels.device }} lost frames: a gap in its data',
    description:
      'The hub {{ $labels.hub }} saw sequence gaps from {{ $labels.device }} in the last 15 minutes ({{ $values.B }} frames ' +
      'missing): frames the board never delivered, e.g. its outbox overflowed while it was offline.',
    severity: 'warning',
  },
  {
    uid: 'esp32hub-low-battery',
    title: 'Low battery',
    // Only devices with a battery channel (key battery_v, volts) have a series: no battery, no alert.
    query: 'SELECT last("value") FROM "telemetry" WHERE "channel" = \'battery_v\' AND $timeFilter GROUP BY "device"',
    windowSec: 900,
    reducer: 'last',
    evaluator: 'lt',
    threshold: 3.4,
    for: '10m',
    noData: 'OK',
    summary: 'Device {{ $labels.device }}: battery low ({{ $values.B }} V)',
    description:
      'The last battery_v reading of {{ $labels.device }} is below 3.4 V (a LiPo cell has little charge left).',
    severity: 'warning',
  },
  {
    uid: 'esp32hub-forwarder-lag',
    title: 'Forwarder lag',
    query: 'SELECT max("forwarder_lag_s") FROM "hub_stats" WHERE $timeFilter GROUP BY "hub"',
    windowSec: 300,
    reducer: 'max',
    evaluator: 'gt',
    threshold: 30,
    for: '1m',
    // No hub_stats for 5 minutes: the hub is down or cannot write to InfluxDB (its lag is unknown).
    noData: 'Alerting',
    summary: 'Hub {{ $labels.hub }}: readings reach InfluxDB late (up to {{ $values.B }} s)',
    description:
      'The oldest reading not yet confirmed by InfluxDB was more than 30 s old in the last 5 minutes. ' +
      'The local log holds the backlog (nothing acknowledged is lost); see /readyz and docs/storage.md. ' +
      'With no data at all, the hub has written no stats for 5 minutes: it is down or cannot reach InfluxDB.',
    severity: 'critical',
  },
  {
    uid: 'esp32hub-dead-letters',
    title: 'Dead letters',
    query: 'SELECT last("dead_letter_lines") FROM "hub_stats" WHERE $timeFilter GROUP BY "hub"',
    windowSec: 300,
    reducer: 'last',
    evaluator: 'gt',
    threshold: 0,
    for: '0s',
    noData: 'OK',
    summary: 'Hub {{ $labels.hub }}: {{ $values.B }} readings refused by InfluxDB wait in the dead-letter store',
    description:
      'InfluxDB refused acknowledged readings for good (e.g. a field-type conflict). They are kept until an ' +
      'operator fixes the cause and replays or drops them: npm run hub -- dead-letters list (docs/storage.md).',
    severity: 'critical',
  },
];

/** One provisioned rule, built with Grafana's typed rule and expression builders. */
function rule(spec: AlertSpec): alerting.Rule {
  const range = { from: spec.windowSec, to: 0 };
  return new alerting.RuleBuilder(spec.title)
    .uid(spec.uid)
    .condition('C')
    .withQuery(
      new alerting.QueryBuilder('A')
        .datasourceUid(DATASOURCE_UID)
        .relativeTimeRange(range)
        .model(new InfluxQLQuery('A', spec.query)),
    )
    .withQuery(
      new alerting.QueryBuilder('B')
        .datasourceUid(EXPR.uid)
        .relativeTimeRange(range)
        .model(
          new expr.TypeReduceBuilder()
            .refId('B')
            .datasource(EXPR)
            .expression('A')
            .reducer(spec.reducer)
            .settings({ mode: 'dropNN' }),
        ),
    )
    .withQuery(
      new alerting.QueryBuilder('C')
        .datasourceUid(EXPR.uid)
        .relativeTimeRange(range)
        .model(
          new expr.TypeThresholdBuilder()
            .refId('C')
            .datasource(EXPR)
            .expression('B')
            .conditions([{ evaluator: { type: spec.evaluator, params: [spec.threshold] } }]),
        ),
    )
    .forDuration(spec.for)
    .noDataState(spec.noData)
    .execErrState('Error')
    .labels({ severity: spec.severity, source: 'esp32hub' })
    .annotations({ summary: spec.summary, description: spec.description })
    .isPaused(false)
    .build();
}

/** Plain data (builders' models carry a marker method). */
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** The rule in the file format Grafana provisioning reads (`AlertRuleV1`: `data`, `for`, …). */
function fileRule(r: alerting.Rule) {
  return {
    uid: r.uid,
    title: r.title,
    condition: r.condition,
    data: plain(r.data).map((q) => ({
      refId: q.refId,
      relativeTimeRange: q.relativeTimeRange,
      datasourceUid: q.datasourceUid,
      model: q.model,
    })),
    noDataState: r.noDataState,
    execErrState: r.execErrState,
    for: r.for,
    annotations: r.annotations,
    labels: r.labels,
    isPaused: r.isPaused,
  };
}

const HEADER = (what: string) =>
  `# Provisioned by the ESP32 telemetry hub (generated by dashboards/build.ts; docs/grafana.md): ${what}.\n`;

export function alertRulesYaml(): string {
  const doc = {
    apiVersion: 1,
    groups: [
      {
        orgId: 1,
        name: ALERT_GROUP,
        folder: ALERT_FOLDER,
        interval: '1m',
        rules: ALERTS.map((s) => fileRule(rule(s))),
      },
    ],
  };
  return HEADER('alert rules') + stringify(doc, { lineWidth: 0 });
}

/** The webhook and email of the contact point; Grafana fills in `${VAR}` from its environment. */
function contactPoint(): alerting.ContactPoint[] {
  return [
    new alerting.ContactPointBuilder()
      .name(CONTACT_POINT)
      .uid('esp32hub-webhook')
      .type('webhook')
      .settings({ url: env('GRAFANA_ALERT_WEBHOOK_URL'), httpMethod: 'POST' })
      .disableResolveMessage(false)
      .build(),
    new alerting.ContactPointBuilder()
      .name(CONTACT_POINT)
      .uid('esp32hub-email')
      .type('email')
      .settings({ addresses: env('GRAFANA_ALERT_EMAIL'), singleEmail: true })
      .disableResolveMessage(false)
      .build(),
  ];
}

export function contactPointsYaml(): string {
  const receivers = contactPoint().map((c) => ({
    uid: c.uid,
    type: c.type,
    settings: c.settings,
    disableResolveMessage: c.disableResolveMessage,
  }));
  const doc = { apiVersion: 1, contactPoints: [{ orgId: 1, name: CONTACT_POINT, receivers }] };
  return HEADER('contact point (webhook and email from the environment)') + stringify(doc, { lineWidth: 0 });
}

export function policiesYaml(): string {
  const policy: alerting.NotificationPolicy = new alerting.NotificationPolicyBuilder()
    .receiver(CONTACT_POINT)
    .groupBy(['grafana_folder', 'alertname'])
    .groupWait('30s')
    .groupInterval('5m')
    .repeatInterval('4h')
    .build();
  const doc = { apiVersion: 1, policies: [{ orgId: 1, ...plain(policy) }] };
  return HEADER('notification policy (replaces the default tree)') + stringify(doc, { lineWidth: 0 });
}
