// The start page: remember the name, create a room or join one by name.
import { cleanName, normaliseRoom, randomRoomName, saveName, savedName } from './names.js';

const nameInput = /** @type {HTMLInputElement} */ (document.getElementById('name'));
const roomInput = /** @type {HTMLInputElement} */ (document.getElementById('room'));
const roomError = /** @type {HTMLElement} */ (document.getElementById('room-error'));

nameInput.value = savedName();
nameInput.addEventListener('change', () => saveName(cleanName(nameInput.value)));

function go(/** @type {string} */ room) {
  const name = cleanName(nameInput.value);
  if (name) saveName(name);
  location.assign(`/r/${encodeURIComponent(room)}`);
}

document.getElementById('name-form')?.addEventListener('submit', (ev) => ev.preventDefault());
document.getElementById('create')?.addEventListener('click', () => go(randomRoomName()));
document.getElementById('join-form')?.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = normaliseRoom(roomInput.value);
  if (!room) {
    roomError.textContent = 'A room name is 1 to 40 letters, digits, "-" or "_".';
    roomError.hidden = false;
    return;
  }
  go(room);
});
