/**
 * JSON schemas of Home Assistant's MQTT discovery payloads, written from HA's documentation
 * (integrations sensor.mqtt, binary_sensor.mqtt, button.mqtt, number.mqtt; "MQTT discovery": topic
 * format, device block, availability; sensor and number device classes with their units). Only the
 * keys the hub uses are listed, and `additionalProperties: false` makes a misspelt key fail.
 */
import type { ChannelDescriptor } from '../../server/codec/index.ts';

/** A channel descriptor for discovery tests. */
export const channel = (index: number, key: string, unit: string, valueType: number): ChannelDescriptor => ({
  index,
  key,
  unit,
  valueType: valueType as ChannelDescriptor['valueType'],
  scaleExp: 0,
  periodMs: 1000,
});

/** `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, ids of [a-zA-Z0-9_-]. */
export const DISCOVERY_TOPIC =
  /^homeassistant\/(sensor|binary_sensor|button|number)\/[A-Za-z0-9_-]+\/[A-Za-z0-9_-]+\/config$/;

/** Units HA accepts per sensor device class (the ones the hub may emit). */
export const UNITS_BY_DEVICE_CLASS: Record<string, string[]> = {
  temperature: ['°C', '°F', 'K'],
  humidity: ['%'],
  battery: ['%'],
  pressure: ['cbar', 'bar', 'hPa', 'mmHg', 'inHg', 'kPa', 'mbar', 'Pa', 'psi'],
  voltage: ['V', 'mV', 'µV', 'kV', 'MV'],
  current: ['A', 'mA'],
  power: ['W', 'kW', 'MW', 'GW', 'TW', 'mW', 'BTU/h'],
  energy: ['J', 'kJ', 'MJ', 'GJ', 'mWh', 'Wh', 'kWh', 'MWh', 'GWh', 'TWh', 'cal', 'kcal', 'Mcal', 'Gcal'],
  illuminance: ['lx'],
  signal_strength: ['dB', 'dBm'],
  frequency: ['Hz', 'kHz', 'MHz', 'GHz'],
  duration: ['d', 'h', 'min', 's', 'ms', 'µs'],
  data_size: [
    'bit',
    'kbit',
    'Mbit',
    'Gbit',
    'B',
    'kB',
    'MB',
    'GB',
    'TB',
    'PB',
    'EB',
    'ZB',
    'YB',
    'KiB',
    'MiB',
    'GiB',
    'TiB',
    'PiB',
    'EiB',
    'ZiB',
    'YiB',
  ],
  distance: ['km', 'm', 'cm', 'mm', 'mi', 'nmi', 'yd', 'in', 'ft'],
  weight: ['kg', 'g', 'mg', 'µg', 'oz', 'lb', 'st'],
  speed: ['ft/s', 'in/d', 'in/h', 'in/s', 'km/h', 'kn', 'm/s', 'mph', 'mm/d', 'mm/s'],
  carbon_dioxide: ['ppm'],
};

const availability = {
  type: 'array',
  minItems: 1,
  items: {
    type: 'object',
    required: ['topic'],
    additionalProperties: false,
    properties: {
      topic: { type: 'string', minLength: 1 },
      payload_available: { type: 'string' },
      payload_not_available: { type: 'string' },
      value_template: { type: 'string' },
    },
  },
};

/** HA: device information needs at least one of identifiers or connections; it only works with unique_id. */
const device = {
  type: 'object',
  required: ['identifiers'],
  additionalProperties: false,
  properties: {
    identifiers: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    name: { type: 'string' },
    manufacturer: { type: 'string' },
    model: { type: 'string' },
    sw_version: { type: 'string' },
    hw_version: { type: 'string' },
    via_device: { type: 'string' },
  },
};

const common = {
  name: { type: ['string', 'null'] },
  unique_id: { type: 'string', minLength: 1 },
  device,
  origin: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
  availability,
  availability_mode: { enum: ['all', 'any', 'latest'] },
  qos: { enum: [0, 1, 2] },
  entity_category: { enum: ['config', 'diagnostic'] },
  icon: { type: 'string' },
  enabled_by_default: { type: 'boolean' },
};

export const HA_SCHEMAS = {
  sensor: {
    type: 'object',
    required: ['state_topic', 'unique_id', 'device'],
    additionalProperties: false,
    properties: {
      ...common,
      state_topic: { type: 'string', minLength: 1 },
      value_template: { type: 'string' },
      unit_of_measurement: { type: 'string' },
      device_class: { enum: Object.keys(UNITS_BY_DEVICE_CLASS) },
      state_class: { enum: ['measurement', 'total', 'total_increasing'] },
      expire_after: { type: 'integer', minimum: 1 },
      suggested_display_precision: { type: 'integer', minimum: 0 },
    },
  },
  binary_sensor: {
    type: 'object',
    required: ['state_topic', 'unique_id', 'device'],
    additionalProperties: false,
    properties: {
      ...common,
      state_topic: { type: 'string', minLength: 1 },
      value_template: { type: 'string' },
      payload_on: { type: 'string' },
      payload_off: { type: 'string' },
      device_class: { type: 'string' },
    },
  },
  button: {
    type: 'object',
    required: ['command_topic', 'unique_id', 'device'],
    additionalProperties: false,
    properties: {
      ...common,
      command_topic: { type: 'string', minLength: 1 },
      payload_press: { type: 'string' },
      device_class: { enum: ['identify', 'restart', 'update'] },
      retain: { type: 'boolean' },
    },
  },
  number: {
    type: 'object',
    required: ['command_topic', 'unique_id', 'device'],
    additionalProperties: false,
    properties: {
      ...common,
      command_topic: { type: 'string', minLength: 1 },
      state_topic: { type: 'string', minLength: 1 },
      min: { type: 'number' },
      max: { type: 'number' },
      step: { type: 'number', minimum: 0.001 },
      mode: { enum: ['auto', 'box', 'slider'] },
      unit_of_measurement: { type: 'string' },
      device_class: { type: 'string' },
      optimistic: { type: 'boolean' },
      retain: { type: 'boolean' },
    },
  },
} as const;
