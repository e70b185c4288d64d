// Chat text without the DOM: which parts of a message are links. The panel builds text
// nodes and <a> elements from these parts; nothing is ever parsed as HTML.

/** @typedef {{text: string, href?: string}} ChatPart */

// A candidate link: http:// or https:// and everything up to white space. Other schemes
// (javascript:, data:, file:, mailto:) are never links.
const CANDIDATE = /\bhttps?:\/\/[^\s<>"']+/gi;
// Punctuation that ends a sentence rather than a URL ("see https://x/a.").
const TRAILING = /[.,;:!?)\]}'"»”’]+$/;

/** The link a candidate makes, or null (a URL parser's word, never a hand-made check). */
export function safeHref(/** @type {string} */ candidate) {
  let url;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!url.hostname) return null;
  return url.href;
}

/**
 * A message as text parts, some of which are links.
 * @param {string} text
 * @returns {ChatPart[]}
 */
export function chatParts(text) {
  /** @type {ChatPart[]} */
  const parts = [];
  let at = 0;
  for (const m of text.matchAll(CANDIDATE)) {
    const start = /** @type {number} */ (m.index);
    let raw = m[0];
    const trail = raw.match(TRAILING);
    if (trail) raw = raw.slice(0, raw.length - trail[0].length);
    const href = safeHref(raw);
    if (!href) continue;
    if (start > at) parts.push({ text: text.slice(at, start) });
    parts.push({ text: raw, href });
    at = start + raw.length;
  }
  if (at < text.length) parts.push({ text: text.slice(at) });
  return parts;
}

/** "14:05" in the viewer's own clock format. */
export function chatTime(/** @type {number} */ ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
