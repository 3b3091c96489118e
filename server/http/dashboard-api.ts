/**
 * REST routes for the built-in page (docs/live-api.md §5): the fleet with status, last seen,
 * firmware and last values (plus a short trail for sparklines), and who the caller is. History
 * comes from the history route (`GET /api/devices/:id/history`), commands from the commands API.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isDeviceId } from '../codec/index.ts';
import type { LiveState } from '../live/state.ts';
import type { DashboardAuth } from './dashboard-auth.ts';
import { sendError } from './dashboard-auth.ts';
import { sendJson as send } from './respond.ts';

export interface DashboardApiOptions {
  state: LiveState;
  auth: DashboardAuth;
  /** Whether the commands API is available to dashboard sessions (shown to the page). */
  commandsEnabled: boolean;
  /** Grafana's base URL (GRAFANA_URL): the device page links to its Grafana dashboard. */
  grafanaUrl?: string | null;
}

/** The uid of the provisioned Grafana device dashboard (dashboards/grafana/dashboards/device-detail.json). */
export const GRAFANA_DEVICE_DASHBOARD_UID = 'esp32hub-device';

export interface DashboardApi {
  /** `GET /api/devices`: every device the hub knows, sorted by id. */
  listDevices(req: IncomingMessage, res: ServerResponse): void;
  /** `GET /api/devices/:id`: one device, 404 when unknown. */
  getDevice(req: IncomingMessage, res: ServerResponse, deviceId: string): void;
  /** `GET /api/session`: the caller's role and the auth mode, so the page can show its controls. */
  session(req: IncomingMessage, res: ServerResponse): void;
}

export function createDashboardApi(options: DashboardApiOptions): DashboardApi {
  const { state, auth } = options;
  const authorized = (req: IncomingMessage, res: ServerResponse): boolean => {
    const access = auth.check(req);
    if (!access.ok) {
      sendError(res, access.code, access.message);
      return false;
    }
    return true;
  };
  return {
    listDevices(req, res) {
      if (!authorized(req, res)) return;
      const devices = [...state.devices.values()]
        .sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0))
        .map((d) => state.view(d, true));
      sendJson(res, 200, { serverTimeMs: Date.now(), devices });
    },
    getDevice(req, res, deviceId) {
      if (!authorized(req, res)) return;
      const d = isDeviceId(deviceId) ? state.devices.get(deviceId) : undefined;
      if (d === undefined) {
        sendError(res, 'NOT_FOUND', 'no such device');
        return;
      }
      sendJson(res, 200, { serverTimeMs: Date.now(), device: state.view(d, true) });
    },
    session(req, res) {
      const access = auth.check(req);
      if (!access.ok) {
        sendError(res, access.code, access.message);
        return;
      }
      sendJson(res, 200, {
        mode: auth.mode,
        role: access.principal.role,
        via: access.principal.via,
        commands: options.commandsEnabled && access.principal.role === 'operator',
        grafana: options.grafanaUrl
          ? { url: options.grafanaUrl, deviceDashboardUid: GRAFANA_DEVICE_DASHBOARD_UID }
          : null,
      });
    },
  };
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, value, { 'cache-control': 'no-store' });
}
