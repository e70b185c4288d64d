// One remote participant: an RTCPeerConnection driven by the "perfect negotiation"
// pattern (webrtc/samples, MDN), trickle ICE, and repair when the media path breaks.
// No DOM here: the UI listens to events.
//
// Roles, decided from the ids alone so both sides always agree without asking:
//  - the page with the smaller peer id is *impolite* (its offer wins a glare), the
//    one with the larger id is *polite* (it rolls back its own offer);
//  - the first offer comes from the newcomer (`initiator`), who calls everyone
//    listed in welcome.peers; the others wait for that offer and answer it;
//  - if an ICE restart does not bring the connection back, both sides drop the
//    connection and the impolite side (smaller id) offers a fresh one. A fresh
//    remote connection is recognised by a new SDP session id (the o= line).

/** @typedef {'connecting'|'connected'|'reconnecting'|'failed'|'closed'} PeerState */
/** @typedef {{audio: MediaStreamTrack|null, video: MediaStreamTrack|null}} LocalTracks */

export const RESTART_AFTER_DISCONNECTED = 3500;
export const REBUILD_AFTER_RESTART = 10000;
/** A first connection that has not come up by then is treated like a failed one. */
export const CONNECT_TIMEOUT = 15000;

const KINDS = /** @type {const} */ (['audio', 'video']);

/** The session id of an SDP (o= line), which is fixed for the life of a connection. */
export function sessionId(/** @type {string|undefined} */ sdp) {
  const m = /^o=\S+ (\d+) /m.exec(sdp || '');
  return m ? m[1] : null;
}

/**
 * Events: `state` ({state}), `track` ({stream}) when the remote stream gains a track,
 * `rebuild` ({}) when the connection should be replaced by a fresh one.
 */
export class Peer extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.id          remote peer id
   * @param {string} o.localId     our own peer id
   * @param {RTCConfiguration} o.config  iceServers and iceTransportPolicy from the welcome
   * @param {LocalTracks} o.tracks   what to send (null: nothing of that kind right now)
   * @param {MediaStream} o.stream   the local stream (for msid)
   * @param {(msg: Record<string, unknown>) => void} o.send  send a `signal` payload to this peer
   * @param {boolean} o.initiator    we make the first offer
   */
  constructor({ id, localId, config, tracks, stream, send, initiator }) {
    super();
    this.id = id;
    this.polite = localId > id;
    this.initiator = initiator;
    this.tracks = { ...tracks };
    this.stream = stream;
    this.sendSignal = send;
    this.remoteStream = new MediaStream();
    /** @type {PeerState} */
    this.state = 'connecting';
    this.makingOffer = false;
    this.ignoreOffer = false;
    /** @type {string|null} */
    this.remoteSession = null;
    this.iceRestarts = 0;
    /** @type {Promise<void>} */
    this.queue = Promise.resolve();
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.restartTimer = undefined;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.rebuildTimer = undefined;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.connectTimer = setTimeout(() => {
      if (this.state === 'connecting') this.restartIce();
    }, CONNECT_TIMEOUT);

    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    if (initiator) {
      for (const kind of KINDS) {
        pc.addTransceiver(this.tracks[kind] || kind, { direction: 'sendrecv', streams: [stream] });
      }
    }
    pc.onnegotiationneeded = () => this._negotiate();
    pc.onicecandidate = ({ candidate }) => this.sendSignal({ candidate: candidate ? candidate.toJSON() : null });
    pc.ontrack = ({ track }) => {
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      this._emit('track', { stream: this.remoteStream });
    };
    pc.onconnectionstatechange = () => this._connectionChanged();
  }

  _emit(/** @type {string} */ type, /** @type {unknown} */ detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(/** @type {PeerState} */ state) {
    if (this.state === state || this.state === 'closed') return;
    this.state = state;
    this._emit('state', { state });
  }

  async _negotiate() {
    const pc = this.pc;
    // A waiting side answers the newcomer's offer instead of making its own.
    if (!this.initiator && !pc.remoteDescription) return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      this.sendSignal({ description: pc.localDescription && pc.localDescription.toJSON() });
    } catch (err) {
      console.warn(`peer ${this.id}: offer failed`, err);
    } finally {
      this.makingOffer = false;
    }
  }

  /**
   * Whether an incoming description comes from a different connection than the one
   * this object talks to (the other side rebuilt its end).
   */
  isFromNewSession(/** @type {RTCSessionDescriptionInit} */ description) {
    const sid = sessionId(description.sdp);
    return description.type === 'offer' && this.remoteSession !== null && sid !== null && sid !== this.remoteSession;
  }

  /** Handle a relayed `signal` payload; calls are applied strictly in order. */
  handleSignal(/** @type {{description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit|null}} */ msg) {
    if (msg.description && this.remoteSession === null) this.remoteSession = sessionId(msg.description.sdp);
    this.queue = this.queue.then(() => this._handle(msg)).catch((err) => {
      console.warn(`peer ${this.id}: signal failed`, err);
    });
    return this.queue;
  }

  async _handle(/** @type {{description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit|null}} */ { description, candidate }) {
    const pc = this.pc;
    if (pc.signalingState === 'closed') return;
    if (description) {
      const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await pc.setRemoteDescription(description);
      if (description.type === 'offer') {
        await this._attachLocal();
        await pc.setLocalDescription();
        this.sendSignal({ description: pc.localDescription && pc.localDescription.toJSON() });
      }
    } else if (candidate !== undefined) {
      try {
        await pc.addIceCandidate(candidate === null ? undefined : candidate);
      } catch (err) {
        if (!this.ignoreOffer) console.warn(`peer ${this.id}: bad candidate`, err);
      }
    }
  }

  /** On the answering side, send our media on the transceivers the offer created. */
  async _attachLocal() {
    for (const t of this.pc.getTransceivers()) {
      const kind = /** @type {'audio'|'video'} */ (t.receiver.track.kind);
      if (t.direction === 'recvonly' && !t.sender.track) {
        t.direction = 'sendrecv';
        await t.sender.replaceTrack(this.tracks[kind]);
        if (t.sender.setStreams) t.sender.setStreams(this.stream);
      }
    }
  }

  /** Start or stop sending one kind (null stops the RTP stream; no renegotiation). */
  async setTrack(/** @type {'audio'|'video'} */ kind, /** @type {MediaStreamTrack|null} */ track) {
    if (this.tracks[kind] === track) return; // a toggle of the other kind: nothing to replace
    this.tracks[kind] = track;
    for (const t of this.pc.getTransceivers()) {
      if (t.receiver.track.kind === kind && t.direction === 'sendrecv') {
        await t.sender.replaceTrack(track);
      }
    }
  }

  _connectionChanged() {
    const s = this.pc.connectionState;
    if (s === 'connected') {
      clearTimeout(this.connectTimer);
      clearTimeout(this.restartTimer);
      clearTimeout(this.rebuildTimer);
      this.restartTimer = this.rebuildTimer = undefined;
      this._setState('connected');
    } else if (s === 'disconnected') {
      this._setState('reconnecting');
      if (!this.restartTimer && !this.rebuildTimer) {
        this.restartTimer = setTimeout(() => this.restartIce(), RESTART_AFTER_DISCONNECTED);
      }
    } else if (s === 'failed') {
      if (!this.rebuildTimer) this.restartIce();
      else this._setState('failed');
    }
  }

  /** ICE restart through perfect negotiation; if it does not help, ask for a rebuild. */
  restartIce() {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this.state === 'closed' || this.pc.connectionState === 'connected') return;
    this.iceRestarts += 1;
    this._setState('reconnecting');
    this.pc.restartIce();
    clearTimeout(this.rebuildTimer);
    this.rebuildTimer = setTimeout(() => {
      if (this.pc.connectionState !== 'connected') {
        this._setState('failed');
        this._emit('rebuild', {});
      }
    }, REBUILD_AFTER_RESTART);
  }

  close() {
    clearTimeout(this.connectTimer);
    clearTimeout(this.restartTimer);
    clearTimeout(this.rebuildTimer);
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.close();
    this.state = 'closed';
  }
}
