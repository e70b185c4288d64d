// Presenting, on the page: the share button, share tiles, the presenter layout, pinning
// and full screen, the active-speaker highlight, and the speaker (sound) toggle.
// The rules live in DOM-free modules: layout.js (which layout, where tiles go),
// speaker.js (who speaks), share.js (sending a share); this module wires them to the
// call's events and to the grid.
import { icon } from './icons.js';
import { onKey } from './keys.js';
import { chooseLayout, presenterRects } from './layout.js';
import { ScreenShare } from './share.js';
import { SpeakerDetector } from './speaker.js';

/** @typedef {import('./call.js').Call} Call */
/** @typedef {import('./grid.js').Grid} Grid */
/** @typedef {import('./grid.js').Tile} Tile */
/** @typedef {import('./signaling.js').PeerInfo} PeerInfo */

/** How often audio levels are sampled for the active speaker. */
const SAMPLE_MS = 300;

const inCall = (/** @type {import('./call.js').Phase} */ phase) => phase === 'joined' || phase === 'reconnecting';
/** Our own level is read from the sender's stats every this many samples. */
const SELF_EVERY = 3;
const GAP = 8;
const LOCAL_SHARE = 'screen:local';
const shareTileId = (/** @type {string} */ peerId) => `screen:${peerId}`;

/**
 * The audio level (0..1) of what a receiver plays: the RTP audio level of its newest
 * packet, read from its synchronization sources (cheap and synchronous; getStats
 * reports the same level but costs a full stats walk each time, a few times a second
 * per peer). Null when the receiver reports none.
 */
function receivedLevel(/** @type {RTCRtpReceiver} */ receiver) {
  if (!receiver.getSynchronizationSources) return null;
  const sources = receiver.getSynchronizationSources();
  if (!sources.length) return 0; // nothing received lately: silent
  const level = sources[0].audioLevel;
  return typeof level === 'number' ? level : null;
}

/** The audio level (0..1) of what one sender or receiver carries, from getStats. */
async function levelOf(/** @type {RTCRtpSender|RTCRtpReceiver} */ end, /** @type {string} */ type) {
  let level = 0;
  const report = await end.getStats();
  report.forEach((s) => {
    if (s.type === type && s.kind === 'audio' && typeof s.audioLevel === 'number') level = Math.max(level, s.audioLevel);
  });
  return level;
}

export class Presenter {
  /**
   * @param {object} o
   * @param {Call} o.call
   * @param {Grid} o.grid
   * @param {import('./level.js').MicLevel} [o.mic]  the level of the microphone we send
   * @param {{display?: boolean, inRoom?: boolean, notice?: (text: string|null) => void}} [o.options]
   *   display: a room display (no controls, follows the room by itself); inRoom: joined
   *   through a room display's code, so microphone and speaker start off
   */
  constructor({ call, grid, mic, options = {} }) {
    this.call = call;
    this.mic = mic || null;
    this.ticks = 0;
    this.sampling = false;
    /** our own last level read (see _sample) */
    this.ownLevel = 0;
    this.grid = grid;
    this.display = !!options.display;
    this.notice = options.notice || (() => {});
    this.share = new ScreenShare(call);
    this.detector = new SpeakerDetector();
    /** @type {string[]} peer ids sharing, oldest share first (LOCAL_SHARE for ours) */
    this.sharers = [];
    /** @type {string|null} */
    this.picked = null;
    /** @type {string|null} */
    this.pinned = null;
    this.gridChosen = false;
    this.speakerOn = !options.inRoom;
    /** @type {string|null} the tile id of the active speaker */
    this.speaker = null;
    /** @type {WeakSet<Tile>} */
    this.decorated = new WeakSet();
    grid.arrange = () => this.arrange();
    this._listen();
    if (!this.display) this._wireControls();
    if (options.inRoom) {
      call.setMic(false);
      // Said once the call shows (joining clears the notice line first).
      const tell = (/** @type {Event} */ ev) => {
        if (/** @type {CustomEvent} */ (ev).detail.phase !== 'connecting') return;
        call.removeEventListener('phase', tell);
        this.notice('You joined from the meeting room: your microphone and speaker start off, so the room does not '
          + 'echo; the room display plays the sound. Turn them on with the buttons below.');
      };
      call.addEventListener('phase', tell);
    }
    this._renderControls();
    // Sampled only while in a call: a page that has left stops asking for audio levels.
    call.addEventListener('phase', () => {
      if (inCall(call.phase)) this._tick();
    });
  }

  // ------------------------------------------------------------ the call's events
  _listen() {
    const call = this.call;
    /** @type {Record<string, (d: any) => void>} */
    const on = {
      'peer-added': (d) => this._info(d.id, d.info),
      'peer-updated': (d) => this._info(d.id, d.info),
      'peer-removed': (d) => this._shareEnded(d.id),
      'share-track': (d) => this._shareTrack(d.id, d.stream),
      joined: (d) => {
        // A fresh join: everyone's shares are announced again in the welcome.
        if (!d.resumed) for (const id of this.sharers.filter((s) => s !== LOCAL_SHARE)) this._shareEnded(id);
      },
      phase: (d) => {
        if (d.phase === 'left' || d.phase === 'full' || d.phase === 'error') this.share.stop();
      },
    };
    for (const [type, fn] of Object.entries(on)) {
      call.addEventListener(type, (ev) => fn(/** @type {CustomEvent} */ (ev).detail));
    }
    this.share.addEventListener('started', (ev) => {
      const { stream } = /** @type {CustomEvent} */ (ev).detail;
      const tile = this.grid.add({ id: LOCAL_SHARE, name: 'Your screen', self: true });
      tile.video.classList.remove('mirror');
      tile.video.srcObject = stream;
      tile.play();
      this._shareStarted(LOCAL_SHARE);
      this._renderControls();
    });
    this.share.addEventListener('stopped', () => {
      this._shareEnded(LOCAL_SHARE);
      this._renderControls();
    });
    this.share.addEventListener('error', (ev) => {
      const err = /** @type {CustomEvent} */ (ev).detail.error;
      // Cancelling the browser's picker is a choice, not an error.
      if (!(err && err.name === 'NotAllowedError')) this.notice('The screen could not be shared.');
    });
  }

  /** A peer's `screen`: a share starts or ends. */
  _info(/** @type {string} */ id, /** @type {PeerInfo|null} */ info) {
    const sharing = !!(info && info.screen);
    const tile = this.grid.get(shareTileId(id));
    if (sharing && !tile) {
      const t = this.grid.add({ id: shareTileId(id), name: info ? info.name : '…' });
      // Marked at once, in the task that made it: views.js must never take it for a
      // person (its id is not a peer id, and a `view` to it is a fatal bad-field).
      t.el.dataset.share = 'true';
      t.setState('connected');
      if (!this.speakerOn) t.video.muted = true;
      this._shareStarted(id);
    } else if (!sharing && tile) {
      this._shareEnded(id);
    } else if (tile && info) {
      tile.setName(info.name);
    }
    this._markPresenting(id, sharing);
  }

  _shareTrack(/** @type {string} */ id, /** @type {MediaStream} */ stream) {
    const info = this.call.infos.get(id);
    if (!info || !info.screen || info.screen !== stream.id) return;
    const tile = this.grid.get(shareTileId(id));
    if (!tile) return;
    if (!this.speakerOn) tile.video.muted = true;
    tile.setStream(stream);
    tile.setMedia(stream.getAudioTracks().length > 0, true);
  }

  _shareStarted(/** @type {string} */ id) {
    if (!this.sharers.includes(id)) this.sharers.push(id);
    // A new share is shown large, whatever was chosen before.
    this.gridChosen = false;
    this.picked = null;
    this.grid.layout();
    this._renderControls();
  }

  _shareEnded(/** @type {string} */ id) {
    const tileId = id === LOCAL_SHARE ? LOCAL_SHARE : shareTileId(id);
    this.sharers = this.sharers.filter((s) => s !== id);
    if (this.pinned === tileId) this.pinned = null;
    if (this.picked === tileId) this.picked = null;
    this.grid.remove(tileId);
    if (id !== LOCAL_SHARE) this._markPresenting(id, false);
    this.grid.layout();
    this._renderControls();
  }

  /** A "Presenting" badge in the presenter's own tile. */
  _markPresenting(/** @type {string} */ id, /** @type {boolean} */ on) {
    const tile = this.grid.get(id);
    if (!tile) return;
    tile.el.dataset.presenting = String(on);
    const label = tile.nameEl.parentElement;
    let badge = label && label.querySelector('.presenting');
    if (on && label && !badge) {
      badge = document.createElement('span');
      badge.className = 'presenting';
      badge.textContent = 'Presenting';
      label.append(badge);
    } else if (!on && badge) {
      badge.remove();
    }
  }

  // ------------------------------------------------------------ controls
  _wireControls() {
    const share = document.getElementById('ctl-share');
    const layout = document.getElementById('ctl-layout');
    const speaker = document.getElementById('ctl-speaker');
    if (share) share.addEventListener('click', () => this.toggleShare());
    const invite = document.getElementById('invite');
    if (invite && !this.share.supported) {
      // Where a phone user looks for more: the invite panel says why there is no share button.
      const why = document.createElement('p');
      why.className = 'note share-why';
      why.textContent = 'Screen sharing needs a computer: this browser cannot share its screen.';
      invite.querySelector('form')?.before(why);
    }
    if (layout) layout.addEventListener('click', () => this.toggleLayout());
    if (speaker) speaker.addEventListener('click', () => this.setSpeaker(!this.speakerOn));
    onKey(this.call, 'p', () => this.toggleShare());
  }

  toggleShare() {
    if (!this.share.supported) {
      // The button is not there on phones; someone pressing `p` or asking learns why.
      this.notice('This browser cannot share a screen (phones and tablets cannot): share from a computer.');
      return;
    }
    if (this.share.active) this.share.stop();
    else this.share.start();
  }

  toggleLayout() {
    if (this.pinned) this.pinned = null;
    else if (this.sharers.length) this.gridChosen = !this.gridChosen;
    this.grid.layout();
    this._renderControls();
  }

  setSpeaker(/** @type {boolean} */ on) {
    this.speakerOn = on;
    for (const tile of this.grid.tiles.values()) {
      if (tile.self) continue;
      tile.video.muted = !on;
      if (on) tile.play();
    }
    this._renderControls();
  }

  _renderControls() {
    if (this.display) return;
    const share = document.getElementById('ctl-share');
    if (share) {
      share.hidden = !this.share.supported;
      const on = this.share.active;
      share.replaceChildren(icon('screen'));
      share.setAttribute('aria-pressed', String(on));
      share.classList.toggle('active', on);
      share.setAttribute('aria-label', on ? 'Stop sharing (p)' : 'Share screen (p)');
      share.title = share.getAttribute('aria-label') || '';
    }
    const layout = document.getElementById('ctl-layout');
    if (layout) {
      const presenter = this.grid.container.dataset.layout === 'presenter';
      layout.hidden = !this.sharers.length && !this.pinned;
      layout.replaceChildren(icon(presenter ? 'grid' : 'layout'));
      layout.setAttribute('aria-label', presenter ? 'Show everyone the same size (grid)' : 'Show the presentation large');
      layout.title = layout.getAttribute('aria-label') || '';
    }
    const speaker = document.getElementById('ctl-speaker');
    if (speaker) {
      speaker.replaceChildren(icon('speaker', !this.speakerOn));
      speaker.setAttribute('aria-pressed', String(this.speakerOn));
      speaker.classList.toggle('off', !this.speakerOn);
      speaker.setAttribute('aria-label', `Speaker ${this.speakerOn ? 'on' : 'off'}`);
      speaker.title = speaker.getAttribute('aria-label') || '';
    }
  }

  // ------------------------------------------------------------ tiles and layout
  /** Pin and full-screen buttons on a tile (not on a display: nobody can press them). */
  _decorate(/** @type {Tile} */ tile) {
    if (this.decorated.has(tile)) return;
    this.decorated.add(tile);
    if (tile.id.startsWith('screen:')) tile.el.dataset.share = 'true';
    if (!tile.self && !this.speakerOn) tile.video.muted = true;
    if (this.display) return;
    const tools = document.createElement('div');
    tools.className = 'tile-tools';
    const pin = document.createElement('button');
    pin.type = 'button';
    pin.className = 'tile-pin';
    pin.append(icon('pin'));
    pin.setAttribute('aria-label', `Pin ${tile.name}`);
    pin.title = 'Pin: show large';
    pin.addEventListener('click', (ev) => {
      ev.stopPropagation();
      this.pin(tile.id);
    });
    const full = document.createElement('button');
    full.type = 'button';
    full.className = 'tile-full';
    full.append(icon('fullscreen'));
    full.setAttribute('aria-label', `Full screen: ${tile.name}`);
    full.title = 'Full screen (or double-click)';
    full.addEventListener('click', (ev) => {
      ev.stopPropagation();
      this.fullscreen(tile);
    });
    tools.append(pin, full);
    tile.el.append(tools);
    tile.el.addEventListener('dblclick', () => this.fullscreen(tile));
    // Several shares: a click on a small share shows it large instead.
    tile.el.addEventListener('click', () => {
      if (tile.el.dataset.share === 'true' && tile.el.dataset.main !== 'true') {
        this.picked = tile.id;
        this.gridChosen = false;
        this.grid.layout();
        this._renderControls();
      }
    });
  }

  pin(/** @type {string} */ tileId) {
    this.pinned = this.pinned === tileId ? null : tileId;
    this.grid.layout();
    this._renderControls();
  }

  fullscreen(/** @type {Tile} */ tile) {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    } else if (tile.el.requestFullscreen) {
      tile.el.requestFullscreen().catch(() => {});
    }
  }

  /** Called by the grid whenever tiles or the stage change; true: the presenter layout
   * placed the tiles, false: the grid's own layout does. */
  arrange() {
    const grid = this.grid;
    for (const tile of grid.tiles.values()) this._decorate(tile);
    if (this.pinned && !grid.tiles.has(this.pinned)) this.pinned = null;
    const shares = this.sharers.map((id) => (id === LOCAL_SHARE ? LOCAL_SHARE : shareTileId(id)))
      .filter((id) => grid.tiles.has(id));
    const people = [...grid.tiles.keys()].filter((id) => !id.startsWith('screen:')).length;
    const choice = chooseLayout({
      shares, picked: this.picked, pinned: this.pinned, gridChosen: this.gridChosen,
      speaker: this.speaker && grid.tiles.has(this.speaker) ? this.speaker : null,
      display: this.display, people,
    });
    const c = grid.container;
    const before = c.dataset.layout;
    c.dataset.layout = choice.layout;
    for (const tile of grid.tiles.values()) {
      tile.el.dataset.main = String(tile.id === choice.main);
      tile.el.dataset.pinned = String(tile.id === this.pinned);
    }
    if (before !== choice.layout) queueMicrotask(() => this._renderControls());
    if (choice.layout === 'grid' || !choice.main) {
      c.style.width = c.style.height = '';
      for (const tile of grid.tiles.values()) {
        const s = tile.el.style;
        s.left = s.top = s.width = s.height = '';
      }
      return false;
    }
    const W = grid.stage.clientWidth;
    const H = grid.stage.clientHeight;
    if (!W || !H) return true;
    const others = [...grid.tiles.values()].filter((t) => t.id !== choice.main);
    const r = presenterRects(W, H, others.length, GAP);
    c.style.width = `${W}px`;
    c.style.height = `${H}px`;
    c.dataset.strip = r.side;
    const place = (/** @type {Tile} */ t, /** @type {import('./layout.js').Rect} */ rect) => {
      const s = t.el.style;
      s.left = `${rect.x}px`;
      s.top = `${rect.y}px`;
      s.width = `${rect.w}px`;
      s.height = `${rect.h}px`;
    };
    const main = grid.tiles.get(choice.main);
    if (main) place(main, r.main);
    others.forEach((t, i) => place(t, r.strip[i]));
    return true;
  }

  // ------------------------------------------------------------ active speaker
  /** One chain of samples at a time, from joining until the call ends. */
  _tick() {
    if (this.sampling) return;
    this.sampling = true;
    setTimeout(() => {
      this._sample().catch((err) => console.debug('audio levels', err)).finally(() => {
        this.sampling = false;
        if (inCall(this.call.phase)) this._tick();
      });
    }, SAMPLE_MS);
  }

  async _sample() {
    const call = this.call;
    if (!inCall(call.phase)) return;
    /** @type {Map<string, number>} */
    const levels = new Map();
    /** @type {RTCRtpSender|null} */
    let mine = null;
    await Promise.all([...call.peers].map(async ([id, peer]) => {
      const pc = peer.pc;
      if (pc.connectionState !== 'connected') return;
      const cam = peer.remoteStream.getAudioTracks()[0];
      const receiver = cam && pc.getReceivers().find((r) => r.track === cam);
      const quick = receiver ? receivedLevel(receiver) : 0;
      levels.set(id, quick !== null ? quick : receiver ? await levelOf(receiver, 'inbound-rtp') : 0);
      if (!mine && call.media && call.media.audio) mine = pc.getSenders().find((s) => s.track === call.media?.audio) || null;
    }));
    // Our own level, when we send. The page's microphone meter when it is open anyway (a
    // raised hand listens for speech); otherwise as the sender reports it, on every third
    // tick only. Not a meter of its own for the whole call: an audio context keeps an
    // audio thread running, which a weak device pays for all call long.
    this.ticks += 1;
    if (call.id && call.sendingAudio && call.peers.size > 0) {
      if (this.mic && this.mic.measuring) this.ownLevel = this.mic.level();
      else if (mine && this.ticks % SELF_EVERY === 0) this.ownLevel = await levelOf(mine, 'media-source');
      levels.set(call.id, this.ownLevel);
    } else {
      this.ownLevel = 0;
    }
    const r = this.detector.update(levels, performance.now());
    // Every tick, not only on a change: a tile drawn anew (a rejoin) gets its highlight too.
    for (const tile of this.grid.tiles.values()) {
      const on = r.speaking && tile.id === r.active;
      if ((tile.el.dataset.speaking === 'true') !== on) tile.el.dataset.speaking = String(on);
    }
    const speaker = r.active;
    if (speaker !== this.speaker) {
      this.speaker = speaker;
      if (this.display) this.grid.layout();
    }
  }
}
