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
  hand: [
    ['path', { d: 'M8 13V5.5a1.5 1.5 0 0 1 3 0V11M11 10V4a1.5 1.5 0 0 1 3 0v6M14 10V5.5a1.5 1.5 0 0 1 3 0V13'
      + 'M17 11a1.5 1.5 0 0 1 3 0v3a7 7 0 0 1-7 7h-1a6 6 0 0 1-5-2.7L4.3 15a1.5 1.5 0 0 1 2.4-1.8L8 15' }],
  ],
  screen: [['path', { d: 'M3 4h18v12H3zM8 20h8M12 16v4' }]],
  layout: [['path', { d: 'M3 4h12v16H3zM17 4h4v4h-4zM17 10h4v4h-4zM17 16h4v4h-4z' }]],
  grid: [['path', { d: 'M3 4h8v7H3zM13 4h8v7h-8zM3 13h8v7H3zM13 13h8v7h-8z' }]],
  speaker: [['path', { d: 'M4 9h4l5-4v14l-5-4H4zM16.5 8.5a5 5 0 0 1 0 7M19 6a8.5 8.5 0 0 1 0 12' }]],
  pin: [['path', { d: 'M9 3h6M10 3v6l-3 4h10l-3-4V3M12 13v8' }]],
  fullscreen: [['path', { d: 'M4 9V4h5M15 4h5v5M20 15v5h-5M9 20H4v-5' }]],
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
