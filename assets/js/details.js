// "Connection details" (button, and the key `s`): per participant, the path the media
// takes (candidate types, UDP/TCP), round trip, loss, bitrate and frames both ways, and
// the quality this page chose for what it sends. Also the "poor connection" badge on a
// tile. Figures come from stats.js (Health, polling every 2 s); the table is drawn only
// while it is open.

import { onKey } from './keys.js';
import { Health } from './stats.js';

/** @typedef {import('./stats.js').Row} Row */
/** @typedef {import('./quality.js').Choice} Choice */

const COLUMNS = /** @type {const} */ ([
  ['name', 'Participant'], ['path', 'Path'], ['rtt', 'Round trip'], ['loss', 'Loss in / out'],
  ['rate', 'kbit/s in / out'], ['video-in', 'Video in'], ['video-out', 'Video out'], ['quality', 'Sending'],
]);

const pct = (/** @type {number|null} */ x) => (x === null ? '–' : `${(x * 100).toFixed(1)} %`);
const num = (/** @type {number|null} */ x) => (x === null ? '–' : String(Math.round(x)));
const frames = (/** @type {{width: number, height: number, fps: number}|null} */ f) =>
  (f ? `${f.width}×${f.height} @ ${Math.round(f.fps)}` : '–');

/** The cells of one row, as text. @param {Row|undefined} r @param {Choice|undefined} q */
function cells(r, q) {
  const sending = q ? (q.active ? `${q.height}p · ${Math.round(q.maxBitrate / 1000)} kbit/s · ${q.maxFramerate} fps (${q.why})`
    : 'no video (not shown)') : '–';
  if (!r) return { path: 'connecting…', rtt: '–', loss: '–', rate: '–', 'video-in': '–', 'video-out': '–', quality: sending };
  return {
    path: r.local ? `${r.local} ↔ ${r.remote} · ${r.protocol.toUpperCase()}` : 'no path yet',
    rtt: r.rttMs === null ? '–' : `${r.rttMs} ms`,
    loss: `${pct(r.lossIn)} / ${pct(r.lossOut)}`,
    rate: `${num(r.kbpsIn)} / ${num(r.kbpsOut)}`,
    'video-in': frames(r.videoIn),
    'video-out': frames(r.videoOut) + (r.limitation && r.limitation !== 'none' ? ` (${r.limitation}-limited)` : ''),
    quality: sending,
  };
}

/**
 * @param {object} o
 * @param {import('./call.js').Call} o.call
 * @param {import('./quality.js').Quality} o.quality  also fed the encoder limitations this poller reads
 * @param {(id: string) => HTMLElement|null} o.tileOf  a participant's tile element, if shown
 */
export function setupDetails({ call, quality, tileOf }) {
  const health = new Health(call);
  // One round of getStats serves both: what the table shows, and what the send policy adapts to.
  health.addEventListener('rows', (ev) => quality.readings(/** @type {CustomEvent} */ (ev).detail.rows));
  // Polled only while in a call: a page that has left (or waits at a lock) asks nothing.
  call.addEventListener('phase', () => {
    if (call.phase === 'joined' || call.phase === 'reconnecting') health.start();
    else health.stop();
  });

  const button = document.createElement('button');
  button.id = 'ctl-details';
  button.type = 'button';
  button.className = 'ctl details-button';
  button.textContent = 'Connection details';
  button.title = 'Connection details (s)';
  button.setAttribute('aria-haspopup', 'dialog');
  button.setAttribute('aria-keyshortcuts', 's');
  const controls = document.getElementById('controls');
  const leave = document.getElementById('ctl-leave');
  if (controls) controls.insertBefore(button, leave && leave.parentElement === controls ? leave : null);

  // A panel, not a <dialog>: it stays open beside the call, and an open <dialog> takes
  // the call's one-key shortcuts away (keys.js).
  const dialog = document.createElement('section');
  dialog.id = 'details';
  dialog.className = 'details';
  dialog.hidden = true;
  dialog.setAttribute('role', 'dialog');
  dialog.setAttribute('aria-labelledby', 'details-title');
  const title = document.createElement('h2');
  title.id = 'details-title';
  title.textContent = 'Connection details';
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  for (const [, label] of COLUMNS) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = label;
    head.append(th);
  }
  const body = table.createTBody();
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'secondary';
  close.textContent = 'Close';
  close.addEventListener('click', () => { dialog.hidden = true; });
  const empty = document.createElement('p');
  empty.className = 'note';
  empty.textContent = 'Nobody else is here yet.';
  dialog.append(title, table, empty, close);
  document.body.append(dialog);

  const render = () => {
    if (dialog.hidden) return; // closed: costs nothing
    body.replaceChildren();
    for (const id of call.peers.keys()) {
      const tr = body.insertRow();
      tr.dataset.peerId = id;
      const info = call.infos.get(id);
      const text = { name: info ? info.name : id, ...cells(health.rows.get(id), quality.applied.get(id)) };
      for (const [field] of COLUMNS) {
        const td = tr.insertCell();
        td.dataset.field = field;
        td.textContent = text[field];
      }
    }
    empty.hidden = call.peers.size > 0;
  };
  health.addEventListener('rows', render);

  const toggle = () => {
    if (!dialog.hidden) {
      dialog.hidden = true;
      return;
    }
    dialog.hidden = false; // not modal: the call stays usable underneath
    render();
    health.poll(); // fresh figures now, not in up to 2 s
  };
  button.addEventListener('click', toggle);
  onKey(call, 's', toggle);

  health.addEventListener('poor', (ev) => {
    const { id, poor } = /** @type {CustomEvent} */ (ev).detail;
    const tile = tileOf(id);
    if (tile) markPoor(tile, poor);
  });
  return { health, dialog, button };
}

/** The small "poor connection" badge on a tile. */
function markPoor(/** @type {HTMLElement} */ tile, /** @type {boolean} */ poor) {
  tile.dataset.poor = String(poor);
  let badge = tile.querySelector('.poor-badge');
  if (poor && !badge) {
    badge = document.createElement('div');
    badge.className = 'poor-badge';
    badge.setAttribute('role', 'status');
    badge.textContent = 'Poor connection';
    tile.append(badge);
  } else if (!poor && badge) {
    badge.remove();
  }
}
