// When a raised hand lowers itself: after its person has spoken for a few seconds (they
// have the floor now). DOM-free: fed audio levels and times, it says when.

/** Seconds of speech, with the short pauses inside speech, that lower a hand. */
export const SPEAK_SECONDS = 3;
/** A level (0–1, RMS of the microphone signal) above this is speech, not room noise. */
export const SPEECH_LEVEL = 0.04;
/** A pause longer than this ends a run of speech (a cough is not the floor). */
export const PAUSE_SECONDS = 1;

export class SpeakingTimer {
  constructor() {
    /** @type {number|null} when the current run of speech began */
    this.since = null;
    /** last time the level was speech */
    this.lastLoud = -Infinity;
  }

  reset() {
    this.since = null;
    this.lastLoud = -Infinity;
  }

  /**
   * One reading. Returns true once the person has spoken SPEAK_SECONDS without a pause
   * longer than PAUSE_SECONDS.
   * @param {number} level  0–1
   * @param {number} now    seconds
   */
  feed(level, now) {
    if (level >= SPEECH_LEVEL) {
      if (this.since === null || now - this.lastLoud > PAUSE_SECONDS) this.since = now;
      this.lastLoud = now;
    } else if (this.since !== null && now - this.lastLoud > PAUSE_SECONDS) {
      this.since = null;
    }
    return this.since !== null && this.lastLoud - this.since >= SPEAK_SECONDS;
  }
}
