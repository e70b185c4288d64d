// Small line icons built as SVG elements (no inline markup, no icon font).

const NS = 'http://www.w3.org/2000/svg';

/** @type {Record<string, Array<[string, Record<string, string>]>>} */
const SHAPES = {
  mic: [
    ['rect', { x: '9', y: '3', width: '6', height: '11', rx: '3' }],
    ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v3' }],
  ],
  cam: [
    ['rect', { x: '3', y: '6', width: '12', height: '12', rx: '2' }],
    ['path', { d: 'M15 10l6-3v10l-6-3z' }],
  ],
  invite: [
    ['circle', { cx: '9', cy: '8', r: '3.5' }],
    ['path', { d: 'M2.5 20c0-3.6 2.9-6.5 6.5-6.5s6.5 2.9 6.5 6.5M19 8v6M16 11h6' }],
  ],
  leave: [
    ['path', { d: 'M2.5 14.5c5.3-5 13.7-5 19 0l-2.6 2.6-3.4-1.6v-2.7a10.5 10.5 0 0 0-7 0v2.7l-3.4 1.6z', fill: 'currentColor' }],
  ],
  slash: [['path', { d: 'M4 3l17 18', class: 'slash' }]],
};

/** An icon; `off` adds a slash across it. */
export function icon(/** @type {string} */ name, off = false) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon');
  for (const [tag, attrs] of [...SHAPES[name], ...(off ? SHAPES.slash : [])]) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.append(el);
  }
  return svg;
}
