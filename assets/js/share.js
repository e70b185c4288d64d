// Sending a screen share: getDisplayMedia, then the share's tracks on transceivers of
// their own on every connection, added by renegotiation (docs/protocol.md, `media`).
// No DOM here: the UI calls start()/stop() and draws the events.
//
// Order matters to the others: the `media` frame naming the share's stream goes out
// before the offer that carries it (both travel the same socket, in order), so a
// receiver knows the stream is a share when its tracks arrive.
//
// Priority in the upload budget: the share's video is marked `contentHint = 'detail'`
// and sent with `degradationPreference: 'maintain-resolution'` and a high
// `priority`/`networkPriority` (camera video keeps the default, low), so that on a
// tight uplink the encoder drops the share's frame rate before its sharpness, and
// camera video gives way first. A send-quality policy that caps bitrates per
// connection should treat a sender whose track is `ScreenShare.stream`'s as the share.

/** @typedef {import('./call.js').Call} Call */

/**
 * @typedef {object} ShareEnv
 * @property {((c: DisplayMediaStreamOptions) => Promise<MediaStream>)|null} getDisplayMedia
 *   null where the browser cannot capture a screen (phones)
 */

/** @typedef {{video: RTCRtpTransceiver, audio: RTCRtpTransceiver|null}} ShareTransceivers */

/** Send parameters of the share's video sender: sharp text before smooth motion. */
const SHARE_ENCODING = /** @type {const} */ ({ priority: 'high', networkPriority: 'high' });

function browserShareEnv() {
  const md = typeof navigator !== 'undefined' ? navigator.mediaDevices : undefined;
  /** @type {ShareEnv} */
  const env = {
    getDisplayMedia: md && typeof md.getDisplayMedia === 'function' ? (c) => md.getDisplayMedia(c) : null,
  };
  return env;
}

/**
 * Events (CustomEvent, `detail`): `started` ({stream}), `stopped` ({}), `error` ({error})
 * when the capture was refused or failed.
 */
export class ScreenShare extends EventTarget {
  /** @param {Call} call @param {ShareEnv} [env] */
  constructor(call, env = browserShareEnv()) {
    super();
    this.call = call;
    this.env = env;
    /** @type {MediaStream|null} */
    this.stream = null;
    /** @type {WeakMap<RTCPeerConnection, ShareTransceivers>} per connection, the share's
     * transceivers (kept after a share ends, inactive, for the next one) */
    this.sent = new WeakMap();
    this.starting = false;
    call.addEventListener('peer-state', (ev) => {
      const { id, state } = /** @type {CustomEvent} */ (ev).detail;
      // A connection (a new one, or a rebuilt one) gets the share once it is up, so its
      // first offer stays the plain audio + video one every client expects.
      if (state === 'connected' && this.stream) this._sendTo(id);
    });
  }

  get supported() {
    return !!this.env.getDisplayMedia;
  }

  get active() {
    return !!this.stream;
  }

  /** Start sharing; must run from a user gesture (a click, a key). */
  async start() {
    if (this.stream || this.starting || !this.env.getDisplayMedia) return;
    this.starting = true;
    /** @type {MediaStream} */
    let stream;
    try {
      // Tab or system audio where the browser offers it. Slides, documents and terminals
      // need sharp text, not motion: 15 frames a second at most halves the encoding work
      // of every connection compared with 30, and leaves the uplink to resolution.
      stream = await this.env.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 15 } }, audio: true });
    } catch (err) {
      this._emit('error', { error: err });
      return;
    } finally {
      this.starting = false;
    }
    const video = stream.getVideoTracks()[0];
    if (!video) {
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    if ('contentHint' in video) video.contentHint = 'detail';
    for (const t of stream.getAudioTracks()) if ('contentHint' in t) t.contentHint = 'music';
    this.stream = stream;
    // The browser's own "Stop sharing" ends the video track.
    video.addEventListener('ended', () => {
      if (this.stream === stream) this.stop();
    });
    this._announce(stream.id);
    for (const id of this.call.peers.keys()) this._sendTo(id);
    this._emit('started', { stream });
  }

  /** End the share everywhere: `media` first, then the transceivers go inactive. */
  stop() {
    const stream = this.stream;
    if (!stream) return;
    this.stream = null;
    for (const t of stream.getTracks()) t.stop();
    this._announce(null);
    for (const peer of this.call.peers.values()) {
      const t = this.sent.get(peer.pc);
      if (!t || peer.pc.signalingState === 'closed') continue;
      for (const tr of [t.video, t.audio]) {
        if (!tr) continue;
        tr.sender.replaceTrack(null).catch(() => {});
        tr.direction = 'inactive';
      }
    }
    this._emit('stopped', {});
  }

  _announce(/** @type {string|null} */ screen) {
    const sig = this.call.signaling;
    if (sig) sig.setMedia(this.call.sendingAudio, this.call.sendingVideo, screen);
  }

  /** Put the share on one connection: reuse its share transceivers, or add them. */
  _sendTo(/** @type {string} */ id) {
    const peer = this.call.peers.get(id);
    const stream = this.stream;
    if (!peer || !stream || peer.state !== 'connected' || peer.pc.signalingState === 'closed') return;
    const pc = peer.pc;
    const video = stream.getVideoTracks()[0];
    const audio = stream.getAudioTracks()[0] || null;
    let t = this.sent.get(pc);
    if (t && t.video.sender.track === video) return; // already sending this share
    if (!t) {
      t = {
        video: pc.addTransceiver(video, { direction: 'sendonly', streams: [stream], sendEncodings: [{ ...SHARE_ENCODING }] }),
        audio: audio ? pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] }) : null,
      };
      this.sent.set(pc, t);
    } else {
      reuse(t.video, video, stream);
      if (t.audio) reuse(t.audio, audio, stream);
      else if (audio) t.audio = pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
    }
    preferSharpness(t.video.sender);
  }

  _emit(/** @type {string} */ type, /** @type {unknown} */ detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** A transceiver of an earlier share carries this one (or, without a track, rests). */
function reuse(/** @type {RTCRtpTransceiver} */ t, /** @type {MediaStreamTrack|null} */ track, /** @type {MediaStream} */ stream) {
  t.direction = track ? 'sendonly' : 'inactive';
  t.sender.replaceTrack(track).catch(() => {});
  if (track && t.sender.setStreams) t.sender.setStreams(stream);
}

/**
 * Keep the resolution, drop frames first, and win the uplink over camera video.
 * Browsers without these parameters keep their defaults (contentHint 'detail' alone
 * already leans the same way in Chromium).
 */
async function preferSharpness(/** @type {RTCRtpSender} */ sender) {
  if (!sender.getParameters || !sender.setParameters) return;
  try {
    const p = /** @type {RTCRtpSendParameters & {degradationPreference?: string}} */ (sender.getParameters());
    p.degradationPreference = 'maintain-resolution';
    if (p.encodings && p.encodings.length) p.encodings = p.encodings.map((e) => ({ ...e, ...SHARE_ENCODING }));
    await sender.setParameters(p);
  } catch (err) {
    console.info('share: send parameters kept as they are', err);
  }
}
