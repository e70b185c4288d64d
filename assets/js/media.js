// The local camera and microphone: ask for both, fall back to what is available.

/**
 * @typedef {object} LocalMedia
 * @property {MediaStream} stream   always a stream, possibly without tracks
 * @property {MediaStreamTrack|null} audio
 * @property {MediaStreamTrack|null} video
 * @property {string|null} note     what is missing, in words for the user
 */

/** @type {Promise<LocalMedia>|null} */
let pending = null;

/**
 * Open the camera and microphone once per page: the first call asks, later calls get the
 * same answer (so room.html can start asking before the rest of the page has loaded).
 * `?lowres=1` in the page's address asks for 320×240.
 * @returns {Promise<LocalMedia>}
 */
export function getLocalMedia() {
  if (!pending) pending = openLocalMedia(new URLSearchParams(location.search).get('lowres') === '1');
  return pending;
}

/** What every microphone is opened with (the camera, a device choice, a room display). */
export const AUDIO = Object.freeze({ echoCancellation: true, noiseSuppression: true, autoGainControl: true });

/** @param {boolean} lowres @returns {Promise<LocalMedia>} */
async function openLocalMedia(lowres) {
  const video = lowres
    ? { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15, max: 20 } }
    : { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20, max: 24 } };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: new MediaStream(), audio: null, video: null, note: noteFor(false, false) };
  }
  /** @type {MediaStream|null} */
  let stream = null;
  for (const want of [{ audio: AUDIO, video }, { audio: AUDIO, video: false }, { audio: false, video }]) {
    try {
      stream = await navigator.mediaDevices.getUserMedia(want);
      break;
    } catch (err) {
      console.info('getUserMedia', want.audio ? 'audio' : '', want.video ? 'video' : '', 'failed:', err);
    }
  }
  stream = stream || new MediaStream();
  const a = stream.getAudioTracks()[0] || null;
  const v = stream.getVideoTracks()[0] || null;
  return { stream, audio: a, video: v, note: noteFor(!!a, !!v) };
}

function noteFor(/** @type {boolean} */ a, /** @type {boolean} */ v) {
  if (a && v) return null;
  if (a) return 'No camera available (missing or not allowed): you take part with audio only.';
  if (v) return 'No microphone available (missing or not allowed): the others can see you but not hear you.';
  return 'No camera or microphone available (missing or not allowed): you can see and hear the others, but they cannot see or hear you.';
}
