// Mesh-aware sending: what this page sends on each connection, from one policy.
// No DOM here. In a mesh every page encodes its camera once per connection, so the
// upload and the encoder's CPU grow with the room; the policy keeps both bounded:
//  - a total video budget for the whole mesh, split across the connections;
//  - a resolution and frame-rate step by room size;
//  - per connection, no more than the receiver shows (it tells us with a `view` signal;
//    0×0: it shows none, and that connection sends no video at all);
//  - a step down when the encoder reports it is limited (cpu, bandwidth), and back up
//    after a calm while, waiting longer each time a step up did not hold;
//  - audio first: audio senders get priority `high`.
// docs/quality.md explains the numbers; they live in POLICY and nowhere else.

/** @typedef {{width: number, height: number}} View */
/** @typedef {{upTo: number, height: number, fps: number, kbps: number}} Step */
/**
 * What one connection sends, as chosen by the policy.
 * @typedef {object} Choice
 * @property {boolean} active          send video at all on this connection
 * @property {number} height            the target frame height (pixels)
 * @property {number} scaleResolutionDownBy
 * @property {number} maxBitrate        bits per second
 * @property {number} maxFramerate
 * @property {number} people            the room size the step was chosen for
 * @property {number} level             the adaptation level (0: none)
 * @property {string} why               what capped it, in words (for Connection details)
 */

export const POLICY = Object.freeze({
  /** Video upload of the whole mesh, kbit/s: what a phone on busy Wi-Fi can keep up. */
  videoBudgetKbps: 2500,
  /** By room size (people, this page included): the most each connection gets. */
  steps: /** @type {readonly Step[]} */ (Object.freeze([
    { upTo: 2, height: 480, fps: 24, kbps: 1500 },
    { upTo: 4, height: 360, fps: 20, kbps: 800 },
    { upTo: Infinity, height: 240, fps: 15, kbps: 450 },
  ])),
  /** Target heights are rounded up to these rungs, so small resizes change nothing. */
  rungs: Object.freeze([90, 135, 180, 240, 360, 480, 720, 1080]),
  /** Never less than this per connection that sends video, kbit/s. */
  minKbps: 60,
  /** Adaptation levels: resolution divided, bitrate and frame rate multiplied. */
  levels: Object.freeze([
    { scale: 1, kbps: 1, fps: 1 },
    { scale: 1.5, kbps: 0.6, fps: 1 },
    { scale: 2, kbps: 0.4, fps: 0.75 },
    { scale: 3, kbps: 0.25, fps: 0.5 },
  ]),
  /** Limited for this long: one level down. */
  downAfterMs: 4000,
  /** Clear for this long: one level up; doubled (up to maxUpAfterMs) when a level up is
   * followed by a step down within flapWindowMs. */
  upAfterMs: 20000,
  maxUpAfterMs: 160000,
  flapWindowMs: 60000,
  audioPriority: /** @type {RTCPriorityType} */ ('high'),
});

/** The step for a room of `people`. */
export function stepFor(/** @type {number} */ people) {
  return POLICY.steps.find((s) => people <= s.upTo) || POLICY.steps[POLICY.steps.length - 1];
}

/** The smallest rung at least `height` high (the largest rung past the top). */
export function rungFor(/** @type {number} */ height) {
  return POLICY.rungs.find((r) => r >= height) || POLICY.rungs[POLICY.rungs.length - 1];
}

/**
 * The policy itself, pure: what to send on one connection.
 * @param {object} o
 * @param {number} o.people        people in the room, this page included
 * @param {number} o.connections   connections this page sends video on (>= 1)
 * @param {number} o.sourceHeight  the camera's frame height
 * @param {View|null} o.view       what that receiver shows of us (null: not told yet)
 * @param {number} [o.level]       adaptation level
 * @returns {Choice}
 */
export function choose({ people, connections, sourceHeight, view, level = 0 }) {
  const step = stepFor(people);
  const lv = POLICY.levels[Math.max(0, Math.min(level, POLICY.levels.length - 1))];
  const share = POLICY.videoBudgetKbps / Math.max(1, connections);
  let kbps = Math.min(step.kbps, share);
  let height = step.height;
  let why = kbps < step.kbps ? 'budget' : `room of ${people}`;
  if (view && (view.width === 0 || view.height === 0)) {
    return { active: false, height: 0, scaleResolutionDownBy: 1, maxBitrate: POLICY.minKbps * 1000,
      maxFramerate: step.fps, people, level, why: 'not shown' };
  }
  if (view) {
    const shown = rungFor(view.height);
    if (shown < height) {
      // Bitrate follows the pixel count, not the height.
      kbps *= (shown / height) ** 2;
      height = shown;
      why = `shown ${view.width}×${view.height}`;
    }
  }
  height = Math.min(height, sourceHeight);
  height = Math.max(1, Math.round(height / lv.scale));
  kbps = Math.max(POLICY.minKbps, kbps * lv.kbps);
  if (level > 0) why += `, level ${level}`;
  return {
    active: true,
    height,
    scaleResolutionDownBy: Math.max(1, sourceHeight / height),
    maxBitrate: Math.round(kbps * 1000),
    maxFramerate: Math.max(5, Math.round(step.fps * lv.fps)),
    people,
    level,
    why,
  };
}

/**
 * Reacting to `qualityLimitationReason`, pure (the clock is passed in): down a level
 * after being limited for downAfterMs, up a level after being clear for the current
 * up-wait. A level up that is followed by a step down within flapWindowMs doubles the
 * up-wait, so a connection at the edge settles instead of swinging every few seconds.
 */
export class Adaptation {
  constructor(/** @type {number} */ now) {
    this.level = 0;
    /** @type {number|null} */
    this.limitedSince = null;
    /** @type {number|null} */
    this.clearSince = now;
    /** @type {number} */
    this.upAfter = POLICY.upAfterMs;
    this.lastUp = -Infinity;
    this.changes = 0;
  }

  /** One reading; true when the level changed. */
  sample(/** @type {string} */ reason, /** @type {number} */ now) {
    const limited = reason === 'cpu' || reason === 'bandwidth';
    if (limited) {
      this.clearSince = null;
      if (this.limitedSince === null) this.limitedSince = now;
      if (now - this.limitedSince >= POLICY.downAfterMs && this.level < POLICY.levels.length - 1) {
        if (now - this.lastUp < POLICY.flapWindowMs) this.upAfter = Math.min(POLICY.maxUpAfterMs, this.upAfter * 2);
        this.level += 1;
        this.limitedSince = now; // the next level down needs a whole wait of its own
        this.changes += 1;
        return true;
      }
      return false;
    }
    this.limitedSince = null;
    if (this.clearSince === null) this.clearSince = now;
    if (this.level > 0 && now - this.clearSince >= this.upAfter) {
      this.level -= 1;
      this.lastUp = now;
      this.clearSince = now;
      this.changes += 1;
      return true;
    }
    return false;
  }
}

/**
 * What the controller needs of one connection (a Peer, or a fake in tests).
 * @typedef {{id: string, state: string, senders: Record<'audio'|'video', RTCRtpTransceiver|null>,
 *   tracks: {audio: MediaStreamTrack|null, video: MediaStreamTrack|null}}} QualityPeer
 */

/**
 * Applies the policy to a call's connections with RTCRtpSender.setParameters. It listens
 * to the call: a connection coming up, the room growing or shrinking, a receiver's
 * `view`; and it is handed each connection's encoder limitation by whoever reads the
 * connections' stats already (readings(): the Health poller, every 2 s), so that a
 * starved page does not pay for a second round of getStats.
 */
export class Quality {
  /**
   * @param {EventTarget & {peers: Map<string, QualityPeer>}} call
   * @param {{now?: () => number, enabled?: boolean}} [o]
   */
  constructor(call, { now = () => Date.now(), enabled = true } = {}) {
    this.call = call;
    this.now = now;
    this.enabled = enabled;
    /** @type {Map<string, View>} what each receiver told us it shows */
    this.views = new Map();
    /** @type {Map<string, Adaptation>} */
    this.adaptations = new Map();
    /** @type {Map<string, Choice>} what was last applied per peer */
    this.applied = new Map();
    /** @type {Map<string, string>} the last limitation reason read per peer */
    this.reasons = new Map();
    /** @type {Map<string, string>} per peer: the parameters last set, to skip repeats */
    this._lastKey = new Map();
    if (!enabled) return;
    const on = (/** @type {string} */ type, /** @type {(d: any) => void} */ fn) =>
      call.addEventListener(type, (ev) => fn(/** @type {CustomEvent} */ (ev).detail));
    on('peer-state', (d) => {
      if (d.state === 'connected') {
        this._lastKey.delete(d.id); // a new connection has default parameters
        this.applyAll();
      }
    });
    on('peer-removed', (d) => {
      this.views.delete(d.id);
      this.adaptations.delete(d.id);
      this.applied.delete(d.id);
      this.reasons.delete(d.id);
      this._lastKey.delete(d.id);
      this.applyAll(); // the room is smaller: the others may get more
    });
    on('view', (d) => {
      this.views.set(d.id, d.view);
      this.apply(d.id);
    });
    on('media', () => this.applyAll()); // a camera that comes back starts from defaults
  }

  /** Connections that send video, and so share the budget. */
  _videoConnections() {
    let n = 0;
    for (const p of this.call.peers.values()) if (p.state !== 'closed') n += 1;
    return Math.max(1, n);
  }

  /** The choice for one peer now (null when we send no video to it). */
  choiceFor(/** @type {string} */ id) {
    const peer = this.call.peers.get(id);
    const track = peer && peer.tracks.video;
    if (!peer || !track) return null;
    const settings = track.getSettings ? track.getSettings() : {};
    const adaptation = this.adaptations.get(id);
    return choose({
      people: this.call.peers.size + 1,
      connections: this._videoConnections(),
      sourceHeight: settings.height || 480,
      view: this.views.get(id) || null,
      level: adaptation ? adaptation.level : 0,
    });
  }

  applyAll() {
    for (const id of this.call.peers.keys()) this.apply(id);
  }

  /** Set the parameters of one peer's senders (errors are logged: the call goes on). */
  apply(/** @type {string} */ id) {
    if (!this.enabled) return;
    const peer = this.call.peers.get(id);
    if (!peer) return;
    const choice = this.choiceFor(id);
    const key = JSON.stringify(choice);
    if (this._lastKey.get(id) === key) return;
    this._lastKey.set(id, key);
    if (choice) this.applied.set(id, choice);
    else this.applied.delete(id);
    const audio = peer.senders.audio && peer.senders.audio.sender;
    const video = peer.senders.video && peer.senders.video.sender;
    const retry = () => this._lastKey.delete(id); // the next readings() applies it again
    if (audio) setEncoding(audio, { priority: POLICY.audioPriority, networkPriority: POLICY.audioPriority }, retry);
    if (video && choice) {
      setEncoding(video, {
        active: choice.active,
        maxBitrate: choice.maxBitrate,
        scaleResolutionDownBy: choice.scaleResolutionDownBy,
        maxFramerate: choice.maxFramerate,
      }, retry);
    }
  }

  /**
   * One round of readings: per connection, why its video encoder holds back (the
   * outbound-rtp `qualityLimitationReason`: cpu, bandwidth, none; null when it sends no
   * video). Steps each connection's level down or up.
   * @param {Map<string, {limitation: string|null}>} rows
   */
  readings(rows) {
    if (!this.enabled) return;
    const now = this.now();
    for (const [id, peer] of this.call.peers) {
      if (peer.state !== 'connected') continue;
      if (!this._lastKey.has(id)) this.apply(id); // refused before: try again
      const row = rows.get(id);
      if (!row || row.limitation === null || !peer.tracks.video) continue;
      this.reasons.set(id, row.limitation);
      let a = this.adaptations.get(id);
      if (!a) {
        a = new Adaptation(now);
        this.adaptations.set(id, a);
      }
      if (a.sample(row.limitation, now)) this.apply(id);
    }
  }
}

/** Per sender: the change waiting for the one in flight to finish (see setEncoding). */
const inFlight = /** @type {WeakMap<RTCRtpSender, {next: Record<string, unknown>|null, failed?: () => void}>} */ (new WeakMap());

/**
 * Change the first encoding of a sender. setParameters must get what getParameters
 * returned (its transactionId), and a second call while one is in flight can be
 * refused; so one at a time per sender, and a change asked for meanwhile is merged and
 * applied when the first is done. A sender not negotiated yet has no encodings and is
 * shaped when its connection comes up. `failed` is told when the browser refused (the
 * caller tries again later, rather than believe its choice applied).
 * @param {RTCRtpSender} sender
 * @param {Record<string, unknown>} fields
 * @param {() => void} [failed]
 */
function setEncoding(sender, fields, failed = () => {}) {
  const busy = inFlight.get(sender);
  if (busy) {
    busy.next = { ...(busy.next || {}), ...fields };
    busy.failed = failed;
    return;
  }
  const params = sender.getParameters();
  if (!params.encodings || !params.encodings.length) return;
  Object.assign(params.encodings[0], fields);
  const slot = { next: /** @type {Record<string, unknown>|null} */ (null), failed };
  inFlight.set(sender, slot);
  sender.setParameters(params).catch((err) => {
    console.warn('setParameters', err);
    slot.failed && slot.failed();
  }).finally(() => {
    inFlight.delete(sender);
    if (slot.next) setEncoding(sender, slot.next, slot.failed);
  });
}
