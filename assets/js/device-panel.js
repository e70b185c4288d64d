// Camera, microphone and speaker pickers: in the pre-join view (with a microphone level
// meter) and in the call's "Settings" dialog. A switch replaces the track on every
// connection without renegotiation (Call.replaceTrack); the choice is remembered on this
// device; a device that disappears falls back to another, and the user is told.
import { KINDS, loadChoices, pickDevice, saveChoice } from './devices.js';
import { AUDIO } from './media.js';

/** @typedef {import('./devices.js').DeviceKind} DeviceKind */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const LABELS = /** @type {Record<DeviceKind, string>} */ ({
  videoinput: 'Camera', audioinput: 'Microphone', audiooutput: 'Speaker',
});
const TRACK_KIND = /** @type {Record<string, 'audio'|'video'>} */ ({ videoinput: 'video', audioinput: 'audio' });

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // blocked by the browser's settings
  }
}

const canPickSpeaker = () => typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;

/**
 * @param {import('./call.js').Call} call
 * @param {{notice: (text: string) => void, mic: import('./level.js').MicLevel}} o
 *   mic: the level of the microphone we send
 */
export function setupDevices(call, { notice, mic }) {
  /** @type {MediaDeviceInfo[]} */
  let devices = [];
  /** @type {string|null} the speaker chosen (null: the system's) */
  let speaker = null;
  /** @type {HTMLSelectElement[]} every picker, both views */
  const selects = [];
  let switching = Promise.resolve();

  /** The device a track of ours comes from. */
  function inUse(/** @type {DeviceKind} */ kind) {
    if (kind === 'audiooutput') return speaker;
    const track = call.media ? call.media[TRACK_KIND[kind]] : null;
    return track && track.readyState === 'live' ? track.getSettings().deviceId || null : null;
  }

  function buildPickers(/** @type {HTMLElement} */ box, /** @type {string} */ prefix) {
    for (const kind of KINDS) {
      if (kind === 'audiooutput' && !canPickSpeaker()) continue;
      const id = `${prefix}-${kind}`;
      const label = document.createElement('label');
      label.htmlFor = id;
      label.textContent = LABELS[kind];
      const select = document.createElement('select');
      select.id = id;
      select.dataset.kind = kind;
      select.addEventListener('change', () => choose(kind, select.value));
      box.append(label, select);
      selects.push(select);
    }
  }

  function render() {
    for (const select of selects) {
      const kind = /** @type {DeviceKind} */ (select.dataset.kind);
      const of = devices.filter((d) => d.kind === kind && d.deviceId);
      const current = inUse(kind);
      select.replaceChildren(...of.map((d, i) => {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || `${LABELS[kind]} ${i + 1}`;
        return o;
      }));
      if (!of.length) {
        const o = document.createElement('option');
        o.textContent = `No ${LABELS[kind].toLowerCase()} found`;
        select.append(o);
      }
      if (current && of.some((d) => d.deviceId === current)) select.value = current;
      select.disabled = !of.length;
    }
  }

  async function refresh() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    devices = await navigator.mediaDevices.enumerateDevices();
    render();
  }

  /** Open a device and send it in place of the current one. */
  async function use(/** @type {DeviceKind} */ kind, /** @type {string} */ deviceId) {
    if (kind === 'audiooutput') {
      speaker = deviceId;
      applySpeaker();
      return;
    }
    const trackKind = TRACK_KIND[kind];
    const old = call.media ? call.media[trackKind] : null;
    /** @type {MediaTrackConstraints} */
    let constraints = { ...AUDIO, deviceId: { exact: deviceId } };
    if (trackKind === 'video') {
      // The same size and rate as now, from the other camera.
      const s = old ? old.getSettings() : {};
      constraints = { deviceId: { exact: deviceId } };
      if (s.width) constraints.width = { ideal: s.width };
      if (s.height) constraints.height = { ideal: s.height };
      if (s.frameRate) constraints.frameRate = { ideal: s.frameRate };
    }
    const stream = await navigator.mediaDevices.getUserMedia({ [trackKind]: constraints });
    const track = trackKind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    watch(track);
    await call.replaceTrack(trackKind, track);
  }

  /** A choice made by the user: remembered on this device. */
  function choose(/** @type {DeviceKind} */ kind, /** @type {string} */ deviceId) {
    const d = devices.find((x) => x.kind === kind && x.deviceId === deviceId);
    if (d) saveChoice(storage(), kind, { deviceId, label: d.label });
    switching = switching.then(() => use(kind, deviceId)).catch((err) => {
      console.warn('device switch', err);
      notice(`${LABELS[kind]} “${d ? d.label : deviceId}” could not be started.`);
    }).then(refresh);
  }

  /**
   * Use the remembered devices where present; after an unplug, fall back to another one
   * and say so. `startup`: the first look (no notice for a remembered device that is
   * simply absent today).
   */
  async function reconcile(startup = false) {
    await refresh();
    const wanted = loadChoices(storage());
    for (const kind of KINDS) {
      if (kind === 'audiooutput' && !canPickSpeaker()) continue;
      const current = inUse(kind);
      const hadOne = kind === 'audiooutput' ? !!speaker : !!(call.media && call.media[TRACK_KIND[kind]]);
      const { device } = pickDevice(devices, kind, { wanted: wanted[kind] || null, current });
      if (!device || device.deviceId === current) continue;
      if (kind === 'audiooutput' && !speaker && !wanted[kind]) continue; // the system's: nothing to do
      const lost = hadOne && !devices.some((d) => d.kind === kind && d.deviceId === current);
      try {
        await use(kind, device.deviceId);
        if (lost && !startup) notice(`Your ${LABELS[kind].toLowerCase()} is gone: now using “${device.label || 'another one'}”.`);
      } catch (err) {
        console.warn('device fallback', err);
      }
    }
    render();
  }

  function watch(/** @type {MediaStreamTrack|null} */ track) {
    // An unplugged device ends its track, sometimes before devicechange says so.
    if (track) track.addEventListener('ended', () => { switching = switching.then(() => reconcile()); });
  }

  /** Play the others through the chosen speaker, the tiles made later too. */
  function applySpeaker() {
    if (!speaker || !canPickSpeaker()) return;
    for (const el of document.querySelectorAll('#grid video, #grid audio')) {
      const media = /** @type {HTMLMediaElement & {setSinkId(id: string): Promise<void>, sinkId: string}} */ (el);
      if (media.sinkId !== speaker) media.setSinkId(speaker).catch((err) => console.warn('setSinkId', err));
    }
  }

  /** The pre-join microphone meter, while the pre-join view is shown. */
  function meterLoop() {
    const meterEl = /** @type {HTMLMeterElement} */ ($('prejoin-level'));
    const tick = () => {
      if ($('prejoin').hidden) {
        mic.close(); // its audio thread is not free: open again only when something listens
        return;
      }
      // Speech sits around 0.02–0.2 RMS: scale so a normal voice fills most of the bar.
      meterEl.value = Math.min(1, mic.level() * 5);
      requestAnimationFrame(tick);
    };
    tick();
  }

  /** Show a switched track in every video element that shows our stream. */
  call.addEventListener('local-track', () => {
    const stream = call.media && call.media.stream;
    if (!stream) return;
    for (const v of document.querySelectorAll('video')) {
      if (v.srcObject === stream) {
        v.srcObject = null;
        v.srcObject = stream;
        v.play().catch(() => {});
      }
    }
  });

  buildPickers($('prejoin-devices'), 'prejoin');
  buildPickers($('settings-devices'), 'settings');
  $('ctl-settings').addEventListener('click', () => {
    refresh();
    /** @type {HTMLDialogElement} */ ($('settings')).showModal();
  });
  new MutationObserver(applySpeaker).observe($('grid'), { childList: true, subtree: true });
  if (navigator.mediaDevices) {
    navigator.mediaDevices.addEventListener('devicechange', () => { switching = switching.then(() => reconcile()); });
  }

  return {
    /** Once the camera and microphone are open: remembered devices, meter, watching. */
    start() {
      if (call.media) {
        watch(call.media.audio);
        watch(call.media.video);
      }
      switching = switching.then(() => reconcile(true)).catch((err) => console.warn('devices', err));
      meterLoop();
    },
  };
}
