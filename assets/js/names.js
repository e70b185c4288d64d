// Room names and display names (shared by the landing and room pages).

const ADJECTIVES = ['bright', 'calm', 'clever', 'brave', 'gentle', 'happy', 'quick', 'quiet', 'sunny', 'swift',
  'bold', 'kind', 'merry', 'proud', 'witty', 'eager', 'lucky', 'amber', 'silver', 'golden', 'misty', 'cosy'];
const ANIMALS = ['otter', 'falcon', 'badger', 'heron', 'panda', 'lynx', 'fox', 'owl', 'seal', 'wren', 'koala',
  'bison', 'crane', 'gecko', 'hare', 'moose', 'puffin', 'raven', 'robin', 'tiger', 'whale', 'zebra'];

export const ROOM_RE = /^[A-Za-z0-9_-]{1,40}$/;
export const MAX_NAME = 40;
const NAME_KEY = 'meshcall.name';

function pick(/** @type {string[]} */ list) {
  const n = new Uint32Array(1);
  crypto.getRandomValues(n);
  return list[n[0] % list.length];
}

/** A short readable random room name such as `bright-otter-42`. */
export function randomRoomName() {
  const n = new Uint32Array(1);
  crypto.getRandomValues(n);
  return `${pick(ADJECTIVES)}-${pick(ANIMALS)}-${10 + (n[0] % 90)}`;
}

/** Turn what someone typed into a room name, or null if it cannot be one. */
export function normaliseRoom(/** @type {string} */ text) {
  const room = text.trim().toLowerCase().replace(/\s+/g, '-');
  return ROOM_RE.test(room) ? room : null;
}

/** A display name as the server will keep it: trimmed, inner spaces collapsed. */
export function cleanName(/** @type {string} */ text) {
  return text.replace(/[\u0000-\u001f\u007f]/g, '').split(/\s+/).filter(Boolean).join(' ').slice(0, MAX_NAME);
}

export function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

export function saveName(/** @type {string} */ name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    /* storage may be off; the name is then asked again next time */
  }
}

/** Initials for a tile without video: "Ada Lovelace" → "AL". */
export function initials(/** @type {string} */ name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0] || '');
  return letters.join('').toUpperCase() || '?';
}
