// The video grid: one tile per participant, sized so 1-6 tiles fill the stage
// without scrolling. Names are always set with textContent.
import { icon } from './icons.js';
import { initials } from './names.js';

const TILE_ASPECT = 4 / 3;
const GAP = 8;

const STATE_TEXT = {
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  failed: 'Connection failed — retrying',
};

export class Tile {
  /** @param {{id: string, name: string, self?: boolean}} o */
  constructor({ id, name, self = false }) {
    this.id = id;
    this.self = self;
    const el = document.createElement('div');
    el.className = 'tile';
    el.dataset.peerId = id;
    el.dataset.state = self ? 'connected' : 'connecting';
    el.setAttribute('role', 'group');
    if (self) el.dataset.self = 'true';
    this.el = el;

    const video = document.createElement('video');
    video.playsInline = true;
    video.autoplay = true;
    video.muted = self; // never play our own microphone back
    if (self) video.classList.add('mirror');
    this.video = video;

    this.avatar = document.createElement('div');
    this.avatar.className = 'avatar';
    this.avatar.setAttribute('aria-hidden', 'true');

    const label = document.createElement('div');
    label.className = 'label';
    this.nameEl = document.createElement('span');
    this.nameEl.className = 'name';
    label.append(this.nameEl);
    if (self) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = 'You';
      label.prepend(you);
    }
    this.micOff = document.createElement('span');
    this.micOff.className = 'mic-off';
    this.micOff.append(icon('mic', true));
    this.micOff.setAttribute('role', 'img');
    this.micOff.setAttribute('aria-label', 'microphone off');
    label.append(this.micOff);

    this.badge = document.createElement('div');
    this.badge.className = 'badge';
    this.badge.textContent = self ? '' : STATE_TEXT.connecting;

    el.append(video, this.avatar, label, this.badge);
    this.setName(name);
    this.setMedia(true, true);
  }

  setName(/** @type {string} */ name) {
    this.name = name;
    this.nameEl.textContent = name;
    this.avatar.textContent = initials(name);
    this.el.setAttribute('aria-label', this.self ? `${name} (you)` : name);
  }

  setMedia(/** @type {boolean} */ audio, /** @type {boolean} */ video) {
    this.el.dataset.audio = String(audio);
    this.el.dataset.video = String(video);
    this.micOff.hidden = audio;
  }

  setState(/** @type {string} */ state) {
    this.el.dataset.state = state;
    this.badge.textContent = /** @type {Record<string, string>} */ (STATE_TEXT)[state] || '';
  }

  /** Show a stream; `onBlocked` runs when the browser refuses to play sound. */
  setStream(/** @type {MediaStream} */ stream, /** @type {(tile: Tile) => void} */ onBlocked = () => {}) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    this.play(onBlocked);
  }

  play(/** @type {(tile: Tile) => void} */ onBlocked = () => {}) {
    const p = this.video.play();
    if (p) {
      p.catch((err) => {
        if (err && err.name === 'NotAllowedError' && !this.video.muted) {
          // Autoplay with sound refused: show the picture muted, and offer a tap for sound.
          this.video.muted = true;
          this.video.play().catch(() => {});
          onBlocked(this);
        }
      });
    }
  }
}

export class Grid {
  constructor(/** @type {HTMLElement} */ container, /** @type {HTMLElement} */ stage) {
    this.container = container;
    container.style.gap = `${GAP}px`; // the layout below counts on exactly this gap
    this.stage = stage;
    /** @type {Map<string, Tile>} */
    this.tiles = new Map();
    /** @type {(() => boolean)|null} another layout (presenter) that may place the tiles
     * instead: it returns true when it did */
    this.arrange = null;
    new ResizeObserver(() => this.layout()).observe(stage);
  }

  /** @param {{id: string, name: string, self?: boolean}} o */
  add(o) {
    const old = this.tiles.get(o.id);
    if (old) return old;
    const tile = new Tile(o);
    this.tiles.set(o.id, tile);
    this.container.append(tile.el);
    this.layout();
    return tile;
  }

  get(/** @type {string} */ id) {
    return this.tiles.get(id);
  }

  remove(/** @type {string} */ id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.el.remove();
    this.tiles.delete(id);
    this.layout();
  }

  /** Re-key a tile (our own id changes when we join as a newcomer again). */
  rekey(/** @type {string} */ oldId, /** @type {string} */ newId) {
    const tile = this.tiles.get(oldId);
    if (!tile || oldId === newId) return;
    this.tiles.delete(oldId);
    tile.id = newId;
    tile.el.dataset.peerId = newId;
    this.tiles.set(newId, tile);
  }

  /** Pick the column count that gives the biggest tiles for this stage. */
  layout() {
    if (this.arrange && this.arrange()) return;
    const n = Math.max(1, this.tiles.size);
    const W = this.stage.clientWidth;
    const H = this.stage.clientHeight;
    if (!W || !H) return;
    let best = { cols: 1, w: 0, h: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      let w = (W - GAP * (cols - 1)) / cols;
      let h = (H - GAP * (rows - 1)) / rows;
      // Tiles are 4:3 to 16:9 on a landscape stage; on a portrait phone they may go up to 3:4.
      const wide = W >= H ? 16 / 9 : TILE_ASPECT;
      const narrow = W >= H ? TILE_ASPECT : 3 / 4;
      if (w / h > wide) w = h * wide;
      else if (w / h < narrow) h = w / narrow;
      if (w * h > best.w * best.h) best = { cols, w: Math.floor(w), h: Math.floor(h) };
    }
    this.container.style.gridTemplateColumns = `repeat(${best.cols}, ${best.w}px)`;
    this.container.style.gridAutoRows = `${best.h}px`;
  }
}
