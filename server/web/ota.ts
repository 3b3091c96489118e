/**
 * The rollout page (`#/ota`, docs/ota.md): upload a signed OTA image (with its `.sig`), start a
 * campaign (all boards or a glob group, waves, failure threshold), follow its progress board by board
 * (polled), pause, resume or abort it. Operators act; viewers see.
 */
import { call, type SessionInfo } from './api.ts';
import { h } from './dom.ts';
import type { View } from './fleet-view.ts';

interface Image {
  id: string;
  version: string;
  target: string;
  size: number;
}
interface Campaign {
  id: string;
  imageId: string;
  version: string;
  state: string;
  reason: string | null;
  wave: number;
  waveEnds: number[];
  counts: Record<string, number>;
  boards?: Record<string, { state: string; wave: number; detail?: string }>;
}

const POLL_MS = 1000;

export function otaView(root: HTMLElement, session: SessionInfo): View {
  const operator = session.role === 'operator';
  const status = (el: HTMLElement, text: string, kind = '') => {
    el.textContent = text;
    el.dataset.kind = kind;
  };

  // Images
  const images = h('ul', { id: 'ota-images', class: 'ota-images' });
  const imgFile = h('input', { id: 'ota-file', type: 'file', accept: '.bin' });
  const sigFile = h('input', { id: 'ota-sig', type: 'file', accept: '.sig' });
  const version = h('input', { id: 'ota-version', placeholder: 'version, e.g. 1.4.0', required: true });
  const target = h(
    'select',
    { id: 'ota-target' },
    h('option', { value: 'esp32' }, 'esp32'),
    h('option', { value: 'esp32-c3' }, 'esp32-c3'),
  );
  const upStatus = h('p', { id: 'ota-upload-status', class: 'status' });
  const upload = h(
    'form',
    { id: 'ota-upload', class: 'fw-upload' },
    h('label', {}, 'Image (.bin) ', imgFile),
    h('label', {}, 'Signature (.sig) ', sigFile),
    version,
    target,
    h('button', { type: 'submit', disabled: !operator }, 'Upload'),
  );
  upload.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const file = imgFile.files?.[0];
    const sig = sigFile.files?.[0];
    if (!file || !sig) {
      status(upStatus, 'Pick the image and its .sig file.', 'error');
      return;
    }
    status(upStatus, `Uploading ${file.name} …`);
    void sig.text().then((signature) =>
      call<Image>(`/api/ota/images?${new URLSearchParams({ version: version.value, target: target.value })}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream', 'X-OTA-Signature': signature.trim() },
        body: file,
      }).then(
        (img) => {
          status(upStatus, `Uploaded ${img.version} (${img.size} bytes), id ${img.id}.`, 'ok');
          void refreshImages();
        },
        (err: Error) => status(upStatus, `Upload refused: ${err.message}`, 'error'),
      ),
    );
  });

  // Start
  const imageSel = h('select', { id: 'ota-image' });
  const group = h('input', { id: 'ota-group', placeholder: 'boards: glob, e.g. kitchen-* (empty: all)' });
  const waves = h('input', { id: 'ota-waves', value: '1,10%,100%' });
  const maxFailures = h('input', { id: 'ota-max-failures', value: '10%' });
  const startStatus = h('p', { id: 'ota-start-status', class: 'status' });
  const start = h(
    'form',
    { id: 'ota-start' },
    h('label', {}, 'Image ', imageSel),
    group,
    h('label', {}, 'Waves ', waves),
    h('label', {}, 'Pause past ', maxFailures),
    h('button', { type: 'submit', disabled: !operator }, 'Start rollout'),
  );
  start.addEventListener('submit', (ev) => {
    ev.preventDefault();
    call<Campaign>('/api/ota/campaigns', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        imageId: imageSel.value,
        waves: waves.value,
        maxFailures: maxFailures.value,
        ...(group.value ? { group: group.value } : {}),
      }),
    }).then(
      (c) => {
        status(startStatus, `Campaign ${c.id} started.`, 'ok');
        selected = c.id;
        void refresh();
      },
      (err: Error) => status(startStatus, `Not started: ${err.message}`, 'error'),
    );
  });

  // Progress
  const progress = h('div', { id: 'ota-progress' });
  let selected: string | null = null;
  const action = (id: string, what: string) =>
    call(`/api/ota/campaigns/${id}/actions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: what }),
    }).then(
      () => refresh(),
      (err: Error) => status(startStatus, `${what} failed: ${err.message}`, 'error'),
    );
  const render = (c: Campaign) => {
    const counts = Object.entries(c.counts)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${s} ${n}`)
      .join(' · ');
    const total = Object.values(c.counts).reduce((a, b) => a + b, 0);
    const done = c.counts.succeeded ?? 0;
    const buttons = operator
      ? [
          h('button', { id: 'ota-pause', type: 'button', hidden: c.state !== 'running' }, 'Pause'),
          h('button', { id: 'ota-resume', type: 'button', hidden: c.state !== 'paused' }, 'Resume'),
          h(
            'button',
            { id: 'ota-abort', type: 'button', hidden: c.state !== 'running' && c.state !== 'paused' },
            'Abort',
          ),
        ]
      : [];
    for (const b of buttons) b.addEventListener('click', () => void action(c.id, b.textContent?.toLowerCase() ?? ''));
    const rows = Object.entries(c.boards ?? {}).map(([id, b]) =>
      h(
        'tr',
        { 'data-board': id, 'data-state': b.state },
        h('td', {}, id),
        h('td', {}, String(b.wave + 1)),
        h('td', {}, b.state),
        h('td', {}, b.detail ?? ''),
      ),
    );
    progress.replaceChildren(
      h(
        'p',
        { id: 'ota-campaign', 'data-state': c.state, 'data-campaign': c.id },
        `Campaign ${c.id} · ${c.version} · ${c.state}${c.reason ? ` (${c.reason})` : ''} · wave ${c.wave + 1}/${c.waveEnds.length} · `,
        h('strong', { id: 'ota-percent' }, `${total ? Math.round((100 * done) / total) : 0} %`),
        ` succeeded · ${counts}`,
      ),
      h('p', {}, ...buttons),
      h(
        'table',
        { class: 'ota-boards' },
        h('tr', {}, h('th', {}, 'board'), h('th', {}, 'wave'), h('th', {}, 'state'), h('th', {}, '')),
        ...rows,
      ),
    );
  };

  const refreshImages = async () => {
    const { images: list } = await call<{ images: Image[] }>('/api/ota/images');
    images.replaceChildren(
      ...list.map((i) => h('li', { 'data-image': i.id }, `${i.version} · ${i.target} · ${i.size} bytes · ${i.id}`)),
    );
    imageSel.replaceChildren(...list.map((i) => h('option', { value: i.id }, `${i.version} (${i.id})`)));
  };
  const refresh = async () => {
    if (selected === null) {
      const { campaigns } = await call<{ campaigns: Campaign[] }>('/api/ota/campaigns');
      const latest = campaigns.sort((a, b) => (a.id < b.id ? 1 : -1)).find((c) => c.state !== 'aborted');
      if (!latest) return;
      selected = latest.id;
    }
    render(await call<Campaign>(`/api/ota/campaigns/${selected}`));
  };

  root.replaceChildren(
    h(
      'section',
      { class: 'ota' },
      h('h2', {}, 'Firmware images'),
      images,
      upload,
      upStatus,
      h('h2', {}, 'Rollout'),
      start,
      startStatus,
      progress,
    ),
  );
  void refreshImages().catch(() => undefined);
  void refresh().catch(() => undefined);
  const timer = setInterval(() => void refresh().catch(() => undefined), POLL_MS);
  return {
    destroy() {
      clearInterval(timer);
    },
  };
}
