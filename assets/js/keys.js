// One-key shortcuts of the call (m, v, c, h …): only in the call, never while typing,
// never with a modifier (those belong to the browser).

/**
 * @param {{phase: string}} call
 * @param {string} key  a lower-case letter
 * @param {() => void} fn
 */
export function onKey(call, key, fn) {
  document.addEventListener('keydown', (ev) => {
    if (call.phase === 'prejoin' || ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const t = /** @type {HTMLElement} */ (ev.target);
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    if (document.querySelector('dialog[open]')) return; // a dialog has the keyboard
    if (ev.key.toLowerCase() === key) {
      ev.preventDefault();
      fn();
    }
  });
}
