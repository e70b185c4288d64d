// The signaling socket of a page that joins at once (a shared link with a name, a room
// display). early-media.js opens it as soon as it runs, so that the TLS and WebSocket
// handshakes overlap the loading of the rest of the page; room.js takes it over when it
// joins, and closes it when the page turns out not to join at once after all.
import { cleanName } from './names.js';

export const SIGNALING_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

/** @type {WebSocket|null} */
let opened = null;
/** room.js has asked: from then on it opens its own sockets. */
let taken = false;

/** Open the socket now if this page joins without asking for a name: a room display, or a
 * `name=` that room.js will accept (the same cleanName). room.js imports early-media.js, so
 * this runs before room.js asks; after it has asked, it opens nothing. */
export function openEarly(/** @type {URLSearchParams} */ params) {
  if (opened || taken || !(params.get('display') === '1' || cleanName(params.get('name') || ''))) return;
  opened = new WebSocket(SIGNALING_URL);
}

/** The socket opened early, if any: handed over once. */
export function takeEarly() {
  const ws = opened;
  opened = null;
  taken = true;
  return ws;
}
