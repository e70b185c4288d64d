// The loudness of a microphone track (0–1, RMS), for the pre-join meter, for noticing
// that someone with a raised hand is speaking, and for our own active-speaker level.
// Web Audio, no DOM.

export class LevelMeter {
  /** @param {MediaStreamTrack} track */
  constructor(track) {
    this.track = track;
    /** @type {AudioContext|null} */
    this.ctx = null;
    /** @type {AnalyserNode|null} */
    this.analyser = null;
    try {
      this.ctx = new AudioContext();
      const source = this.ctx.createMediaStreamSource(new MediaStream([track]));
      this.analyser = this.ctx.createAnalyser();
      this.analyser.fftSize = 1024;
      source.connect(this.analyser); // not to the destination: never played back
    } catch (err) {
      console.info('no audio level meter:', err);
    }
    this.buf = new Float32Array(1024);
  }

  /** The level now; 0 when the track is muted, disabled or ended. */
  level() {
    if (!this.analyser || !this.track.enabled || this.track.readyState !== 'live') return 0;
    if (this.ctx && this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (const v of this.buf) sum += v * v;
    return Math.sqrt(sum / this.buf.length);
  }

  close() {
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
    this.analyser = null;
  }
}

/**
 * The level of whatever microphone the call sends now (0 while it sends none): one
 * meter for the whole page, made anew when the track changes (a device switch).
 */
export class MicLevel {
  /** @param {{media: {audio: MediaStreamTrack|null}|null, sendingAudio: boolean}} call */
  constructor(call) {
    this.call = call;
    /** @type {LevelMeter|null} */
    this.meter = null;
  }

  level() {
    const track = this.call.media && this.call.sendingAudio ? this.call.media.audio : null;
    if (!track) return 0;
    if (!this.meter || this.meter.track !== track) {
      this.close();
      this.meter = new LevelMeter(track);
    }
    return this.meter.level();
  }

  /** Whether a meter is open and measures sound: one was asked for (level() opens it),
   * and its audio context runs (a page that has had no user gesture yet may keep it
   * suspended). */
  get measuring() {
    return !!(this.meter && this.meter.ctx && this.meter.ctx.state === 'running');
  }

  close() {
    if (this.meter) this.meter.close();
    this.meter = null;
  }
}
