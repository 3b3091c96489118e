/**
 * The built-in dashboard (served by the hub at `/`, bundled in-process at hub start; see
 * server/web/assets.ts). Two views behind hash routes — `#/` the fleet, `#/device/<id>` one device —
 * sharing one live connection.
 */
import { addBoardView, pendingBadge } from './add-board.ts';
import { mountAlerts } from './alerts.ts';
import { getSession, HttpError, type SessionInfo } from './api.ts';
import { hubDownBanner } from './banner.ts';
import { deviceView } from './device-view.ts';
import { fleetView, type View } from './fleet-view.ts';
import { LiveConnection } from './live-client.ts';
import { otaView } from './ota.ts';

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from index.html`);
  return el;
}

async function main(): Promise<void> {
  let session: SessionInfo;
  try {
    session = await getSession();
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) {
      location.href = '/login';
      return;
    }
    $('view').textContent = `The hub refused the dashboard: ${(err as Error).message}`;
    return;
  }
  $('who').textContent = session.role === 'operator' ? 'operator' : 'read-only';
  $('logout').hidden = session.via !== 'session';
  $('login-link').hidden = !(session.via === 'open' && session.role === 'viewer');

  const conn = $('conn');
  const banner = hubDownBanner(document.body, $('view'));
  const live = new LiveConnection((state, detail) => {
    banner.update(state, detail);
    conn.dataset.state = state;
    conn.textContent = state === 'live' ? 'live' : state;
    conn.title = detail || 'Live connection';
    // A refused handshake looks like any lost connection from here: if the session expired, log in.
    if (state === 'offline') {
      getSession().catch((err: unknown) => {
        if (err instanceof HttpError && err.status === 401) location.href = '/login';
      });
    }
  });
  live.connect();
  // Firing alerts under the header, whatever the view (server/web/alerts.ts).
  mountAlerts(document.querySelector('header.top') ?? $('view'), live);

  const viewRoot = $('view');
  const crumbs = $('crumbs');
  pendingBadge($('add-board-link'));
  let current: View | null = null;
  const route = (): void => {
    current?.destroy();
    const m = /^#\/device\/(.+)$/.exec(location.hash);
    if (location.hash === '#/ota') {
      crumbs.textContent = '/ OTA rollout';
      document.title = 'OTA rollout · ESP32 hub';
      current = otaView(viewRoot, session);
    } else if (location.hash === '#/add-board') {
      crumbs.textContent = '/ add a board';
      document.title = 'Add a board · ESP32 hub';
      current = addBoardView(viewRoot, session);
    } else if (m) {
      const id = decodeURIComponent(m[1] as string);
      crumbs.textContent = `/ ${id}`;
      document.title = `${id} · ESP32 hub`;
      current = deviceView(viewRoot, live, id, session);
    } else {
      crumbs.textContent = '';
      document.title = 'Fleet · ESP32 hub';
      current = fleetView(viewRoot, live, session);
    }
    window.scrollTo(0, 0);
  };
  window.addEventListener('hashchange', route);
  route();
}

void main();
