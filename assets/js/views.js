// Tells each sender how large this page shows its camera video (the `view` signal), so
// that it sends no more than that (quality.js). Reads the grid's tiles from the DOM, so
// it follows any layout: a tile's video box in device pixels, or 0×0 when the tile (or
// what holds it) is hidden, or the whole page is in the background.

import { rungFor } from './quality.js';

/** @typedef {{width: number, height: number}} View */

/** Let the layout settle before telling anyone (a resize fires many times). */
const SETTLE_MS = 300;

export class ViewReporter {
  /**
   * @param {HTMLElement} container  the element holding the tiles (`.tile[data-peer-id]`)
   * @param {(id: string, view: View) => void} send  send a `view` signal to that peer
   */
  constructor(container, send) {
    this.container = container;
    this.send = send;
    /** @type {Map<string, string>} per peer: the last view sent, as rung or "off" */
    this.sent = new Map();
    /** @type {number|undefined} */
    this.timer = undefined;
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(container);
    new MutationObserver(() => {
      for (const video of container.querySelectorAll('.tile video')) this.resize.observe(video);
      this.schedule();
    }).observe(container, { childList: true, subtree: true, attributes: true, attributeFilter: ['hidden', 'class'] });
    document.addEventListener('visibilitychange', () => this.schedule());
  }

  /** Send again to this peer at the next look (say its connection was rebuilt). */
  forget(/** @type {string} */ id) {
    this.sent.delete(id);
    this.schedule();
  }

  schedule() {
    if (this.timer !== undefined) return;
    this.timer = window.setTimeout(() => {
      this.timer = undefined;
      this.report();
    }, SETTLE_MS);
  }

  report() {
    const background = document.visibilityState === 'hidden';
    const ratio = window.devicePixelRatio || 1;
    // Cameras only: a share tile (`data-share`) is not a peer, and its sending is the
    // share's own (present.js, share.js).
    for (const el of this.container.querySelectorAll('.tile[data-peer-id]:not([data-self]):not([data-share])')) {
      const tile = /** @type {HTMLElement} */ (el);
      const id = tile.dataset.peerId;
      const video = tile.querySelector('video');
      if (!id || !video) continue;
      const box = video.getBoundingClientRect();
      const hidden = background || tile.hidden || tile.closest('[hidden]') !== null;
      // A tile with no size yet is being laid out: say nothing until it has one, rather
      // than tell the sender to stop.
      if (!hidden && (box.width === 0 || box.height === 0)) continue;
      const shown = !hidden;
      /** @type {View} */
      const view = shown
        ? { width: Math.round(box.width * ratio), height: Math.round(box.height * ratio) }
        : { width: 0, height: 0 };
      // Only a change of rung (or on/off) is worth a frame: the sender rounds the same way.
      const key = shown ? String(rungFor(view.height)) : 'off';
      if (this.sent.get(id) === key) continue;
      this.sent.set(id, key);
      this.send(id, view);
    }
  }
}
