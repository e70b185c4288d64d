// Who is speaking, from audio levels sampled a few times a second (RTP audio levels,
// 0..1 linear, as getStats `audioLevel` reports them). No DOM here.
//
// Hysteresis, so the highlight does not flicker with every syllable or breath:
//  - a level is smoothed: it rises at once and falls slowly;
//  - someone starts speaking after SPEAK_ON_MS above ON, and stops only after
//    SPEAK_OFF_MS below OFF (pauses between words keep them speaking);
//  - the active speaker changes when they stop, or when someone else has been clearly
//    louder (LOUDER times) for SWITCH_MS; it stays the last speaker while all are silent.

export const ON = 0.03;
export const OFF = 0.012;
export const SPEAK_ON_MS = 250;
export const SPEAK_OFF_MS = 1500;
export const SWITCH_MS = 1200;
export const LOUDER = 2;
/** Per sample, how much of the smoothed level is kept when the level falls. */
const DECAY = 0.7;

/** @typedef {{level: number, aboveSince: number|null, belowSince: number|null, speaking: boolean}} Voice */

export class SpeakerDetector {
  constructor() {
    /** @type {Map<string, Voice>} */
    this.voices = new Map();
    /** @type {string|null} */
    this.active = null;
    /** @type {{id: string, since: number}|null} someone louder than the active speaker */
    this.challenger = null;
  }

  /**
   * Feed one sample of everyone's level (ids not listed are gone).
   * @param {Map<string, number>} levels
   * @param {number} now  milliseconds
   * @returns {{active: string|null, speaking: boolean, changed: boolean}}
   *   speaking: the active speaker is speaking now (highlight them)
   */
  update(levels, now) {
    const before = this.active;
    const wasSpeaking = this.speaking;
    for (const id of [...this.voices.keys()]) if (!levels.has(id)) this.voices.delete(id);
    for (const [id, raw] of levels) {
      const level = Number.isFinite(raw) && raw > 0 ? raw : 0;
      let v = this.voices.get(id);
      if (!v) {
        v = { level: 0, aboveSince: null, belowSince: null, speaking: false };
        this.voices.set(id, v);
      }
      v.level = level >= v.level ? level : v.level * DECAY + level * (1 - DECAY);
      if (v.level >= ON) {
        v.belowSince = null;
        if (v.aboveSince === null) v.aboveSince = now;
        if (!v.speaking && now - v.aboveSince >= SPEAK_ON_MS) v.speaking = true;
      } else {
        v.aboveSince = null;
        if (v.level < OFF) {
          if (v.belowSince === null) v.belowSince = now;
          if (v.speaking && now - v.belowSince >= SPEAK_OFF_MS) v.speaking = false;
        } else {
          v.belowSince = null;
        }
      }
    }
    this._pick(now);
    const speaking = this.speaking;
    return { active: this.active, speaking, changed: before !== this.active || wasSpeaking !== speaking };
  }

  /** The active speaker is speaking now. */
  get speaking() {
    const v = this.active ? this.voices.get(this.active) : undefined;
    return !!v && v.speaking;
  }

  _pick(/** @type {number} */ now) {
    /** @type {[string, Voice]|null} */
    let loudest = null;
    for (const entry of this.voices) {
      if (entry[1].speaking && (!loudest || entry[1].level > loudest[1].level)) loudest = entry;
    }
    const cur = this.active ? this.voices.get(this.active) : undefined;
    if (!cur) this.active = null;
    if (!loudest) {
      this.challenger = null;
      return; // silence: the last speaker stays active (not highlighted)
    }
    if (!cur || !cur.speaking) {
      this.active = loudest[0];
      this.challenger = null;
      return;
    }
    if (loudest[0] === this.active || loudest[1].level < cur.level * LOUDER) {
      this.challenger = null;
      return;
    }
    if (!this.challenger || this.challenger.id !== loudest[0]) this.challenger = { id: loudest[0], since: now };
    if (now - this.challenger.since >= SWITCH_MS) {
      this.active = loudest[0];
      this.challenger = null;
    }
  }
}
