// The floor for the join benchmark: the least a page can do to join a meshcall room over
// meshcall's own /ws: camera + microphone, one WebSocket, the newcomer calls everyone in
// `welcome.peers`, the others answer; every remote stream goes to a bare <video>. No UI,
// no reconnect, no perfect negotiation (only the newcomer ever offers, so offers cannot
// collide). benchmarks/browser_bench.py injects this file as an init script into a
// document of meshcall's origin at /bench-floor/ (a plain 404 from meshcall: same origin,
// no page script of its own), so it runs from the start of navigation like a page script.
(async () => {
  if (!location.pathname.startsWith('/bench-floor/')) return;
  const params = new URLSearchParams(location.search);
  const room = params.get('room') || 'bench';
  const name = params.get('name') || 'floor';

  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    // hires=1: the camera a laptop gives (the six-person bench compares at that size).
    video: params.get('hires') === '1'
      ? { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20, max: 24 } }
      : { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15, max: 20 } },
  });
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  /** @type {Map<string, RTCPeerConnection>} */
  const pcs = new Map();
  let config = { iceServers: [], iceTransportPolicy: 'all' };
  const send = (msg) => ws.send(JSON.stringify(msg));

  function peer(id) {
    let pc = pcs.get(id);
    if (pc) return pc;
    pc = new RTCPeerConnection(config);
    pcs.set(id, pc);
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.onicecandidate = (e) => send({ type: 'signal', to: id, candidate: e.candidate ? e.candidate.toJSON() : null });
    pc.ontrack = (e) => {
      if (e.track.kind !== 'video') return;
      const v = document.createElement('video');
      v.muted = true; v.autoplay = true; v.playsInline = true; v.width = 160; v.height = 120;
      v.srcObject = e.streams[0];
      (document.body || document.documentElement || document).append(v);
    };
    return pc;
  }

  ws.onopen = () => send({ type: 'join', room, name, audio: true, video: true });
  // One message at a time, in order: a candidate never overtakes its description.
  let chain = Promise.resolve();
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    chain = chain.then(() => handle(msg)).catch((err) => console.warn('floor:', err));
  };

  async function handle(msg) {
    if (msg.type === 'welcome') {
      config = { iceServers: msg.iceServers, iceTransportPolicy: msg.iceTransportPolicy };
      for (const p of msg.peers) {
        const pc = peer(p.id);
        await pc.setLocalDescription();
        send({ type: 'signal', to: p.id, description: pc.localDescription });
      }
    } else if (msg.type === 'signal') {
      const pc = peer(msg.from);
      if (msg.description) {
        await pc.setRemoteDescription(msg.description);
        if (msg.description.type === 'offer') {
          await pc.setLocalDescription();
          send({ type: 'signal', to: msg.from, description: pc.localDescription });
        }
      } else if (msg.candidate) {
        await pc.addIceCandidate(msg.candidate).catch(() => {});
      }
    } else if (msg.type === 'peer-left') {
      const pc = pcs.get(msg.id);
      if (pc) { pc.close(); pcs.delete(msg.id); }
    }
  }
})();
