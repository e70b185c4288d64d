// Which layout the stage shows, and where each tile goes in the presenter layout.
// Pure functions (no DOM), so the rules are tested without a browser.
//
// Two layouts: the grid (every tile the same size, grid.js) and the presenter layout
// (one tile large, the others as a strip along the side, or below it on a portrait
// screen). Which tile is large, in this order: a pinned tile; the share someone picked;
// the newest share; on a room display with more than DISPLAY_SPEAKER_AFTER people and
// no share, the active speaker.

/** @typedef {{x: number, y: number, w: number, h: number}} Rect */
/** @typedef {'grid'|'presenter'} LayoutName */

/** A room display shows the active speaker large only past this many people: up to
 * four, the grid tiles are large enough for a room to see everyone. */
export const DISPLAY_SPEAKER_AFTER = 4;

/**
 * @param {object} s
 * @param {string[]} s.shares     tile ids of the shares going on, oldest first
 * @param {string|null} s.picked  a share someone picked to see large
 * @param {string|null} s.pinned  a tile someone pinned
 * @param {boolean} s.gridChosen  someone chose the grid while a share goes on
 * @param {string|null} s.speaker the active speaker's tile id
 * @param {boolean} s.display     this page is a room display
 * @param {number} s.people       how many people (tiles that are not shares)
 * @returns {{layout: LayoutName, main: string|null}}
 */
export function chooseLayout(s) {
  if (s.pinned) return { layout: 'presenter', main: s.pinned };
  if (s.shares.length && !s.gridChosen) {
    const main = s.picked && s.shares.includes(s.picked) ? s.picked : s.shares[s.shares.length - 1];
    return { layout: 'presenter', main };
  }
  if (s.display && !s.shares.length && s.people > DISPLAY_SPEAKER_AFTER && s.speaker) {
    return { layout: 'presenter', main: s.speaker };
  }
  return { layout: 'grid', main: null };
}

/**
 * The largest equal tiles for n tiles in a w×h box: columns, tile size.
 * Tiles keep an aspect between `narrow` and `wide` (width / height).
 * @returns {{cols: number, rows: number, w: number, h: number}}
 */
function fitTiles(/** @type {number} */ n, /** @type {number} */ W, /** @type {number} */ H,
  gap = 8, wide = 16 / 9, narrow = 4 / 3) {
  let best = { cols: 1, rows: 1, w: 0, h: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    let w = (W - gap * (cols - 1)) / cols;
    let h = (H - gap * (rows - 1)) / rows;
    if (w <= 0 || h <= 0) continue;
    if (w / h > wide) w = h * wide;
    else if (w / h < narrow) h = w / narrow;
    if (w * h > best.w * best.h) best = { cols, rows, w: Math.floor(w), h: Math.floor(h) };
  }
  return best;
}

/** Lay n equal tiles out in a box, centred, none wider than maxW. */
function tilesIn(/** @type {Rect} */ box, /** @type {number} */ n, /** @type {number} */ gap,
  /** @type {number} */ wide, /** @type {number} */ narrow, maxW = Infinity) {
  if (!n) return [];
  const f = fitTiles(n, box.w, box.h, gap, wide, narrow);
  if (f.w > maxW) {
    f.h = Math.floor(f.h * maxW / f.w);
    f.w = Math.floor(maxW);
  }
  const usedH = f.rows * f.h + (f.rows - 1) * gap;
  /** @type {Rect[]} */
  const out = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / f.cols);
    // The last row may be short: centre it too.
    const inRow = Math.min(f.cols, n - row * f.cols);
    const rowW = inRow * f.w + (inRow - 1) * gap;
    const col = i - row * f.cols;
    out.push({
      x: Math.round(box.x + (box.w - rowW) / 2 + col * (f.w + gap)),
      y: Math.round(box.y + (box.h - usedH) / 2 + row * (f.h + gap)),
      w: f.w,
      h: f.h,
    });
  }
  return out;
}

/**
 * Presenter layout in a W×H stage: the main tile and `n` strip tiles.
 * Landscape: the strip is a column (or a few) at the right; portrait (a phone held
 * upright): the main tile on top, full width, people below.
 * @returns {{main: Rect, strip: Rect[], side: 'right'|'bottom'}}
 */
export function presenterRects(/** @type {number} */ W, /** @type {number} */ H, /** @type {number} */ n, gap = 8) {
  if (n <= 0) return { main: { x: 0, y: 0, w: W, h: H }, strip: [], side: 'right' };
  if (W >= H) {
    // A strip of about a fifth of the width: the main tile keeps most of the screen,
    // yet six faces stay recognisable.
    const sw = Math.max(120, Math.min(Math.round(W * 0.22), 420));
    const strip = tilesIn({ x: W - sw, y: 0, w: sw, h: H }, n, gap, 16 / 9, 4 / 3);
    // Against the right edge: whatever the strip does not use goes to the main tile.
    const shift = W - Math.max(...strip.map((r) => r.x + r.w));
    for (const r of strip) r.x += shift;
    const left = Math.min(...strip.map((r) => r.x));
    const mainW = Math.max(0, left - gap);
    return { main: { x: 0, y: 0, w: mainW, h: H }, strip, side: 'right' };
  }
  // Portrait: the share (usually 16:9) gets the full width, at most about half the height.
  const mainH = Math.min(Math.round(W * 3 / 4), Math.round(H * 0.5));
  const box = { x: 0, y: mainH + gap, w: W, h: H - mainH - gap };
  // With one or two people the strip could grow as large as the share: keep it smaller.
  const strip = tilesIn(box, n, gap, 16 / 9, 3 / 4, W * 0.6);
  // Move the people up against the main tile rather than leave a gap between.
  const top = Math.min(...strip.map((r) => r.y));
  const shift = top - box.y;
  for (const r of strip) r.y -= shift;
  return { main: { x: 0, y: 0, w: W, h: mainH }, strip, side: 'bottom' };
}
