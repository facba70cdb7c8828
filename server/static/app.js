// Parley chat client: a plain ES module with no build step that talks only to the public /v1 API.
// Server and user data enter the page through textContent / text nodes, never as HTML, with one
// exception: assistant replies are Markdown, rendered by ./markdown.js and sanitized there (raw
// HTML in a reply shows as text). User messages stay plain text.

import { copyCode, renderMarkdown } from './markdown.js';

const KEY_STORAGE = 'parley.apiKey';
const SELECTED_STORAGE = 'parley.selectedSession';
const RESUME_PREFIX = 'parley.resume.';
const SESSION_PAGE = 20;
const EXCHANGE_PAGE = 100;
const EXCHANGE_PAGE_CAP = 50;
const RESUME_SAVE_MS = 200;
const WATCHDOG_TICK_MS = 2000;
const WATCHDOG_IDLE_MS = 25000;
const CANCEL_SETTLE_MS = 4000;
const MAX_REJOIN_DELAY_MS = 5000;

/* ------------------------------------------------------------------------------------------ */
/* Server-Sent Events parsing, following the WHATWG event-stream rules                         */
/* ------------------------------------------------------------------------------------------ */

/** Incremental text/event-stream parser: feed decoded text, get dispatched events. */
export class SseParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.buffer = '';
    this.started = false;
    this.ended = false;
    this.eventType = '';
    this.data = [];
    this.idBuffer = '';
    this.lastEventId = '';
    this.retry = null;
  }

  /** Accepts any split of the stream: CRLF, LF or CR line ends, even a CRLF cut in two. */
  feed(text) {
    this.buffer += text;
    if (!this.started && this.buffer.length > 0) {
      this.started = true;
      if (this.buffer.charCodeAt(0) === 0xfeff) this.buffer = this.buffer.slice(1);
    }
    const lineEnd = /\r\n|\r|\n/g;
    let consumed = 0;
    let match;
    while ((match = lineEnd.exec(this.buffer)) !== null) {
      // A lone CR at the end may be the first half of a CRLF: wait for the next chunk.
      if (match[0] === '\r' && match.index === this.buffer.length - 1 && !this.ended) break;
      this.line(this.buffer.slice(consumed, match.index));
      consumed = lineEnd.lastIndex;
    }
    this.buffer = this.buffer.slice(consumed);
  }

  /** End of stream: a trailing event without its blank line is discarded, as browsers do. */
  end() {
    this.ended = true;
    this.feed('');
    this.buffer = '';
    this.data = [];
    this.eventType = '';
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line[0] === ':') {
      this.onComment(line.slice(1));
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'event') this.eventType = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.idBuffer = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    this.lastEventId = this.idBuffer;
    if (this.data.length === 0) {
      this.eventType = '';
      return;
    }
    const event = { type: this.eventType || 'message', data: this.data.join('\n'), id: this.lastEventId };
    this.eventType = '';
    this.data = [];
    this.onEvent(event);
  }
}

/** Orders Redis stream ids ("ms-seq"); unknown formats count as newer so nothing is dropped. */
export function compareEventIds(a, b) {
  const pa = /^(\d+)-(\d+)$/.exec(a);
  const pb = /^(\d+)-(\d+)$/.exec(b);
  if (!pa || !pb) return a === b ? 0 : 1;
  const ms = Number(pa[1]) - Number(pb[1]);
  return ms !== 0 ? Math.sign(ms) : Math.sign(Number(pa[2]) - Number(pb[2]));
}

/* ------------------------------------------------------------------------------------------ */
/* Storage, errors and the API client                                                          */
/* ------------------------------------------------------------------------------------------ */

const storage = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      // Storage full or disabled: resume then falls back to a replay from the start.
    }
  },
  remove(key) {
    try {
      localStorage.removeItem(key);
    } catch {
      // Nothing to clean up.
    }
  },
};

export class ApiError extends Error {
  constructor(status, code, message, { retryAfter = null, requestId = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }
}

async function errorFrom(res) {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  let requestId = res.headers.get('X-Request-Id');
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
    requestId = (body && body.requestId) || requestId;
  } catch {
    // Not a JSON envelope: keep the status line.
  }
  return new ApiError(res.status, code, message, {
    retryAfter: res.headers.get('Retry-After'),
    requestId,
  });
}

/** Turns an API failure into one plain sentence for the error banner. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err && err.message ? err.message : err}`;
  switch (err.status) {
    case 0:
      return 'Cannot reach the Parley server. Check that it is running, then try again.';
    case 401:
      return 'This server needs a valid API key. Use "API key" in the sidebar to enter one.';
    case 404:
      return 'That session no longer exists. It may have expired or been deleted.';
    case 409:
      if (err.code === 'session_busy') {
        return 'This session is busy: it is still generating a reply. Wait for it to finish or press Stop, then send again.';
      }
      return `The request conflicts with the session's state: ${err.message}`;
    case 413:
      return 'That message is too large for this server. Send something shorter.';
    case 503: {
      const wait = Number.parseInt(err.retryAfter ?? '', 10);
      const when = Number.isFinite(wait) && wait > 0 ? `in ${wait} second${wait === 1 ? '' : 's'}` : 'in a moment';
      return `The server is temporarily unavailable (it cannot reach its storage). Please try again ${when}.`;
    }
    default:
      if (err.status === 400 || err.status === 422) return `The server rejected the request: ${err.message}`;
      if (err.status >= 500) return `The server ran into an error (HTTP ${err.status}). Please try again.`;
      return err.message;
  }
}

function describeStreamError(info) {
  const raw = info && info.message ? String(info.message).trim() : '';
  const message = raw ? raw.replace(/[.!]+$/, '') : 'the model stopped unexpectedly';
  const code = info && info.code ? ` (${info.code})` : '';
  const again = info && info.retryable ? ' You can send the message again.' : '';
  return `The reply failed: ${message}${code}.${again}`;
}

let keyPrompt = null;
let keyPromptHandlers = null;

function authHeaders() {
  const key = storage.get(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch() against the API: adds the key, asks for one on 401 and retries, throws ApiError. */
async function request(method, path, body, { signal, accept } = {}) {
  for (;;) {
    const headers = { ...authHeaders() };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (accept) headers.Accept = accept;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: 'no-store',
      });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network', 'network error');
    }
    if (res.status === 401) {
      const hadKey = Boolean(storage.get(KEY_STORAGE));
      await askForKey(hadKey ? 'That key was not accepted. Enter a valid API key.' : null);
      continue;
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }
}

async function api(method, path, body) {
  const res = await request(method, path, body);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

const sessionPath = (sid, rest = '') => `/v1/sessions/${encodeURIComponent(sid)}${rest}`;

async function fetchAllExchanges(sid) {
  const all = [];
  let cursor = null;
  for (let page = 0; page < EXCHANGE_PAGE_CAP; page++) {
    const qs = new URLSearchParams({ limit: String(EXCHANGE_PAGE) });
    if (cursor) qs.set('cursor', cursor);
    const body = await api('GET', sessionPath(sid, `/exchanges?${qs}`));
    all.push(...(body.data || []));
    cursor = body.nextCursor;
    if (!cursor) break;
  }
  return all;
}

async function findExchange(sid, exchangeId) {
  const all = await fetchAllExchanges(sid);
  if (exchangeId) return all.find((x) => x.exchangeId === exchangeId) || null;
  return all.length ? all[all.length - 1] : null;
}

/* ------------------------------------------------------------------------------------------ */
/* DOM helpers                                                                                 */
/* ------------------------------------------------------------------------------------------ */

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  if (text !== null && text !== undefined) node.textContent = String(text);
  return node;
}

function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') return new Date(value < 1e12 ? value * 1000 : value);
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function relativeTime(value) {
  const date = toDate(value);
  if (!date) return '';
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds < 45) return 'just now';
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return date.toLocaleDateString(undefined, { month: 'short', day: 'numeric', year: 'numeric' });
}

const ms = (value) => `${Math.round(value)} ms`;
const count = (value) => (Number.isFinite(value) ? String(value) : '–');

/* ------------------------------------------------------------------------------------------ */
/* Page state                                                                                  */
/* ------------------------------------------------------------------------------------------ */

const state = {
  sid: null,
  session: null,
  sessions: new Map(),
  nextCursor: null,
  current: null, // view of the latest exchange: the one the ids, counters and badge refer to
  live: null, // LiveReply while a reply is streaming into the page
  loadToken: 0,
  loading: false, // the open session's history is on its way: sending now would race it
  agentsLoaded: false,
};

/* ---------- error banner ---------- */

function showError(message, code = '') {
  const banner = $('error-banner');
  $('error-text').textContent = message;
  banner.dataset.code = code || '';
  banner.hidden = false;
}

function hideError() {
  $('error-banner').hidden = true;
  $('error-text').textContent = '';
  $('error-banner').dataset.code = '';
}

function reportError(err) {
  if (err && err.name === 'AbortError') return;
  if (err instanceof ApiError) showError(describeError(err), err.code);
  else showError(describeError(err), 'client');
}

/* ---------- API key dialog ---------- */

function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve, reject) => {
    keyPromptHandlers = { resolve, reject };
  });
  openKeyDialog(reason);
  return keyPrompt;
}

function openKeyDialog(reason) {
  const error = $('key-error');
  error.textContent = reason || '';
  error.hidden = !reason;
  $('key-input').value = '';
  $('key-dialog').hidden = false;
  $('key-input').focus();
}

function closeKeyDialog(saved) {
  $('key-dialog').hidden = true;
  const handlers = keyPromptHandlers;
  keyPrompt = null;
  keyPromptHandlers = null;
  if (!handlers) return;
  if (saved) handlers.resolve();
  else handlers.reject(new ApiError(401, 'unauthorized', 'An API key is required.'));
}

function wireKeyDialog() {
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) return;
    storage.set(KEY_STORAGE, key);
    const wasAsked = Boolean(keyPromptHandlers);
    closeKeyDialog(true);
    if (!wasAsked) reloadEverything();
  });
  $('key-cancel').addEventListener('click', () => closeKeyDialog(false));
  $('key-dialog').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeKeyDialog(false);
  });
  $('change-key').addEventListener('click', () => {
    if (!keyPrompt) openKeyDialog(null);
  });
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions sidebar                                                                            */
/* ------------------------------------------------------------------------------------------ */

function sessionLabel(session) {
  return session.title && session.title.trim() ? session.title : 'Untitled session';
}

function renderSessionItem(item, session) {
  item.dataset.sessionId = session.conversationId;
  item.dataset.status = session.status || 'idle';
  const link = item.querySelector('a');
  link.href = `#s=${encodeURIComponent(session.conversationId)}`;
  link.querySelector('.session-item-title').textContent = sessionLabel(session);
  const meta = link.querySelector('.session-item-meta');
  meta.textContent = `${session.agentId} · ${relativeTime(session.createdAt)}`;
  if (session.conversationId === state.sid) item.setAttribute('aria-current', 'true');
  else item.removeAttribute('aria-current');
}

function buildSessionItem(session) {
  const item = el('li', { class: 'session-item', 'data-testid': 'session-item' });
  const link = el('a', { class: 'session-link', href: '#' });
  link.append(
    el('span', { class: 'status-dot', 'aria-hidden': 'true' }),
    el('span', { class: 'session-item-title', 'data-testid': 'session-item-title' }),
    el('span', { class: 'session-item-meta muted small' }),
  );
  link.addEventListener('click', (event) => {
    event.preventDefault();
    selectSession(item.dataset.sessionId);
  });
  item.append(link);
  renderSessionItem(item, session);
  return item;
}

function sessionItem(sid) {
  for (const item of $('session-list').children) if (item.dataset.sessionId === sid) return item;
  return null;
}

function upsertSession(session, where = 'append') {
  state.sessions.set(session.conversationId, session);
  const existing = sessionItem(session.conversationId);
  if (existing) {
    renderSessionItem(existing, session);
  } else {
    const item = buildSessionItem(session);
    if (where === 'prepend') $('session-list').prepend(item);
    else $('session-list').append(item);
  }
  $('session-list-empty').hidden = true;
}

function dropSession(sid) {
  state.sessions.delete(sid);
  const item = sessionItem(sid);
  if (item) item.remove();
  $('session-list-empty').hidden = $('session-list').children.length > 0;
}

function markSelectedItem() {
  for (const item of $('session-list').children) {
    if (item.dataset.sessionId === state.sid) item.setAttribute('aria-current', 'true');
    else item.removeAttribute('aria-current');
  }
}

async function loadSessions(more = false) {
  const qs = new URLSearchParams({ sort: 'createdAt', order: 'desc', limit: String(SESSION_PAGE) });
  if (more && state.nextCursor) qs.set('cursor', state.nextCursor);
  const button = $('load-more-sessions');
  button.disabled = true;
  try {
    const page = await api('GET', `/v1/sessions?${qs}`);
    if (!more) {
      $('session-list').replaceChildren();
      state.sessions.clear();
    }
    for (const session of page.data || []) upsertSession(session);
    state.nextCursor = page.nextCursor || null;
    button.hidden = !state.nextCursor;
    $('session-list-empty').hidden = $('session-list').children.length > 0;
    markSelectedItem();
  } catch (err) {
    reportError(err);
  } finally {
    button.disabled = false;
  }
}

/* ---------- create ---------- */

/** Offers the server's agents as a list; `data-state` on the field says when that is settled. */
async function loadAgents() {
  if (state.agentsLoaded) return;
  state.agentsLoaded = true;
  const field = $('agent-field');
  field.dataset.state = 'loading';
  try {
    await offerAgents();
  } finally {
    field.dataset.state = 'ready';
  }
}

async function offerAgents() {
  let agents;
  try {
    const body = await api('GET', '/v1/agents?limit=100');
    agents = Array.isArray(body) ? body : (body && body.data) || [];
  } catch {
    return; // No agent registry on this server (404) or not reachable: keep the text field.
  }
  const select = el('select', { id: 'new-agent', 'data-testid': 'new-agent', name: 'agentId' });
  for (const agent of agents) {
    const id = agent.agentId || agent.id;
    if (!id) continue;
    const label = agent.name && agent.name !== id ? `${agent.name} (${id})` : id;
    select.append(el('option', { value: id }, label));
  }
  if (!select.options.length) return;
  // The list may arrive after someone typed an agent id: keep that choice instead of dropping it.
  const input = $('new-agent');
  const typed = input.value.trim();
  const listed = (id) => [...select.options].some((option) => option.value === id);
  if (typed && typed !== input.defaultValue && !listed(typed)) select.append(el('option', { value: typed }, typed));
  if (listed(typed)) select.value = typed;
  else if (listed('default')) select.value = 'default';
  input.replaceWith(select);
}

function openNewSessionForm() {
  if (window.matchMedia('(max-width: 760px)').matches) openSidebar();
  const form = $('new-session-form');
  form.hidden = false;
  $('new-session-error').hidden = true;
  $('new-title').focus();
  loadAgents();
}

function closeNewSessionForm() {
  $('new-session-form').hidden = true;
}

async function createSession(event) {
  event.preventDefault();
  const error = $('new-session-error');
  error.hidden = true;
  const agentId = $('new-agent').value.trim() || 'default';
  const interval = Number($('new-interval').value);
  if (!Number.isInteger(interval) || interval < 50 || interval > 5000) {
    error.textContent = 'The refresh interval must be a whole number of milliseconds from 50 to 5000.';
    error.hidden = false;
    return;
  }
  const body = { agentId, refreshIntervalMs: interval };
  const title = $('new-title').value.trim();
  if (title) body.title = title;
  const button = $('create-session');
  button.disabled = true;
  try {
    const session = await api('POST', '/v1/sessions', body);
    upsertSession(session, 'prepend');
    $('new-title').value = '';
    closeNewSessionForm();
    await selectSession(session.conversationId, session);
    $('message-input').focus();
  } catch (err) {
    error.textContent = err instanceof ApiError ? describeError(err) : String(err);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

/* ---------- rename and delete ---------- */

function startRename() {
  if (!state.session) return;
  $('rename-input').value = state.session.title || '';
  $('session-title').hidden = true;
  $('rename-form').hidden = false;
  $('rename-input').focus();
  $('rename-input').select();
}

function endRename() {
  $('rename-form').hidden = true;
  $('session-title').hidden = false;
}

async function saveRename(event) {
  event.preventDefault();
  const sid = state.sid;
  const title = $('rename-input').value.trim();
  if (!sid || !title) return;
  try {
    const session = await api('PATCH', sessionPath(sid), { title });
    if (state.sid === sid) {
      state.session = session || { ...state.session, title };
      renderHeader();
    }
    upsertSession(session || { ...state.sessions.get(sid), title });
    endRename();
  } catch (err) {
    reportError(err);
  }
}

async function deleteSession() {
  const sid = state.sid;
  if (!sid) return;
  $('delete-confirm').hidden = true;
  $('delete-session').hidden = false;
  try {
    await api('DELETE', sessionPath(sid));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) {
      reportError(err);
      return;
    }
  }
  storage.remove(RESUME_PREFIX + sid);
  dropSession(sid);
  if (state.sid === sid) clearSelection();
}

/* ------------------------------------------------------------------------------------------ */
/* Conversation view                                                                           */
/* ------------------------------------------------------------------------------------------ */

function renderHeader() {
  const session = state.session;
  const title = $('session-title');
  const meta = $('session-meta');
  $('session-actions').hidden = !session;
  if (!session) {
    title.textContent = 'Parley';
    meta.replaceChildren();
    return;
  }
  title.textContent = sessionLabel(session);
  const { messages, tokens } = headerCounts(session);
  const parts = [
    `agent ${session.agentId}${session.agentVersion ? ` v${session.agentVersion}` : ''}`,
    `refresh ${session.refreshIntervalMs} ms`,
    `${messages} message${messages === 1 ? '' : 's'}`,
    `${tokens} tokens`,
  ];
  meta.replaceChildren(
    el('span', {}, parts.join(' · ')),
    document.createTextNode(' · '),
    el('code', { class: 'session-id', 'data-testid': 'session-id', title: 'conversationId' }, session.conversationId),
  );
}

/** While a reply streams, the session's counts are its counts without that reply, plus the reply. */
function headerCounts(session) {
  const live = state.live;
  if (live && live.active && live.sid === session.conversationId && live.base) {
    const streamed = live.usage ? live.usage.totalTokens ?? 0 : 0;
    return { messages: live.base.messages + 1, tokens: live.base.tokens + streamed };
  }
  return { messages: session.messageCount ?? 0, tokens: (session.usage || {}).totalTokens ?? 0 };
}

function setBadge(view, status) {
  view.status = status;
  view.badge.dataset.status = status;
  view.badge.textContent = status;
  view.reply.dataset.status = status;
  view.wrap.dataset.status = status;
}

function setReplyUsage(view, usage) {
  view.usage = usage || null;
  view.tokens.textContent = usage ? `${usage.inputTokens ?? 0} in · ${usage.outputTokens ?? 0} out` : '';
  if (view === state.current) renderCounters(usage);
}

function setReplyText(view, text) {
  view.source = text;
  renderReply(view);
}

/** Streamed text: the whole reply's Markdown is rendered again, at most once per frame. */
function appendReplyText(view, piece) {
  view.source += piece;
  if (!view.frame) view.frame = requestAnimationFrame(() => renderReply(view));
}

/** Keeps the reader's place: follows the bottom only when they were there. */
function renderReply(view) {
  if (view.frame) cancelAnimationFrame(view.frame);
  view.frame = 0;
  if (!view.wrap.isConnected) {
    view.text.replaceChildren(renderMarkdown(view.source));
    return;
  }
  const box = $('conversation');
  const stick = nearBottom();
  const top = box.scrollTop;
  view.text.replaceChildren(renderMarkdown(view.source));
  if (stick) scrollToBottom();
  else box.scrollTop = top;
}

function setNote(view, text, kind = '') {
  view.note.textContent = text || '';
  view.note.hidden = !text;
  view.note.dataset.kind = kind;
}

function exchangeView(exchange) {
  const wrap = el('article', { class: 'exchange', 'data-testid': 'exchange' });
  const user = el('div', { class: 'msg msg-user', 'data-testid': 'user-message' });
  const userText = el('div', { class: 'bubble', 'data-testid': 'user-text' });
  user.append(userText);

  const reply = el('div', { class: 'msg msg-reply', 'data-testid': 'reply' });
  const head = el('div', { class: 'reply-head' });
  const who = el('span', { class: 'reply-who' }, (state.session && state.session.agentId) || 'agent');
  const badge = el('span', { class: 'badge', 'data-testid': 'reply-status' });
  const tokens = el('span', { class: 'reply-tokens muted small', 'data-testid': 'reply-usage' });
  head.append(who, badge, tokens);
  const text = el('div', { class: 'bubble reply-text', 'data-testid': 'reply-text' });
  const note = el('p', { class: 'reply-note small', 'data-testid': 'reply-note', hidden: true });
  reply.append(head, text, note);
  wrap.append(user, reply);

  const view = { wrap, user, userText, reply, badge, tokens, text, note, source: '', frame: 0, status: null, usage: null };
  wrap.__view = view;
  fillView(view, exchange);
  return view;
}

function fillView(view, exchange) {
  if (exchange.exchangeId) view.wrap.dataset.exchangeId = exchange.exchangeId;
  const userText = exchange.userInput ? exchange.userInput.text : '';
  if (userText || !view.userText.textContent) view.userText.textContent = userText || '';
  view.user.hidden = !view.userText.textContent;
  setReplyText(view, exchange.response ? exchange.response.text || '' : '');
  setBadge(view, exchange.status || 'completed');
  setReplyUsage(view, exchange.usage);
  if (exchange.status === 'failed') {
    const info = exchange.error || {};
    setNote(view, describeStreamError(info), 'error');
  } else if (exchange.status === 'cancelled') {
    setNote(view, 'Stopped. The reply above is partial.', 'cancelled');
  } else {
    setNote(view, '');
  }
}

/** The latest exchange owns the stable ids the tests and counters refer to. */
function markCurrent(view) {
  const previous = state.current;
  if (previous && previous !== view) {
    previous.reply.removeAttribute('id');
    previous.text.removeAttribute('id');
    previous.badge.removeAttribute('id');
  }
  state.current = view;
  if (!view) {
    renderCounters(null);
    return;
  }
  view.reply.id = 'current-reply';
  view.text.id = 'current-reply-text';
  view.badge.id = 'current-reply-status';
  renderCounters(view.usage);
}

function appendExchange(exchange) {
  const view = exchangeView(exchange);
  $('messages').append(view.wrap);
  $('empty-state').hidden = true;
  markCurrent(view);
  return view;
}

function lastViewInPage() {
  const last = $('messages').lastElementChild;
  return last && last.__view ? last.__view : null;
}

function renderCounters(usage) {
  $('stats').hidden = !state.sid;
  $('usage-input').textContent = usage ? count(usage.inputTokens) : '–';
  $('usage-output').textContent = usage ? count(usage.outputTokens) : '–';
  $('usage-total').textContent = usage ? count(usage.totalTokens) : '–';
}

function resetLiveStats(mode = '') {
  const target = state.session ? `target ${state.session.refreshIntervalMs} ms` : '';
  $('stat-mode').textContent = [mode, mode ? target : ''].filter(Boolean).join(' · ');
  $('stat-ttfd').textContent = '–';
  $('stat-interval').textContent = '–';
  $('stat-interval-avg').textContent = '–';
  $('stat-deltas').textContent = '–';
}

function nearBottom() {
  const box = $('conversation');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

function scrollToBottom() {
  const box = $('conversation');
  box.scrollTop = box.scrollHeight;
}

/** Until the history is in, a reply sent now would be wiped out by it: hold the Send button. */
function setLoading(on) {
  state.loading = on;
  $('send-button').disabled = on;
}

function setGenerating(on) {
  $('send-button').hidden = on;
  $('stop-button').hidden = !on;
  $('stop-button').disabled = false;
  $('stop-button').textContent = 'Stop';
  document.body.dataset.generating = on ? 'true' : 'false';
}

/* ------------------------------------------------------------------------------------------ */
/* A reply streaming into the page                                                             */
/* ------------------------------------------------------------------------------------------ */

class LiveReply {
  constructor(view, { sid, text = '', usage = null, lastEventId = null, exchangeId = null, mode, base = null }) {
    this.view = view;
    this.sid = sid;
    this.base = base; // the session's counts without this reply, for the header
    this.text = text;
    this.usage = usage;
    this.lastEventId = lastEventId;
    this.exchangeId = exchangeId;
    this.mode = mode;
    this.ended = false;
    this.detached = false;
    this.controller = new AbortController();
    this.es = null;
    this.retryMs = 1000;
    this.rejoins = 0;
    this.duplicatesDropped = 0;
    this.startedAt = performance.now();
    this.firstDeltaAt = null;
    this.prevDeltaAt = null;
    this.deltas = 0;
    this.lastActivity = performance.now();
    this.saveTimer = null;
    this.checking = false;
    this.watchdog = setInterval(() => this.checkIdle(), WATCHDOG_TICK_MS);
    setReplyText(view, text);
    if (usage) setReplyUsage(view, usage);
    if (exchangeId) view.wrap.dataset.exchangeId = exchangeId;
    setBadge(view, 'running');
    setNote(view, '');
    resetLiveStats(mode);
    setGenerating(true);
    const item = sessionItem(sid);
    if (item) item.dataset.status = 'running';
  }

  get active() {
    return !this.ended && !this.detached;
  }

  touch() {
    this.lastActivity = performance.now();
  }

  restartClock(mode) {
    this.mode = mode;
    this.startedAt = performance.now();
    this.firstDeltaAt = null;
    this.prevDeltaAt = null;
    this.deltas = 0;
    resetLiveStats(mode);
  }

  handle(event) {
    if (!this.active) return;
    this.touch();
    if ($('error-banner').dataset.code === 'reconnecting') hideError();
    let data = null;
    try {
      data = event.data ? JSON.parse(event.data) : null;
    } catch {
      data = null;
    }
    if (event.type === 'started') this.started(data || {});
    else if (event.type === 'delta' && data) this.delta(data, event.id);
    else if (event.type === 'done') this.finish(data && data.response ? data : null, null);
    else if (event.type === 'error') this.finish(data && data.exchange ? data.exchange : null, data || {});
    else if (event.type === 'reconnect') this.reconnectAsked = true;
  }

  started(data) {
    if (data.exchangeId && !this.exchangeId) {
      this.exchangeId = data.exchangeId;
      this.view.wrap.dataset.exchangeId = data.exchangeId;
    }
  }

  delta(data, id) {
    if (id && this.lastEventId && compareEventIds(id, this.lastEventId) <= 0) {
      // Already shown: a replay overlapping what we have. Never render text twice.
      this.duplicatesDropped += 1;
      this.view.reply.dataset.duplicatesDropped = String(this.duplicatesDropped);
      return;
    }
    const now = performance.now();
    if (id) this.lastEventId = id;
    const piece = typeof data.text === 'string' ? data.text : '';
    this.text += piece;
    appendReplyText(this.view, piece);
    if (data.usage) {
      this.usage = data.usage;
      setReplyUsage(this.view, data.usage);
      if (state.live === this) renderHeader();
    }
    this.recordTiming(now);
    this.scheduleSave();
  }

  recordTiming(now) {
    this.deltas += 1;
    if (this.firstDeltaAt === null) {
      this.firstDeltaAt = now;
      $('stat-ttfd').textContent = ms(now - this.startedAt);
    } else {
      $('stat-interval').textContent = ms(now - this.prevDeltaAt);
      $('stat-interval-avg').textContent = ms((now - this.firstDeltaAt) / (this.deltas - 1));
    }
    this.prevDeltaAt = now;
    $('stat-deltas').textContent = String(this.deltas);
  }

  scheduleSave() {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.saveResume();
    }, RESUME_SAVE_MS);
  }

  /** Text and event id are written together, so a resume from this record is always exact. */
  saveResume() {
    if (!this.active || !this.exchangeId || !this.lastEventId) return;
    storage.set(
      RESUME_PREFIX + this.sid,
      JSON.stringify({ exchangeId: this.exchangeId, eventId: this.lastEventId, text: this.text, usage: this.usage }),
    );
  }

  finish(exchange, error, { fromStream = true } = {}) {
    if (!this.active) return;
    this.ended = true;
    this.stopTimers();
    if (this.es) this.es.close();
    this.controller.abort();
    storage.remove(RESUME_PREFIX + this.sid);
    const stick = nearBottom();
    this.adoptExistingView(exchange);
    if (exchange) {
      if (fromStream && exchange.response && exchange.response.text !== this.text) {
        this.view.reply.dataset.streamMismatch = 'true';
        console.warn('Parley: streamed text differs from the stored exchange; showing the stored text.');
      }
      fillView(this.view, exchange);
      this.usage = exchange.usage || this.usage;
    } else {
      setBadge(this.view, error ? 'failed' : 'completed');
    }
    if (error) {
      setBadge(this.view, 'failed');
      setNote(this.view, describeStreamError(error), 'error');
      showError(describeStreamError(error), error.code || 'stream_error');
    }
    if (state.live === this) {
      state.live = null;
      this.foldIntoSession();
      setGenerating(false);
      refreshSessionMeta(this.sid);
    }
    if (stick) scrollToBottom();
  }

  /** Until the session is read again, the header keeps the counts the stream brought it to. */
  foldIntoSession() {
    const session = state.session;
    if (!this.base || !session || session.conversationId !== this.sid) return;
    const tokens = this.base.tokens + (this.usage ? this.usage.totalTokens ?? 0 : 0);
    const usage = { ...(session.usage || {}), totalTokens: tokens };
    state.session = { ...session, messageCount: this.base.messages + 1, usage };
    renderHeader();
  }

  /** A placeholder (joined before its exchange was known) must not duplicate a shown exchange. */
  adoptExistingView(exchange) {
    if (!exchange || !exchange.exchangeId) return;
    for (const node of $('messages').children) {
      if (node === this.view.wrap || node.dataset.exchangeId !== exchange.exchangeId || !node.__view) continue;
      this.view.wrap.remove();
      this.view = node.__view;
      markCurrent(this.view);
      return;
    }
  }

  /** The stored exchange is the truth when the stream ended without its final event. */
  settleFrom(exchange) {
    if (!this.active) return;
    if (exchange) {
      this.finish(exchange, exchange.status === 'failed' ? exchange.error || {} : null, { fromStream: false });
    } else {
      this.finish(null, null, { fromStream: false });
      setBadge(this.view, this.text ? 'completed' : 'failed');
    }
  }

  detach() {
    if (this.detached || this.ended) return;
    this.saveResume();
    this.detached = true;
    this.stopTimers();
    if (this.es) this.es.close();
    this.controller.abort();
  }

  stopTimers() {
    clearInterval(this.watchdog);
    clearTimeout(this.saveTimer);
    clearTimeout(this.rejoinTimer);
    clearTimeout(this.cancelTimer);
    this.saveTimer = null;
  }

  /** Never hang in "running": when nothing arrives for a while, ask the server what happened. */
  async checkIdle() {
    if (!this.active || this.checking) return;
    if (performance.now() - this.lastActivity < WATCHDOG_IDLE_MS) return;
    await this.checkServer();
    this.touch();
  }

  async checkServer() {
    if (!this.active || this.checking) return 'inactive';
    this.checking = true;
    try {
      const exchange = await findExchange(this.sid, this.exchangeId);
      if (!this.active) return 'inactive';
      if (!exchange || exchange.status !== 'running') {
        this.settleFrom(exchange);
        return 'settled';
      }
      if (!this.exchangeId) this.exchangeId = exchange.exchangeId;
      return 'running';
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.settleFrom(null);
        return 'settled';
      }
      return 'unknown';
    } finally {
      this.checking = false;
    }
  }
}

function startLive(view, options) {
  if (state.live) state.live.detach();
  const live = new LiveReply(view, options);
  state.live = live;
  renderHeader();
  return live;
}

/** Reads a fetch() SSE body into the live reply; resolves when the body ends or is aborted. */
async function pump(res, live) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser(
    (event) => live.handle(event),
    () => live.touch(),
  );
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      live.touch();
      parser.feed(decoder.decode(value, { stream: true }));
      if (!live.active) break;
    }
    parser.feed(decoder.decode());
    parser.end();
  } catch {
    // Aborted by us, or the connection dropped: the caller decides from the live state.
  } finally {
    if (parser.retry !== null) live.retryMs = parser.retry;
    reader.cancel().catch(() => {});
  }
}

/** EventSource cannot send an Authorization header, and a key in a URL ends up in logs: it
 * passes a short-lived token for this one session instead, fetched with the key in the header. */
async function streamToken(sid) {
  const issued = await api('POST', sessionPath(sid, '/streamTokens'));
  return issued.token;
}

/** Joins (or resumes) the session's stream with EventSource, replay first, then live. */
async function joinStream(live) {
  if (!live.active) return;
  let token;
  try {
    token = await streamToken(live.sid);
  } catch {
    afterDrop(live); // the same as a stream that failed to open: ask the server, retry or settle
    return;
  }
  if (!live.active || live.es) return;
  const qs = new URLSearchParams({ token });
  if (live.lastEventId) qs.set('lastEventId', live.lastEventId); // Last-Event-ID across a page reload.
  else if (live.text) {
    // Text without an id cannot be resumed exactly: take the whole reply from the replay.
    live.text = '';
    setReplyText(live.view, '');
  }
  const es = new EventSource(sessionPath(live.sid, `/stream?${qs}`));
  live.es = es;
  live.restartClock(live.lastEventId ? 'resumed · EventSource' : 'joined · EventSource');
  const forward = (event) => {
    if (live.es !== es) return;
    live.handle({ type: event.type, data: event.data, id: event.lastEventId });
  };
  for (const type of ['started', 'delta', 'done']) es.addEventListener(type, forward);
  es.addEventListener('open', () => live.touch());
  es.addEventListener('reconnect', () => {
    if (live.es !== es) return;
    es.close();
    live.es = null;
    scheduleRejoin(live, live.retryMs);
  });
  es.addEventListener('error', (event) => {
    if (live.es !== es) return;
    if (event instanceof MessageEvent) {
      forward(event); // the server's own `event: error`
      return;
    }
    // Closed (204, HTTP error) or dropped: decide ourselves, resuming from our last id.
    es.close();
    live.es = null;
    afterDrop(live);
  });
}

function scheduleRejoin(live, delay) {
  if (!live.active) return;
  clearTimeout(live.rejoinTimer);
  live.rejoinTimer = setTimeout(() => joinStream(live), delay);
}

/** A stream ended without done/error: resume if the exchange still runs, else show the stored one. */
async function afterDrop(live) {
  if (!live.active) return;
  live.rejoins += 1;
  const outcome = await live.checkServer();
  if (outcome === 'running' || outcome === 'unknown') {
    const delay = Math.min(live.retryMs * 2 ** Math.min(live.rejoins - 1, 4), MAX_REJOIN_DELAY_MS);
    if (outcome === 'unknown' && live.rejoins > 2) {
      showError('Lost the connection to the server. Retrying…', 'reconnecting');
    }
    scheduleRejoin(live, delay);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Sending and stopping                                                                        */
/* ------------------------------------------------------------------------------------------ */

async function send() {
  const sid = state.sid;
  const input = $('message-input');
  const text = input.value;
  if (!sid || !text.trim() || state.live || state.loading) return;
  hideError();
  input.value = '';
  autosize();
  const previous = state.current;
  const view = appendExchange({ userInput: { text }, response: { text: '' }, status: 'running', usage: null });
  const base = state.session ? headerCounts(state.session) : null;
  const live = startLive(view, { sid, mode: 'fetch stream', base });
  scrollToBottom();
  let res;
  try {
    res = await request('POST', sessionPath(sid, '/streamingContinue'), { userInput: { text } }, {
      signal: live.controller.signal,
      accept: 'text/event-stream',
    });
  } catch (err) {
    if (live.detached) return;
    abandon(live, previous);
    if (!input.value) input.value = text;
    autosize();
    reportError(err);
    if (err instanceof ApiError && err.status === 409) openSession(sid, { keepBanner: true });
    return;
  }
  await pump(res, live);
  if (!live.active) return;
  if (live.reconnectAsked) scheduleRejoin(live, live.retryMs);
  else afterDrop(live);
}

/** The request never started an exchange: take its placeholder out again. */
function abandon(live, previous) {
  live.ended = true;
  live.stopTimers();
  live.view.wrap.remove();
  if (state.live === live) state.live = null;
  setGenerating(false);
  resetLiveStats('');
  markCurrent(previous && previous.wrap.isConnected ? previous : lastViewInPage());
  $('empty-state').hidden = $('messages').children.length > 0;
}

async function stop() {
  const live = state.live;
  if (!live || !live.active) return;
  const button = $('stop-button');
  button.disabled = true;
  button.textContent = 'Stopping…';
  live.view.reply.dataset.cancelling = 'true';
  try {
    await api('POST', sessionPath(live.sid, '/cancel'), live.exchangeId ? { messageId: live.exchangeId } : {});
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) {
      // 409 means it had already ended: its final event is on the way.
      reportError(err);
      button.disabled = false;
      button.textContent = 'Stop';
      return;
    }
  }
  clearTimeout(live.cancelTimer);
  live.cancelTimer = setTimeout(() => live.checkServer(), CANCEL_SETTLE_MS);
}

/* ------------------------------------------------------------------------------------------ */
/* Selecting a session and rejoining a running reply                                           */
/* ------------------------------------------------------------------------------------------ */

function loadResume(sid) {
  try {
    const record = JSON.parse(storage.get(RESUME_PREFIX + sid) || 'null');
    if (record && typeof record.exchangeId === 'string' && typeof record.eventId === 'string') return record;
  } catch {
    // A damaged record: replay from the start instead.
  }
  return null;
}

function clearSelection() {
  if (state.live) state.live.detach();
  state.live = null;
  state.sid = null;
  state.session = null;
  state.loadToken += 1;
  setLoading(false);
  storage.remove(SELECTED_STORAGE);
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  $('messages').replaceChildren();
  markCurrent(null);
  renderHeader();
  endRename();
  setGenerating(false);
  resetLiveStats('');
  $('composer').hidden = true;
  $('stats').hidden = true;
  $('empty-state').hidden = false;
  markSelectedItem();
}

async function selectSession(sid, known = null) {
  closeSidebar();
  if (sid === state.sid && known === null) return;
  await openSession(sid, { known });
}

async function openSession(sid, { known = null, keepBanner = false } = {}) {
  if (state.live) state.live.detach();
  state.live = null;
  if (!keepBanner) hideError();
  const token = ++state.loadToken;
  setLoading(true);
  const switching = state.sid !== sid;
  state.sid = sid;
  if (switching || known) state.session = known;
  storage.set(SELECTED_STORAGE, sid);
  const hash = `#s=${encodeURIComponent(sid)}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
  markSelectedItem();
  endRename();
  $('delete-confirm').hidden = true;
  $('delete-session').hidden = false;
  renderHeader();
  setGenerating(false);
  resetLiveStats('');
  if (switching) {
    // A refresh of the same session keeps its messages on screen until the new ones arrive.
    $('messages').replaceChildren();
    markCurrent(null);
    $('history-loading').hidden = false;
  }
  $('empty-state').hidden = true;
  $('composer').hidden = false;
  $('stats').hidden = false;
  let session;
  let exchanges;
  try {
    [session, exchanges] = await Promise.all([api('GET', sessionPath(sid)), fetchAllExchanges(sid)]);
  } catch (err) {
    if (token !== state.loadToken) return;
    $('history-loading').hidden = true;
    setLoading(false);
    if (err instanceof ApiError && err.status === 404) {
      dropSession(sid);
      storage.remove(RESUME_PREFIX + sid);
      clearSelection();
    }
    reportError(err);
    return;
  }
  if (token !== state.loadToken) return;
  $('history-loading').hidden = true;
  setLoading(false);
  state.session = session;
  upsertSession(session);
  markSelectedItem();
  renderHeader();
  renderHistory(sid, session, exchanges);
}

function renderHistory(sid, session, exchanges) {
  const views = exchanges.map(exchangeView);
  $('messages').replaceChildren(...views.map((view) => view.wrap));
  markCurrent(views.length ? views[views.length - 1] : null);
  const running = [...exchanges].reverse().find((exchange) => exchange.status === 'running');
  if (running || session.status === 'running') {
    rejoin(sid, session, running ? views[exchanges.indexOf(running)] : null, running);
  }
  else storage.remove(RESUME_PREFIX + sid);
  scrollToBottom();
}

/** After a reload: continue from the stored event id, or replay the whole reply from its start. */
function rejoin(sid, session, view, running) {
  let target = view;
  if (!target) {
    target = appendExchange({ userInput: { text: '' }, response: { text: '' }, status: 'running', usage: null });
  } else {
    markCurrent(target);
  }
  const record = loadResume(sid);
  const exact = record && running && record.exchangeId === running.exchangeId;
  if (record && !exact) storage.remove(RESUME_PREFIX + sid);
  // The session was read with this reply in it: its counts without the reply are the base.
  const runningTokens = running && running.usage ? running.usage.totalTokens ?? 0 : 0;
  const base = {
    messages: Math.max(0, (session.messageCount ?? 0) - 1),
    tokens: Math.max(0, ((session.usage || {}).totalTokens ?? 0) - runningTokens),
  };
  const live = startLive(target, {
    sid,
    mode: 'joining',
    base,
    exchangeId: running ? running.exchangeId : null,
    text: exact ? record.text || '' : '',
    usage: exact ? record.usage || null : null,
    lastEventId: exact ? record.eventId : null,
  });
  joinStream(live);
}

async function refreshSessionMeta(sid) {
  try {
    const session = await api('GET', sessionPath(sid));
    upsertSession(session);
    if (state.sid === sid) {
      state.session = session;
      renderHeader();
    }
  } catch {
    // The header just stays as it was; the next action will report a real problem.
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Layout, keyboard and start-up                                                               */
/* ------------------------------------------------------------------------------------------ */

function openSidebar() {
  document.body.classList.add('sidebar-open');
  $('scrim').hidden = !window.matchMedia('(max-width: 760px)').matches;
  $('sidebar-toggle').setAttribute('aria-expanded', 'true');
}

function closeSidebar() {
  document.body.classList.remove('sidebar-open');
  $('scrim').hidden = true;
  $('sidebar-toggle').setAttribute('aria-expanded', 'false');
}

function autosize() {
  const input = $('message-input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 220)}px`;
}

function sessionFromHash() {
  const match = /^#s=([^&]+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function reloadEverything() {
  await loadSessions(false);
  const sid = sessionFromHash() || storage.get(SELECTED_STORAGE);
  if (sid) await openSession(sid, { keepBanner: true });
}

function wire() {
  wireKeyDialog();
  $('new-session').addEventListener('click', openNewSessionForm);
  $('empty-new-session').addEventListener('click', openNewSessionForm);
  $('cancel-new-session').addEventListener('click', closeNewSessionForm);
  $('new-session-form').addEventListener('submit', createSession);
  $('new-session-form').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeNewSessionForm();
  });
  $('load-more-sessions').addEventListener('click', () => loadSessions(true));
  $('rename-session').addEventListener('click', startRename);
  $('rename-form').addEventListener('submit', saveRename);
  $('rename-cancel').addEventListener('click', endRename);
  $('rename-input').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') endRename();
  });
  $('delete-session').addEventListener('click', () => {
    $('delete-session').hidden = true;
    $('delete-confirm').hidden = false;
    $('delete-confirm-no').focus();
  });
  $('delete-confirm-no').addEventListener('click', () => {
    $('delete-confirm').hidden = true;
    $('delete-session').hidden = false;
  });
  $('delete-confirm-yes').addEventListener('click', deleteSession);
  $('error-dismiss').addEventListener('click', hideError);
  $('sidebar-toggle').addEventListener('click', () => {
    if (document.body.classList.contains('sidebar-open')) closeSidebar();
    else openSidebar();
  });
  $('scrim').addEventListener('click', closeSidebar);

  const input = $('message-input');
  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  input.addEventListener('input', autosize);
  $('stop-button').addEventListener('click', stop);
  $('messages').addEventListener('click', (event) => {
    const button = event.target.closest('.copy-code');
    if (button) copyCode(button);
  });

  window.addEventListener('hashchange', () => {
    const sid = sessionFromHash();
    if (sid && sid !== state.sid) selectSession(sid);
  });
  window.addEventListener('pagehide', () => {
    if (state.live) state.live.saveResume();
  });
}

function main() {
  wire();
  setGenerating(false);
  reloadEverything();
}

if (typeof document !== 'undefined') main();
