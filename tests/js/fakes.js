// Stand-ins for what call.js and peer.js get from a browser: an RTCPeerConnection that
// follows the JSEP signaling-state rules the negotiation code depends on (offer/answer,
// rollback, implicit rollback, negotiationneeded once stable), a signaling client that
// records what is sent, and a clock whose timers run only when a test advances it.

// Node 18 has CustomEvent only behind a flag.
if (typeof globalThis.CustomEvent === 'undefined') {
  globalThis.CustomEvent = class CustomEvent extends Event {
    constructor(type, init = {}) {
      super(type, init);
      this.detail = init.detail;
    }
  };
}

/** Let pending promise jobs and setImmediate callbacks (fake negotiationneeded) run. */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export class FakeClock {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    /** @type {Map<number, {at: number, fn: () => void}>} */
    this.timers = new Map();
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + ms, fn });
      return id;
    };
    this.clearTimeout = (id) => {
      if (id !== undefined) this.timers.delete(id);
    };
  }

  /** Move time forward, firing due timers in order and settling after each. */
  async advance(ms) {
    const target = this.now + ms;
    for (;;) {
      let due = null;
      for (const [id, t] of this.timers) if (t.at <= target && (!due || t.at < due[1].at)) due = [id, t];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.now = target;
    await settle();
  }
}

export class FakeTrack {
  constructor(kind) {
    this.kind = kind;
    this.enabled = true;
    this.readyState = 'live';
  }

  stop() {
    this.readyState = 'ended';
  }
}

export class FakeStream {
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }

  getTracks() {
    return [...this.tracks];
  }

  removeTrack(t) {
    this.tracks = this.tracks.filter((x) => x !== t);
  }

  addTrack(t) {
    this.tracks.push(t);
  }
}

let sessionCounter = 1000;

/** Build an SDP with one m-line per entry: {kind, direction}. */
export function sdp(session, version, mlines, ufrag = 'u1') {
  let s = `v=0\r\no=- ${session} ${version} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n`;
  mlines.forEach((m, i) => {
    s += `m=${m.kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:${i}\r\na=${m.direction}\r\na=ice-ufrag:${ufrag}\r\n`;
  });
  return s;
}

function parseMlines(text) {
  const out = [];
  for (const line of text.split('\r\n')) {
    const m = /^m=(\w+) /.exec(line);
    if (m) out.push({ kind: m[1], direction: 'sendrecv' });
    const d = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line);
    if (d && out.length) out[out.length - 1].direction = d[1];
  }
  return out;
}

function invalidState(what) {
  const err = new Error(what);
  err.name = 'InvalidStateError';
  return err;
}

class FakeSender {
  constructor(track) {
    this.track = track;
    this.streams = [];
  }

  async replaceTrack(track) {
    this.track = track;
  }

  setStreams(...streams) {
    this.streams = streams;
  }
}

export class FakePC {
  constructor(config = {}) {
    this.config = { ...config };
    this.signalingState = 'stable';
    this.connectionState = 'new';
    this.localDescription = null;
    this.remoteDescription = null;
    /** @type {any[]} */
    this.transceivers = [];
    this.session = sessionCounter++;
    this.version = 0;
    this.ufrag = 'u1';
    this.negotiationNeeded = false;
    this.iceRestarts = 0;
    this.added = [];
    this.rollbacks = 0;
    this.onnegotiationneeded = null;
    this.onicecandidate = null;
    this.ontrack = null;
    this.onconnectionstatechange = null;
    this.onsignalingstatechange = null;
    /** what the state was before the current offer (for rollback) */
    this.saved = null;
  }

  getConfiguration() {
    return { ...this.config };
  }

  setConfiguration(c) {
    this.config = { ...c };
  }

  addTransceiver(trackOrKind, init = {}) {
    const track = typeof trackOrKind === 'string' ? null : trackOrKind;
    const kind = typeof trackOrKind === 'string' ? trackOrKind : trackOrKind.kind;
    const t = this._transceiver(kind, init.direction || 'sendrecv', track);
    t.sender.streams = init.streams || [];
    this._needNegotiation();
    return t;
  }

  _transceiver(kind, direction, track = null, fromRemote = false) {
    const t = {
      mid: null,
      direction,
      currentDirection: null,
      fromRemote,
      sender: new FakeSender(track),
      receiver: { track: new FakeTrack(kind) },
    };
    this.transceivers.push(t);
    return t;
  }

  getTransceivers() {
    return [...this.transceivers];
  }

  restartIce() {
    this.iceRestarts += 1;
    this.ufrag = `u${this.iceRestarts + 1}`;
    this._needNegotiation();
  }

  _needNegotiation() {
    this.negotiationNeeded = true;
    this._maybeNegotiate();
  }

  _maybeNegotiate() {
    if (!this.negotiationNeeded || this.signalingState !== 'stable') return;
    setImmediate(() => {
      if (this.negotiationNeeded && this.signalingState === 'stable' && this.onnegotiationneeded) {
        this.onnegotiationneeded(new Event('negotiationneeded'));
      }
    });
  }

  _setSignaling(s) {
    if (this.signalingState === s) return;
    this.signalingState = s;
    if (this.onsignalingstatechange) this.onsignalingstatechange(new Event('signalingstatechange'));
    if (s === 'stable') this._maybeNegotiate();
  }

  /** Test control: the ICE agent's verdict. */
  setConnectionState(s) {
    this.connectionState = s;
    if (this.onconnectionstatechange) this.onconnectionstatechange(new Event('connectionstatechange'));
  }

  _rollback() {
    const s = this.saved;
    this.saved = null;
    if (this.signalingState === 'have-local-offer') {
      this.localDescription = s.local;
      this.negotiationNeeded = true; // the change the offer carried is still to be made
    } else {
      this.remoteDescription = s.remote;
      this.transceivers = this.transceivers.filter((t) => !s.created.includes(t));
    }
    for (const t of this.transceivers) if (t.mid === null) delete t.pendingMid;
    this.rollbacks += 1;
    this._setSignaling('stable');
  }

  async setLocalDescription(desc) {
    await null;
    if (this.signalingState === 'closed') throw invalidState('closed');
    const type = desc && desc.type ? desc.type : this.signalingState === 'have-remote-offer' ? 'answer' : 'offer';
    if (type === 'rollback') {
      if (this.signalingState !== 'have-local-offer' && this.signalingState !== 'have-remote-offer') {
        throw invalidState(`rollback in ${this.signalingState}`);
      }
      this._rollback();
      return;
    }
    if (type === 'offer') {
      if (this.signalingState !== 'stable' && this.signalingState !== 'have-local-offer') {
        throw invalidState(`offer in ${this.signalingState}`);
      }
      if (this.signalingState === 'stable') this.saved = { local: this.localDescription };
      this.version += 1;
      this.transceivers.forEach((t, i) => { t.pendingMid = i; });
      this.localDescription = { type, sdp: sdp(this.session, this.version, this.transceivers.map((t) => ({ kind: t.receiver.track.kind, direction: t.direction })), this.ufrag) };
      this.negotiationNeeded = false;
      this._setSignaling('have-local-offer');
      this._gather();
      return;
    }
    if (this.signalingState !== 'have-remote-offer') throw invalidState(`answer in ${this.signalingState}`);
    this.version += 1;
    this.localDescription = { type, sdp: sdp(this.session, this.version, this.transceivers.map((t) => ({ kind: t.receiver.track.kind, direction: t.direction })), this.ufrag) };
    this._settleTransceivers();
    this.saved = null;
    this._setSignaling('stable');
    this._gather();
  }

  _gather() {
    setImmediate(() => {
      if (this.signalingState === 'closed' || !this.onicecandidate) return;
      const c = { candidate: `candidate:1 1 udp 1 127.0.0.1 ${4000 + this.session % 1000} typ host`, sdpMid: '0', sdpMLineIndex: 0 };
      this.onicecandidate({ candidate: { toJSON: () => c } });
    });
  }

  _settleTransceivers() {
    for (const t of this.transceivers) {
      if (t.pendingMid !== undefined) t.mid = String(t.pendingMid);
      t.currentDirection = t.direction;
    }
  }

  async setRemoteDescription(desc) {
    await null;
    if (this.signalingState === 'closed') throw invalidState('closed');
    if (desc.type === 'offer') {
      if (this.signalingState === 'have-local-offer') this._rollback(); // implicit rollback
      if (this.signalingState !== 'stable') throw invalidState(`remote offer in ${this.signalingState}`);
      this.saved = { remote: this.remoteDescription };
      const mlines = parseMlines(desc.sdp);
      const fresh = [];
      mlines.forEach((m, i) => {
        let t = this.transceivers.find((x) => x.pendingMid === i || x.mid === String(i));
        if (!t) t = this.transceivers.find((x) => x.pendingMid === undefined && x.mid === null && x.receiver.track.kind === m.kind);
        if (!t) {
          t = this._transceiver(m.kind, 'recvonly', null, true);
          fresh.push(t);
        }
        t.pendingMid = i;
      });
      this.saved.created = fresh;
      this.remoteDescription = { type: desc.type, sdp: desc.sdp };
      this._setSignaling('have-remote-offer');
      for (const t of fresh) this._track(t);
      return;
    }
    if (this.signalingState !== 'have-local-offer') throw invalidState(`remote answer in ${this.signalingState}`);
    this.remoteDescription = { type: desc.type, sdp: desc.sdp };
    this._settleTransceivers();
    this.saved = null;
    for (const t of this.transceivers) if (!t.announced) this._track(t);
    this._setSignaling('stable');
  }

  _track(t) {
    t.announced = true;
    if (this.ontrack) this.ontrack({ track: t.receiver.track, transceiver: t });
  }

  async addIceCandidate(c) {
    await null;
    if (!this.remoteDescription) throw invalidState('no remote description');
    this.added.push(c);
  }

  close() {
    this.signalingState = 'closed';
    this.connectionState = 'closed';
  }
}

/** A signaling client that records what the call sends; tests emit server frames. */
export class FakeSignaling extends EventTarget {
  constructor() {
    super();
    this.state = 'idle';
    /** @type {{to: string, payload: any}[]} */
    this.sent = [];
    this.media = [];
    this.stopped = false;
    this.left = false;
  }

  start() {
    this.state = 'connecting';
  }

  stop() {
    this.stopped = true;
    this.emit('state', { state: (this.state = 'closed') });
  }

  leave() {
    this.left = true;
    this.stop();
  }

  drop() {
    this.emit('state', { state: (this.state = 'lost') });
  }

  sendSignal(to, payload) {
    this.sent.push({ to, payload });
  }

  setMedia(audio, video) {
    this.media.push({ audio, video });
  }

  emit(type, detail) {
    if (type === 'welcome') this.state = 'joined';
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Descriptions sent to one peer: [{type, conn, sdp}]. */
  descriptions(to) {
    return this.sent.filter((s) => s.to === to && s.payload.description)
      .map((s) => ({ type: s.payload.description.type, conn: s.payload.conn, sdp: s.payload.description.sdp }));
  }
}

/** Everything a Call needs, with fakes; `pcs` lists every connection made. */
export function fakeEnv() {
  const clock = new FakeClock();
  const pcs = [];
  let conns = 0;
  const env = {
    createPeerConnection: (config) => {
      const pc = new FakePC(config);
      pcs.push(pc);
      return pc;
    },
    createStream: () => new FakeStream(),
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    newConnId: () => `c${++conns}`,
  };
  return { env, clock, pcs };
}

export function fakeMedia() {
  const audio = new FakeTrack('audio');
  const video = new FakeTrack('video');
  return { stream: new FakeStream([audio, video]), audio, video, note: null };
}
