// The chat panel: messages as text (links only for http and https), an unread count on
// the "Chat" button, new messages announced to screen readers by the log's aria-live.
import { chatParts, chatTime } from './chat.js';
import { onKey } from './keys.js';

/** @typedef {import('./signaling.js').ChatMessage} ChatMessage */
/** @typedef {import('./signaling.js').SignalingClient} SignalingClient */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const ERRORS = /** @type {Record<string, string>} */ ({
  'chat-empty': 'A message needs some text.',
  'chat-too-long': 'That message is too long (at most 2,000 characters).',
  'chat-too-fast': 'Slow down a little: too many messages at once.',
});

/** One message as DOM nodes, built from text: nothing in it is parsed as HTML. */
function messageNode(/** @type {ChatMessage} */ m, /** @type {boolean} */ mine) {
  const li = document.createElement('li');
  li.className = mine ? 'chat-msg mine' : 'chat-msg';
  li.dataset.id = String(m.id);
  const head = document.createElement('div');
  head.className = 'chat-head';
  const who = document.createElement('span');
  who.className = 'chat-who';
  who.textContent = mine ? `${m.name} (you)` : m.name;
  const when = document.createElement('time');
  when.dateTime = new Date(m.ts).toISOString();
  when.textContent = chatTime(m.ts);
  head.append(who, ' ', when);
  const body = document.createElement('div');
  body.className = 'chat-text';
  for (const part of chatParts(m.text)) {
    if (part.href) {
      const a = document.createElement('a');
      a.href = part.href;
      a.textContent = part.text;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      body.append(a);
    } else {
      body.append(document.createTextNode(part.text));
    }
  }
  li.append(head, body);
  return li;
}

/** @param {import('./call.js').Call} call */
export function setupChat(call) {
  const panel = $('chat');
  const log = /** @type {HTMLOListElement} */ ($('chat-log'));
  const form = /** @type {HTMLFormElement} */ ($('chat-form'));
  const input = /** @type {HTMLTextAreaElement} */ ($('chat-input'));
  const button = $('ctl-chat');
  const unreadEl = $('chat-unread');
  const errorEl = $('chat-error');
  /** @type {SignalingClient|null} */
  let sig = null;
  let unread = 0;
  /** @type {Set<number>} ids shown, so a resumed socket's history is not shown twice */
  const shown = new Set();

  function renderButton() {
    unreadEl.textContent = unread ? String(unread) : '';
    unreadEl.hidden = !unread;
    const label = unread ? `Chat (c), ${unread} unread` : 'Chat (c)';
    button.setAttribute('aria-label', label);
    button.title = label;
    button.setAttribute('aria-expanded', String(!panel.hidden));
  }

  function toggle(/** @type {boolean} */ open = panel.hidden) {
    panel.hidden = !open;
    if (open) {
      unread = 0;
      input.focus();
      log.scrollTop = log.scrollHeight;
    }
    renderButton();
  }

  function add(/** @type {ChatMessage} */ m, /** @type {boolean} */ fresh) {
    if (shown.has(m.id)) return;
    shown.add(m.id);
    const mine = m.from === call.id;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(messageNode(m, mine));
    if (atEnd || mine) log.scrollTop = log.scrollHeight;
    if (fresh && !mine && panel.hidden) unread += 1;
    renderButton();
  }

  function send() {
    const text = input.value.trim();
    if (!text || !sig) return;
    if (sig.send({ type: 'chat', text })) {
      input.value = '';
      errorEl.hidden = true;
    } else {
      errorEl.textContent = 'Not connected to the meeting server: the message was not sent.';
      errorEl.hidden = false;
    }
  }

  button.addEventListener('click', () => toggle());
  $('chat-close').addEventListener('click', () => toggle(false));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
  input.addEventListener('keydown', (ev) => {
    // Enter sends; Shift+Enter is a new line; Enter while composing (IME) is not a send.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      send();
    } else if (ev.key === 'Escape') {
      toggle(false);
      button.focus();
    }
  });
  onKey(call, 'c', () => toggle());
  renderButton();

  return {
    attach(/** @type {SignalingClient} */ s) {
      sig = s;
      s.addEventListener('welcome', (ev) => {
        // A fresh join (not a resume) may be to a room that emptied meanwhile, whose
        // messages are gone and whose numbering starts again: start from the history
        // the server sends next.
        if (/** @type {CustomEvent} */ (ev).detail.resumed) return;
        log.replaceChildren();
        shown.clear();
      });
      s.addEventListener('chat', (ev) => add(/** @type {CustomEvent} */ (ev).detail, true));
      s.addEventListener('chat-history', (ev) => {
        for (const m of /** @type {CustomEvent} */ (ev).detail.messages) add(m, false);
      });
      s.addEventListener('error', (ev) => {
        const e = /** @type {CustomEvent} */ (ev).detail;
        if (ERRORS[e.error]) {
          errorEl.textContent = ERRORS[e.error];
          errorEl.hidden = false;
        }
      });
    },
  };
}
