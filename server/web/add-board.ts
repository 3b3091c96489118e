/**
 * "Add a board" (`#/add-board`): the steps of bringing a new board into the fleet, on one page.
 *
 * 1. Pick the firmware image (or upload one: `PUT /api/firmware/:name`).
 * 2. Flash it from the browser over Web Serial with ESP Web Tools' `<esp-web-install-button>` (its
 *    bundle served by the hub at /vendor/esp-web-tools/, the manifest at /firmware/<name>/manifest.json).
 * 3. Set Wi-Fi: the install dialog does it over Improv once the image is written.
 * 4. Send the hub URL (and the fleet secret, if any) over the Improv vendor command 0x80 (improv.ts);
 *    the board answers with its hardware id.
 * 5. Approve the board when it shows up in the pending list (refreshed every second).
 *
 * Web Serial needs Chrome or Edge on a desktop, over https or on localhost: without it the page says so.
 */
import { h } from './dom.ts';
import { hubUrlFor, type SerialPortLike, sendSetHub } from './improv.ts';

export interface AddBoardSession {
  role: 'viewer' | 'operator';
}

interface FirmwareImage {
  name: string;
  version: string;
  chipFamily: string;
  size: number;
  uploadedAt: string;
  manifestUrl: string;
}

interface EnrollRequest {
  hardwareId: string;
  state: 'pending' | 'approved' | 'delivered';
  model: string;
  firmwareVersion: string;
  remote: string | null;
  requestedAt: string;
  deviceId: string | null;
  handedOver: boolean;
  keyFingerprint: string;
}

const WEB_TOOLS_ENTRY = '/vendor/esp-web-tools/install-button.js';
const CHIPS = ['ESP32', 'ESP32-C3', 'ESP32-S2', 'ESP32-S3', 'ESP32-C6', 'ESP32-H2', 'ESP32-C2', 'ESP32-C5', 'ESP32-P4'];
const POLL_MS = 1000;

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { message?: string } } | null)?.error;
    throw new Error(err?.message ?? `${res.status} ${res.statusText}`);
  }
  return body as T;
}

/** Loads ESP Web Tools once (a module script from the hub; the page's CSP allows nothing else). */
function loadWebTools(): void {
  if (document.querySelector(`script[src="${WEB_TOOLS_ENTRY}"]`)) return;
  const s = document.createElement('script');
  s.type = 'module';
  s.src = WEB_TOOLS_ENTRY;
  document.head.append(s);
}

export function addBoardView(root: HTMLElement, session: AddBoardSession): { destroy(): void } {
  const operator = session.role === 'operator';
  const hasSerial = 'serial' in navigator;
  let destroyed = false;
  let selected: string | null = null;
  let lastHardwareId: string | null = null;
  loadWebTools();

  const status = (el: HTMLElement, text: string, kind: 'ok' | 'error' | '' = '') => {
    el.textContent = text;
    el.dataset.kind = kind;
  };

  // 1. Firmware image
  const fwList = h('div', { id: 'fw-list', class: 'fw-list' });
  const fwStatus = h('p', { id: 'fw-status', class: 'status' });
  const fwFile = h('input', { id: 'fw-file', type: 'file', accept: '.bin', required: true });
  const fwName = h('input', {
    id: 'fw-name',
    placeholder: 'name, e.g. esp32hub',
    required: true,
    pattern: '[a-z0-9][a-z0-9._-]{0,47}',
  });
  const fwVersion = h('input', { id: 'fw-version', placeholder: 'version, e.g. 1.4.0', required: true });
  const fwChip = h('select', { id: 'fw-chip' }, ...CHIPS.map((c) => h('option', { value: c }, c)));
  const upload = h(
    'form',
    { id: 'fw-upload', class: 'fw-upload' },
    h('label', {}, 'Merged image (.bin) ', fwFile),
    fwName,
    fwVersion,
    fwChip,
    h('button', { type: 'submit', disabled: !operator }, 'Upload'),
  );
  upload.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const file = fwFile.files?.[0];
    if (!file) return;
    const q = new URLSearchParams({ version: fwVersion.value, chipFamily: fwChip.value });
    status(fwStatus, `Uploading ${file.name} …`);
    call<FirmwareImage>(`/api/firmware/${encodeURIComponent(fwName.value)}?${q}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: file,
    }).then(
      (img) => {
        selected = img.name;
        status(fwStatus, `Uploaded ${img.name} ${img.version} (${img.size} bytes).`, 'ok');
        void refreshImages();
      },
      (err: Error) => status(fwStatus, `Upload failed: ${err.message}`, 'error'),
    );
  });

  // 2. Flash
  const flashBox = h('div', { id: 'flash', class: 'flash' });
  const serialMissing = h(
    'p',
    { id: 'serial-missing', class: 'status', 'data-kind': 'error', hidden: hasSerial },
    'This browser cannot open serial ports (Web Serial is missing), so it cannot flash or configure a board. ',
    'Use Chrome or Edge on a desktop computer, on this hub over https or on localhost — or flash with ',
    'esptool and set Wi-Fi with any Improv client.',
  );
  const renderFlash = (): void => {
    flashBox.replaceChildren();
    if (!selected) {
      flashBox.append(h('p', { class: 'empty' }, 'Pick or upload a firmware image first.'));
      return;
    }
    const button = document.createElement('esp-web-install-button');
    button.id = 'install';
    button.setAttribute('manifest', `/firmware/${encodeURIComponent(selected)}/manifest.json`);
    button.append(
      h('button', { slot: 'activate', class: 'primary', type: 'button' }, `Connect the board and flash ${selected}`),
      h(
        'span',
        { slot: 'unsupported', class: 'status' },
        'Web Serial is missing in this browser (use Chrome or Edge).',
      ),
      h('span', { slot: 'not-allowed', class: 'status' }, 'Flashing needs this page over https or on localhost.'),
    );
    flashBox.append(button);
  };

  const refreshImages = async (): Promise<void> => {
    let images: FirmwareImage[];
    try {
      images = (await call<{ images: FirmwareImage[] }>('/api/firmware')).images;
    } catch (err) {
      status(fwStatus, `Cannot list images: ${(err as Error).message}`, 'error');
      return;
    }
    if (destroyed) return;
    if (!selected || !images.some((i) => i.name === selected)) selected = images[0]?.name ?? null;
    fwList.replaceChildren(
      ...(images.length === 0
        ? [h('p', { class: 'empty' }, 'No firmware image yet: upload the merged image of the hub firmware below.')]
        : images.map((img) => {
            const radio = h('input', { type: 'radio', name: 'fw', value: img.name, checked: img.name === selected });
            radio.addEventListener('change', () => {
              selected = img.name;
              renderFlash();
            });
            return h(
              'label',
              { class: 'fw', 'data-image': img.name },
              radio,
              ` ${img.name} ${img.version} · ${img.chipFamily} · ${(img.size / 1024).toFixed(0)} KiB`,
            );
          })),
    );
    renderFlash();
  };

  // 4. Hub URL over Improv
  const hubUrl = h('input', { id: 'hub-url', value: hubUrlFor(location.origin), size: '40' });
  const fleetSecret = h('input', { id: 'fleet-secret', type: 'password', placeholder: 'fleet secret (optional)' });
  const hubStatus = h('p', { id: 'hub-status', class: 'status' });
  const sendHub = h(
    'button',
    { id: 'send-hub', type: 'button', disabled: !hasSerial },
    'Send the hub URL to the board',
  );
  sendHub.addEventListener('click', () => {
    void (async () => {
      const serial = (navigator as Navigator & { serial?: { requestPort(): Promise<unknown> } }).serial;
      if (!serial) return;
      let port: SerialPortLike & { open(o: { baudRate: number }): Promise<void>; close(): Promise<void> };
      try {
        port = (await serial.requestPort()) as typeof port;
        await port.open({ baudRate: 115200 });
      } catch (err) {
        status(hubStatus, `No serial port: ${(err as Error).message}`, 'error');
        return;
      }
      try {
        const answer = await sendSetHub(port, hubUrl.value.trim(), fleetSecret.value || undefined);
        if (answer.ok) {
          lastHardwareId = answer.hardwareId;
          status(hubStatus, `The board ${answer.hardwareId} will enroll at ${hubUrl.value.trim()}.`, 'ok');
          void refreshPending();
        } else status(hubStatus, answer.error, 'error');
      } catch (err) {
        status(hubStatus, (err as Error).message, 'error');
      } finally {
        await port.close().catch(() => undefined);
      }
    })();
  });

  // 5. Pending boards
  const pending = h('tbody', { id: 'pending' });
  const pendingEmpty = h('p', { id: 'pending-empty', class: 'empty' }, 'No board is waiting.');
  const pendingStatus = h('p', { id: 'pending-status', class: 'status' });
  const decide = (hw: string, action: 'approve' | 'reject', deviceId?: string): void => {
    const init: RequestInit = { method: 'POST' };
    if (action === 'approve' && deviceId) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify({ deviceId });
    }
    call<unknown>(`/api/enrollments/${encodeURIComponent(hw)}/${action}`, init).then(
      () => {
        status(
          pendingStatus,
          action === 'approve' ? `Approved ${hw}: it gets its token now.` : `Rejected ${hw}.`,
          'ok',
        );
        void refreshPending();
      },
      (err: Error) => status(pendingStatus, `${hw}: ${err.message}`, 'error'),
    );
  };
  const rowOf = (r: EnrollRequest): HTMLElement => {
    const id = h('input', {
      class: 'device-id',
      value: r.deviceId ?? r.hardwareId,
      size: '18',
      'aria-label': 'device id',
    });
    const approve = h(
      'button',
      { class: 'approve primary', type: 'button', disabled: !operator || r.state !== 'pending' },
      'Approve',
    );
    const reject = h('button', { class: 'reject', type: 'button', disabled: !operator }, 'Reject');
    approve.addEventListener('click', () => decide(r.hardwareId, 'approve', id.value.trim() || undefined));
    reject.addEventListener('click', () => decide(r.hardwareId, 'reject'));
    const state =
      r.state === 'approved' ? (r.handedOver ? 'token sent' : 'approved, waiting for the board') : 'pending';
    return h(
      'tr',
      {
        'data-hardware-id': r.hardwareId,
        'data-state': r.state,
        class: r.hardwareId === lastHardwareId ? 'highlight' : undefined,
      },
      h('td', {}, r.hardwareId),
      h('td', {}, `${r.model || '—'} · ${r.firmwareVersion || '—'}`),
      h('td', { title: `key ${r.keyFingerprint}` }, r.remote ?? '—'),
      h('td', {}, new Date(r.requestedAt).toLocaleString()),
      h('td', { class: 'state' }, state),
      h('td', {}, id),
      h('td', {}, approve, ' ', reject),
    );
  };
  let shown = '';
  const refreshPending = async (): Promise<void> => {
    let requests: EnrollRequest[];
    try {
      requests = (await call<{ requests: EnrollRequest[] }>('/api/enrollments')).requests;
    } catch (err) {
      status(pendingStatus, `Cannot list pending boards: ${(err as Error).message}`, 'error');
      return;
    }
    if (destroyed) return;
    // Rebuild only when something changed, so a device id being typed is not wiped every second.
    const key = JSON.stringify(requests.map((r) => [r.hardwareId, r.state, r.handedOver, r.deviceId]));
    if (key === shown) return;
    shown = key;
    pending.replaceChildren(...requests.map(rowOf));
    pendingEmpty.hidden = requests.length > 0;
  };

  const step = (n: number, title: string, ...body: (Node | string)[]) =>
    h('section', { class: 'step', 'data-step': String(n) }, h('h2', {}, `${n}. ${title}`), ...body);

  root.replaceChildren(
    h(
      'div',
      { id: 'add-board', class: 'add-board' },
      h('h1', {}, 'Add a board'),
      operator
        ? null
        : h(
            'p',
            { class: 'status', 'data-kind': 'error' },
            'Read-only session: log in with the admin token to add boards.',
          ),
      serialMissing,
      step(1, 'Firmware image', fwList, upload, fwStatus),
      step(
        2,
        'Flash it over USB',
        h('p', {}, 'Plug the board in, press the button and pick its serial port. The browser writes the image.'),
        flashBox,
      ),
      step(
        3,
        'Wi-Fi',
        h('p', {}, 'After flashing, the same dialog asks for the Wi-Fi network (Improv) and sends it to the board.'),
      ),
      step(
        4,
        'Hub address',
        h('p', {}, 'Tell the board where this hub is. It answers with its hardware id and starts enrolling.'),
        h('div', { class: 'row' }, hubUrl, fleetSecret, sendHub),
        hubStatus,
      ),
      step(
        5,
        'Approve it',
        h(
          'p',
          {},
          'The board shows up here once it asks to enroll. Approve it (optionally under another device id) and it starts streaming.',
        ),
        h(
          'table',
          { class: 'pending' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['Hardware id', 'Model · firmware', 'From', 'Asked', 'State', 'Device id', ''].map((t) =>
                h('th', {}, t),
              ),
            ),
          ),
          pending,
        ),
        pendingEmpty,
        pendingStatus,
      ),
    ),
  );
  void refreshImages();
  void refreshPending();
  const timer = setInterval(() => void refreshPending(), POLL_MS);
  return {
    destroy() {
      destroyed = true;
      clearInterval(timer);
    },
  };
}

/**
 * Keeps the header's "Add a board" link saying how many boards wait for approval (polled every few
 * seconds, whatever the view), so a board that asks to enroll is noticed from anywhere in the page.
 */
export function pendingBadge(link: HTMLElement, everyMs = 3000): void {
  const update = (): void => {
    call<{ requests: EnrollRequest[] }>('/api/enrollments').then(
      ({ requests }) => {
        const n = requests.filter((r) => r.state === 'pending').length;
        link.dataset.pending = String(n);
        link.textContent = n > 0 ? `Add a board (${n} waiting)` : 'Add a board';
      },
      () => undefined, // no access (read-only password session without the API): keep the plain link
    );
  };
  update();
  setInterval(update, everyMs);
}
