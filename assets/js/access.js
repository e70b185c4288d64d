// The page an appliance with an access code shows to a browser without its cookie. It
// is served at whatever address was asked for, so after the right code it reloads that
// address. A room display can carry the code in its link once, as `#access=CODE` (a
// fragment never reaches the server or a proxy log); it is removed from the address
// before anything else, whether the code is right or not.

const form = /** @type {HTMLFormElement} */ (document.getElementById('access-form'));
const input = /** @type {HTMLInputElement} */ (document.getElementById('access-code'));
const errorEl = /** @type {HTMLElement} */ (document.getElementById('access-error'));

/** The address without `access=` in its fragment (other fragment fields, like a room's `key`, stay). */
function withoutCode() {
  const frag = new URLSearchParams(location.hash.slice(1));
  frag.delete('access');
  const rest = frag.toString();
  return location.pathname + location.search + (rest ? `#${rest}` : '');
}

function showError(/** @type {string} */ text) {
  errorEl.textContent = text;
  errorEl.hidden = false;
}

/** @returns {Promise<boolean>} whether the code was right (the cookie is then set) */
async function send(/** @type {string} */ code) {
  let res;
  try {
    res = await fetch('/access', { method: 'POST', body: new URLSearchParams({ code }), credentials: 'same-origin' });
  } catch {
    showError('The appliance cannot be reached. Check the network and try again.');
    return false;
  }
  if (res.ok) return true;
  showError(res.status === 429 ? 'Too many wrong codes from this device. Wait a few seconds and try again.'
    : 'That is not the access code.');
  return false;
}

/** Load the address asked for again, now with the cookie. A reload, not a navigation to
 * the same address: one that differs only in its fragment would not load anything. */
function enter() {
  location.reload();
}

async function main() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('access');
  history.replaceState(null, '', withoutCode());
  // A link from another site does not carry our SameSite=Strict cookie: a browser that
  // has one is admitted by simply asking again from here.
  try {
    const status = await fetch('/access', { credentials: 'same-origin', cache: 'no-store' });
    if (status.status === 204) {
      enter();
      return;
    }
  } catch {
    /* offline: the form below says so when used */
  }
  if (fromLink && await send(fromLink)) {
    enter();
    return;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    errorEl.hidden = true;
    if (await send(input.value)) enter();
    else input.select();
  });
  input.focus();
}

main();
