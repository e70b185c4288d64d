// Connection health, read from getStats(). No DOM here: `summarize` turns one report
// (and the previous one, for rates) into the figures people see in "Connection details";
// `PoorTracker` decides when a connection has been bad long enough to say so on its
// tile; `Health` polls the call's connections and emits what changed.

/**
 * @typedef {object} Totals  counters kept from one report to the next, for rates
 * @property {number} t  ms
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {number} packetsIn
 * @property {number} lostIn
 */
/** @typedef {{width: number, height: number, fps: number}} Frames */
/**
 * @typedef {object} Row  one connection, as shown in "Connection details"
 * @property {string} local     local candidate type (host, srflx, prflx, relay) or '' when none is selected
 * @property {string} remote    remote candidate type
 * @property {string} protocol  udp or tcp (for a relay: how this page reaches the relay)
 * @property {number|null} rttMs
 * @property {number|null} lossIn   fraction of packets lost on the way to us, since the last report
 * @property {number|null} lossOut  fraction lost on the way to them (their report)
 * @property {number|null} kbpsIn
 * @property {number|null} kbpsOut
 * @property {Frames|null} videoIn
 * @property {Frames|null} videoOut
 * @property {string|null} limitation  why the encoder holds back (cpu, bandwidth, none)
 * @property {Totals} totals
 */

/** When a connection counts as poor, and for how long before the tile says so. */
export const HEALTH = Object.freeze({
  rttMs: 400,
  loss: 0.05,
  poorAfterMs: 4000,
  okAfterMs: 6000,
  everyMs: 2000,
});

/**
 * @param {RTCStatsReport|Map<string, any>} report  one pc.getStats()
 * @param {Totals|null} prev  the previous row's totals (null: no rates yet)
 * @param {number} now  ms
 * @param {string|null} [camera]  the camera track's id: while a screen is shared too, the
 *   sent video and the encoder's limitation are the camera's (what the send policy adapts),
 *   not the share's. Null: the first video sent.
 * @returns {Row}
 */
export function summarize(report, prev, now, camera = null) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  /** @type {any} */
  let pair = null;
  let bytesIn = 0;
  let bytesOut = 0;
  let packetsIn = 0;
  let lostIn = 0;
  /** @type {Frames|null} */
  let videoIn = null;
  /** @type {Frames|null} */
  let videoOut = null;
  /** @type {number|null} */
  let lossOut = null;
  /** @type {string|null} */
  let limitation = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
    else if (s.type === 'candidate-pair' && s.selected && !pair) pair = s; // Firefox marks the pair itself
    else if (s.type === 'inbound-rtp') {
      bytesIn += s.bytesReceived || 0;
      packetsIn += s.packetsReceived || 0;
      lostIn += Math.max(0, s.packetsLost || 0);
      if (s.kind === 'video' && s.frameWidth) {
        videoIn = { width: s.frameWidth, height: s.frameHeight || 0, fps: s.framesPerSecond || 0 };
      }
    } else if (s.type === 'outbound-rtp') {
      bytesOut += s.bytesSent || 0;
      const source = s.mediaSourceId ? byId.get(s.mediaSourceId) : null;
      const ours = camera === null || (source && source.trackIdentifier === camera);
      if (s.kind === 'video' && ours) {
        limitation = s.qualityLimitationReason || limitation;
        if (s.frameWidth) videoOut = { width: s.frameWidth, height: s.frameHeight || 0, fps: s.framesPerSecond || 0 };
      }
    } else if (s.type === 'remote-inbound-rtp' && typeof s.fractionLost === 'number') {
      lossOut = Math.max(lossOut || 0, s.fractionLost);
    }
  });
  const local = pair ? byId.get(pair.localCandidateId) : null;
  const remote = pair ? byId.get(pair.remoteCandidateId) : null;
  const totals = { t: now, bytesIn, bytesOut, packetsIn, lostIn };
  const dt = prev ? (now - prev.t) / 1000 : 0;
  const rate = (/** @type {number} */ a, /** @type {number} */ b) => (dt > 0 ? Math.max(0, (a - b) * 8 / 1000 / dt) : null);
  let lossIn = null;
  if (prev) {
    const got = packetsIn - prev.packetsIn;
    const lost = lostIn - prev.lostIn;
    lossIn = got + lost > 0 ? Math.max(0, lost) / (got + lost) : 0;
  }
  return {
    local: local ? local.candidateType || '' : '',
    remote: remote ? remote.candidateType || '' : '',
    protocol: local ? local.relayProtocol || local.protocol || '' : '',
    rttMs: pair && typeof pair.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : null,
    lossIn,
    lossOut,
    kbpsIn: prev ? rate(bytesIn, prev.bytesIn) : null,
    kbpsOut: prev ? rate(bytesOut, prev.bytesOut) : null,
    videoIn,
    videoOut,
    limitation,
    totals,
  };
}

/** Whether one row is bad: a long round trip or many packets lost, either way. */
export function isBad(/** @type {Row} */ row) {
  const loss = Math.max(row.lossIn || 0, row.lossOut || 0);
  return (row.rttMs !== null && row.rttMs > HEALTH.rttMs) || loss > HEALTH.loss;
}

/** Poor after poorAfterMs of bad readings, fine again after okAfterMs of good ones. */
export class PoorTracker {
  constructor() {
    this.poor = false;
    /** @type {number|null} since when the readings disagree with `poor` */
    this.since = null;
  }

  /** One reading; true when `poor` changed. */
  sample(/** @type {boolean} */ bad, /** @type {number} */ now) {
    if (bad === this.poor) {
      this.since = null;
      return false;
    }
    if (this.since === null) this.since = now;
    if (now - this.since >= (bad ? HEALTH.poorAfterMs : HEALTH.okAfterMs)) {
      this.poor = bad;
      this.since = null;
      return true;
    }
    return false;
  }
}

/**
 * Polls every connection of a call every HEALTH.everyMs. Events: `poor` ({id, poor})
 * when a connection turns poor or recovers; `rows` ({rows}) after every poll.
 */
export class Health extends EventTarget {
  /**
   * @param {{peers: Map<string, {pc: RTCPeerConnection}>, media?: {video: MediaStreamTrack|null}|null}} call
   * @param {{now?: () => number}} [o]
   */
  constructor(call, { now = () => Date.now() } = {}) {
    super();
    this.call = call;
    this.now = now;
    /** @type {Map<string, Row>} */
    this.rows = new Map();
    /** @type {Map<string, PoorTracker>} */
    this.trackers = new Map();
    /** @type {Map<string, RTCPeerConnection>} which connection a row belongs to */
    this._pcs = new Map();
    /** @type {ReturnType<typeof setInterval>|undefined} */
    this.timer = undefined;
    this.busy = false;
  }

  /** Polls from now on; a poller already running carries on as it was. */
  start(every = HEALTH.everyMs) {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.poll(), every);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  async poll() {
    if (this.busy) return; // a slow page: never pile polls up
    this.busy = true;
    try {
      for (const [id, { pc }] of this.call.peers) {
        if (pc.connectionState === 'closed') continue;
        let report;
        try {
          report = await pc.getStats();
        } catch {
          continue;
        }
        const prevRow = this._pcs.get(id) === pc ? this.rows.get(id) : undefined;
        const camera = this.call.media && this.call.media.video ? this.call.media.video.id : null;
        const row = summarize(report, prevRow ? prevRow.totals : null, this.now(), camera);
        this.rows.set(id, row);
        this._pcs.set(id, pc);
        let tracker = this.trackers.get(id);
        if (!tracker) this.trackers.set(id, (tracker = new PoorTracker()));
        if (prevRow && tracker.sample(isBad(row), this.now())) {
          this.dispatchEvent(new CustomEvent('poor', { detail: { id, poor: tracker.poor } }));
        }
      }
      for (const id of [...this.rows.keys()]) {
        if (!this.call.peers.has(id)) {
          this.rows.delete(id);
          this.trackers.delete(id);
          this._pcs.delete(id);
        }
      }
      this.dispatchEvent(new CustomEvent('rows', { detail: { rows: this.rows } }));
    } finally {
      this.busy = false;
    }
  }
}
