// Device choice without the DOM: which camera, microphone or speaker to use, given what
// is plugged in and what this device remembers (localStorage). Device ids are stable per
// origin once the user has allowed the camera and microphone; labels are the fallback
// when an id changes (some browsers renew ids when site data is cleared).

/** @typedef {'videoinput'|'audioinput'|'audiooutput'} DeviceKind */
/** @typedef {{deviceId: string, label: string}} Choice */
/** @typedef {{deviceId: string, kind: string, label: string}} DeviceLike */
/** @typedef {Pick<Storage, 'getItem'|'setItem'>} StorageLike */

const KEY = 'meshcall.devices';
export const KINDS = /** @type {DeviceKind[]} */ (['videoinput', 'audioinput', 'audiooutput']);

/** @returns {Partial<Record<DeviceKind, Choice>>} */
export function loadChoices(/** @type {StorageLike|null} */ storage) {
  try {
    const raw = storage && storage.getItem(KEY);
    const parsed = raw ? JSON.parse(raw) : {};
    /** @type {Partial<Record<DeviceKind, Choice>>} */
    const out = {};
    for (const kind of KINDS) {
      const c = parsed && parsed[kind];
      if (c && typeof c.deviceId === 'string' && typeof c.label === 'string') out[kind] = { deviceId: c.deviceId, label: c.label };
    }
    return out;
  } catch {
    return {}; // storage off (private mode) or garbage: no preferences
  }
}

export function saveChoice(/** @type {StorageLike|null} */ storage, /** @type {DeviceKind} */ kind,
  /** @type {Choice} */ choice) {
  if (!storage) return;
  try {
    storage.setItem(KEY, JSON.stringify({ ...loadChoices(storage), [kind]: { deviceId: choice.deviceId, label: choice.label } }));
  } catch {
    /* quota or storage off: the choice holds for this visit only */
  }
}

/**
 * The device of a kind to use.
 * @param {DeviceLike[]} devices  what enumerateDevices() lists now
 * @param {DeviceKind} kind
 * @param {{wanted?: Choice|null, current?: string|null}} o  the remembered choice, and
 *   the device in use now (kept when still there and nothing better is remembered)
 * @returns {{device: DeviceLike|null, fellBack: boolean}} `fellBack`: the wanted (or
 *   current) device is not there and another was picked
 */
export function pickDevice(devices, kind, { wanted = null, current = null } = {}) {
  const of = devices.filter((d) => d.kind === kind && d.deviceId);
  if (wanted) {
    const byId = of.find((d) => d.deviceId === wanted.deviceId);
    if (byId) return { device: byId, fellBack: false };
    const byLabel = wanted.label ? of.find((d) => d.label === wanted.label) : undefined;
    if (byLabel) return { device: byLabel, fellBack: false };
  }
  if (current) {
    const still = of.find((d) => d.deviceId === current);
    if (still) return { device: still, fellBack: !!wanted };
  }
  // The system default first ("default" in Chromium), else the first listed.
  const fallback = of.find((d) => d.deviceId === 'default') || of[0] || null;
  return { device: fallback, fellBack: !!(wanted || current) && !!fallback };
}
