// The demo chat page: everything it does goes through the SDK
// (./sdk/index.js, the files of clients/js/src served by the gateway).
//
// URL parameters: ?user=NAME enters at once; ?transport=sse forces the
// Server-Sent Events fallback; ?server=ws://host:port/ws talks to another
// gateway. The tab's device id lives in sessionStorage, so a reload is the
// same device: its outbox (IndexedDB) is resent with the same ids.
import { ChatClient, dmChannel } from './sdk/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** @type {ChatClient} */
let client = null;
let me = null;
let current = null;
/** channel name -> view state */
const chans = new Map();

function deviceId() {
  let d = sessionStorage.getItem('chatgw-device');
  if (!d) {
    d = `web-${Math.random().toString(36).slice(2, 10)}`;
    sessionStorage.setItem('chatgw-device', d);
  }
  return d;
}

function savedRooms() {
  try {
    return JSON.parse(localStorage.getItem(`chatgw-rooms:${me}`) ?? '[]');
  } catch {
    return [];
  }
}

function saveRooms() {
  const rooms = [...chans.values()].filter((c) => c.kind === 'room').map((c) => c.name);
  localStorage.setItem(`chatgw-rooms:${me}`, JSON.stringify(rooms));
}

// ------------------------------------------------------------- channels --

function titleOf(c) {
  if (c.kind === 'room') return c.name.slice('room:'.length);
  if (c.kind === 'dm') return c.name.split(':').slice(1).find((u) => u !== me) ?? me;
  const others = c.members.filter((u) => u !== me);
  return others.length ? others.join(', ') : 'group';
}

function ensureChannel(name, kind, info = {}) {
  let c = chans.get(name);
  if (!c) {
    c = {
      name,
      kind,
      members: info.members ?? [],
      msgs: new Map(), // seq -> msg (text and media; edits and deletes applied)
      pending: new Map(), // client_msg_id -> {text, status}
      loaded: false,
      hasMore: false,
      loadingOlder: false,
      unread: 0,
      readBy: new Map(), // user -> seq
      typing: new Map(), // user -> until (ms)
      online: new Set(),
    };
    chans.set(name, c);
    client.join(name).catch(() => {});
    if (kind === 'room') saveRooms();
    if (kind !== 'room') refreshPresence(c);
  }
  if (info.members) c.members = info.members;
  if (info.unread !== undefined && c !== current) c.unread = info.unread;
  renderSidebar();
  return c;
}

async function refreshPresence(c) {
  try {
    const p = await client.presence(c.name);
    c.online = new Set(p.online);
    c.onlineCount = p.count;
    renderSidebar();
    if (c === current) renderHeader();
  } catch {
    // not connected yet: presence events will tell
  }
}

async function refreshChannels() {
  try {
    const [list, unread] = await Promise.all([client.channels(), client.unread()]);
    for (const info of list) ensureChannel(info.channel, info.kind, info);
    for (const [name, n] of Object.entries(unread)) {
      const c = chans.get(name);
      if (c && c !== current) c.unread = n;
    }
    renderSidebar();
  } catch {
    // retried at the next `open`
  }
}

async function openChannel(name) {
  const c = chans.get(name);
  if (!c) return;
  current = c;
  c.unread = 0;
  renderSidebar();
  renderHeader();
  renderMessages({ toBottom: true });
  $('text').focus();
  if (!c.loaded) {
    try {
      const page = await client.history(name, { limit: 50 });
      mergeHistory(c, page.messages);
      c.loaded = true;
      c.hasMore = page.has_more;
    } catch (e) {
      showBanner(`Could not load history: ${e.message}`, 'error', 4000);
    }
    if (current === c) renderMessages({ toBottom: true });
  }
  markRead(c);
  if (c.kind === 'room') refreshPresence(c);
}

async function loadOlder(c) {
  if (c.loadingOlder || !c.hasMore) return;
  c.loadingOlder = true;
  const oldest = Math.min(...c.msgs.keys());
  try {
    const page = await client.history(c.name, { before: oldest, limit: 50 });
    mergeHistory(c, page.messages);
    c.hasMore = page.has_more;
  } finally {
    c.loadingOlder = false;
  }
  if (c === current) renderMessages({ keepPosition: true });
}

function mergeHistory(c, messages) {
  for (const m of messages) {
    if (m.kind === 'edit' || m.kind === 'delete') continue; // already applied to their targets
    c.msgs.set(m.seq, m);
    if (m.from === me && m.device === client.device) c.pending.delete(m.client_msg_id);
  }
}

function markRead(c) {
  if (c !== current || document.visibilityState === 'hidden' || c.msgs.size === 0) return;
  const last = Math.max(...c.msgs.keys());
  if (last > (c.readSent ?? 0)) {
    c.readSent = last;
    client.markRead(c.name, last).catch(() => {});
  }
}

// -------------------------------------------------------------- events --

function onMessage(m) {
  const c = chans.get(m.channel);
  if (!c) return;
  if (m.kind === 'edit' || m.kind === 'delete') {
    const target = c.msgs.get(m.target);
    if (target) {
      if (m.kind === 'edit') Object.assign(target, { text: m.text, edited: true });
      else Object.assign(target, { text: undefined, deleted: true });
    }
  } else {
    c.msgs.set(m.seq, m);
    const own = m.from === me && m.device === client.device;
    if (own) c.pending.delete(m.client_msg_id);
    if (m.from !== me && c !== current) c.unread++;
    c.typing.delete(m.from);
  }
  if (c === current) {
    renderMessages();
    markRead(c);
  }
  renderSidebar();
}

function send(text) {
  const c = current;
  if (!c || !text.trim()) return;
  const p = client.send(c.name, text);
  c.pending.set(p.clientMsgId, { text, status: 'sending' });
  p.then(
    () => {
      const pend = c.pending.get(p.clientMsgId);
      if (pend) pend.status = 'sent';
      if (c === current) renderMessages();
    },
    (e) => {
      c.pending.delete(p.clientMsgId);
      showBanner(`Not sent: ${e.message}`, 'error', 5000);
      if (c === current) renderMessages();
    },
  );
  renderMessages({ toBottom: true });
  return p;
}

function wire() {
  client.on('hello', (h) => {
    me = h.user;
    $('me-name').textContent = h.user;
  });
  client.on('message', onMessage);
  client.on('state', ({ state, transport, reason, delayMs }) => {
    $('me-dot').classList.toggle('online', state === 'open');
    $('conn-status').textContent = state === 'open' ? `connected · ${transport === 'sse' ? 'SSE' : 'WebSocket'}` : state;
    if (state === 'open') {
      hideBanner();
      refreshChannels();
      for (const c of chans.values()) if (c.kind !== 'room') refreshPresence(c);
    } else if (state === 'reconnecting') {
      const when = delayMs ? ` in ${(delayMs / 1000).toFixed(1)} s` : '';
      showBanner(`Reconnecting${when}… ${reason ?? ''} Messages you send now are kept and sent when back.`, 'warn');
    } else if (state === 'closed') {
      showBanner(`Disconnected: ${reason ?? 'closed'}.`, 'error', 0, 'Reconnect', () => client.connect());
    } else if (state === 'connecting') {
      showBanner('Connecting…', 'warn');
    }
  });
  client.on('typing', ({ channel, user }) => {
    const c = chans.get(channel);
    if (!c || user === me) return;
    c.typing.set(user, Date.now() + 3500);
    if (c === current) renderTyping();
  });
  client.on('presence', ({ channel, user, status }) => {
    const c = chans.get(channel);
    if (!c) return;
    if (status === 'online') c.online.add(user);
    else c.online.delete(user);
    renderSidebar();
    if (c === current) renderHeader();
  });
  client.on('read', ({ channel, user, seq }) => {
    const c = chans.get(channel);
    if (!c) return;
    c.readBy.set(user, Math.max(seq, c.readBy.get(user) ?? 0));
    if (c === current) renderMessages();
  });
  client.on('channel_added', ({ channel, kind }) => {
    ensureChannel(channel, kind);
    refreshChannels();
  });
  client.on('left', ({ channel }) => {
    const c = chans.get(channel);
    if (!c) return;
    chans.delete(channel);
    if (current === c) current = null;
    renderSidebar();
    showBanner(`You left ${titleOf(c)}.`, 'warn', 4000);
  });
  client.on('join_failed', ({ channel, error }) => {
    chans.delete(channel);
    if (current?.name === channel) current = null;
    saveRooms();
    renderSidebar();
    showBanner(`Cannot open ${channel}: ${error.message}`, 'error', 5000);
  });
  client.on('send_failed', ({ entry, error }) => {
    chans.get(entry.channel)?.pending.delete(entry.client_msg_id);
    showBanner(`Not sent: ${error.message}`, 'error', 5000);
  });
}

// ------------------------------------------------------------ rendering --

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const sidebarItems = new Map();

function renderSidebar() {
  for (const [kind, list] of [['room', 'rooms'], ['dm', 'dms'], ['group', 'groups']]) {
    const items = [...chans.values()].filter((c) => c.kind === kind).sort((a, b) => titleOf(a).localeCompare(titleOf(b)));
    $(list).replaceChildren(
      ...items.map((c) => {
        let dot;
        if (kind === 'room') dot = el('span', { class: 'dot hash' }, '#');
        else if (kind === 'dm') {
          const peer = titleOf(c);
          dot = el('span', { class: `dot${c.online.has(peer) ? ' online' : ''}`, title: c.online.has(peer) ? 'online' : 'offline' });
        } else {
          const anyone = c.members.some((u) => u !== me && c.online.has(u));
          dot = el('span', { class: `dot${anyone ? ' online' : ''}` });
        }
        // The same element stays for a channel (a click never hits one
        // that a re-render just replaced).
        let li = sidebarItems.get(c.name);
        if (!li) {
          li = el('li', { 'data-channel': c.name, onclick: () => openChannel(c.name) });
          sidebarItems.set(c.name, li);
        }
        li.className = `${c === current ? 'active' : ''}${c.unread ? ' unread' : ''}`;
        li.replaceChildren(
          ...[dot, el('span', { class: 'name' }, titleOf(c)), c.unread ? el('span', { class: 'badge' }, String(c.unread)) : null].filter(Boolean),
        );
        return li;
      }),
    );
  }
}

function renderHeader() {
  const c = current;
  $('chat-title').textContent = c ? (c.kind === 'room' ? `# ${titleOf(c)}` : titleOf(c)) : '';
  $('add-member').hidden = !c || c.kind !== 'group';
  const members = $('chat-members');
  if (!c) return members.replaceChildren();
  if (c.kind === 'room') {
    members.replaceChildren(c.onlineCount !== undefined ? `${c.onlineCount} online` : '');
    return;
  }
  const people = c.kind === 'dm' ? c.name.split(':').slice(1) : c.members;
  members.replaceChildren(
    ...people.map((u) => el('span', {}, el('span', { class: `dot${c.online.has(u) ? ' online' : ''}` }), u === me ? `${u} (you)` : u)),
  );
}

function fmtTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function renderMessages({ toBottom = false, keepPosition = false } = {}) {
  const box = $('messages');
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const heightBefore = box.scrollHeight;
  const topBefore = box.scrollTop;
  const c = current;
  const list = $('message-list');
  $('older').hidden = !c || !c.hasMore;
  if (!c) {
    list.replaceChildren();
    return;
  }
  const msgs = [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
  // Read receipts: under the last own message another member has read.
  let seenAt = null;
  const readers = [...c.readBy.entries()].filter(([u]) => u !== me);
  for (const m of msgs) if (m.from === me && readers.some(([, s]) => s >= m.seq)) seenAt = m.seq;
  const items = [];
  for (const m of msgs) {
    const own = m.from === me;
    const cls = `msg${own ? ' own' : ''}${m.deleted ? ' deleted' : ''}`;
    const actions =
      own && !m.deleted
        ? el(
            'span',
            { class: 'actions' },
            el('button', { onclick: () => editMessage(c, m) }, 'edit'),
            el('button', { onclick: () => client.delete(c.name, m.seq) }, 'delete'),
          )
        : null;
    items.push(
      el(
        'li',
        { class: cls, 'data-seq': String(m.seq), 'data-cmid': m.client_msg_id },
        el('div', { class: 'meta' }, own ? '' : `${m.from} · `, fmtTime(m.ts), m.edited ? ' · edited' : '', ' ', actions),
        el('div', { class: 'bubble' }, m.deleted ? 'message deleted' : m.kind === 'media' ? `📎 ${m.media?.url ?? ''} ${m.text ?? ''}` : m.text ?? ''),
      ),
    );
    if (m.seq === seenAt) {
      const who = readers.filter(([, s]) => s >= m.seq).map(([u]) => u);
      items.push(el('li', { class: 'receipt' }, `Seen by ${who.join(', ')}`));
    }
  }
  for (const [cmid, p] of c.pending) {
    items.push(
      el(
        'li',
        { class: 'msg own pending', 'data-cmid': cmid },
        el('div', { class: 'meta' }, p.status === 'sent' ? 'sent' : 'sending…'),
        el('div', { class: 'bubble' }, p.text),
      ),
    );
  }
  list.replaceChildren(...items);
  if (keepPosition) box.scrollTop = topBefore + (box.scrollHeight - heightBefore);
  else if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
  renderTyping();
}

function renderTyping() {
  const c = current;
  const now = Date.now();
  const who = c ? [...c.typing.entries()].filter(([, until]) => until > now).map(([u]) => u) : [];
  $('typing').textContent = who.length ? `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…` : '';
}

function editMessage(c, m) {
  const text = prompt('Edit message', m.text ?? '');
  if (text !== null && text !== m.text) client.edit(c.name, m.seq, text);
}

let bannerTimer = null;
function showBanner(text, kind = 'warn', ms = 0, action = null, onAction = null) {
  const b = $('banner');
  clearTimeout(bannerTimer);
  const spinner = kind === 'warn' ? el('span', { class: 'spinner' }) : null;
  const button = action ? el('button', { onclick: onAction }, action) : null;
  b.replaceChildren(...[spinner, el('span', {}, text), button].filter(Boolean));
  b.className = `banner ${kind}`;
  b.dataset.kind = kind;
  b.hidden = false;
  if (ms) bannerTimer = setTimeout(hideBanner, ms);
}

function hideBanner() {
  $('banner').hidden = true;
}

// -------------------------------------------------------------- startup --

async function start(user, token, sse) {
  me = user;
  $('login').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = user;
  const transport = sse ? 'sse' : (params.get('transport') ?? 'auto');
  client = new ChatClient({
    url: params.get('server') ?? undefined,
    ...(token ? { token } : { user, device: deviceId() }),
    transport,
  });
  window.chat = client; // for the browser test, and for the curious
  window.demo = { chans, get current() { return current; } };
  wire();
  client.connect().catch(() => {});
  for (const room of new Set(['room:lobby', ...savedRooms()])) ensureChannel(room, 'room');
  // A reload: what the outbox still holds is shown as sending (and resent).
  for (const e of await client.pendingSends()) {
    if (e.type !== 'send') continue;
    const kind = e.channel.startsWith('dm:') ? 'dm' : e.channel.startsWith('group:') ? 'group' : 'room';
    ensureChannel(e.channel, kind).pending.set(e.client_msg_id, { text: e.text, status: 'sending' });
  }
  const last = sessionStorage.getItem('chatgw-open');
  await openChannel(last && chans.has(last) ? last : 'room:lobby');
  if (token) me = client.user ?? me;
}

function main() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const user = $('login-user').value.trim();
    const token = $('login-token').value.trim();
    sessionStorage.setItem('chatgw-user', user);
    if ($('login-sse').checked) sessionStorage.setItem('chatgw-sse', '1');
    start(user, token || null, $('login-sse').checked);
  });
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('text');
    send(input.value);
    input.value = '';
  });
  $('text').addEventListener('input', () => {
    if (current && $('text').value) client.typing(current.name);
  });
  $('messages').addEventListener('scroll', () => {
    if (current && $('messages').scrollTop < 30) loadOlder(current);
  });
  $('older').addEventListener('click', () => current && loadOlder(current));
  $('start').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const kind = ev.submitter?.dataset.kind ?? 'room';
    const value = $('start-input').value.trim();
    if (!value) return;
    try {
      let name;
      if (kind === 'room') name = `room:${value.replace(/^#/, '')}`;
      else if (kind === 'dm') name = dmChannel(me, value);
      else {
        const members = value.split(/[\s,]+/).filter(Boolean);
        name = await client.createGroup(members);
        ensureChannel(name, 'group', { members: [...new Set([me, ...members])].sort() });
      }
      if (kind !== 'group') ensureChannel(name, kind);
      $('start-input').value = '';
      openChannel(name);
    } catch (e) {
      showBanner(e.message, 'error', 5000);
    }
  });
  $('add-member').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const user = $('add-member-input').value.trim();
    if (!user || current?.kind !== 'group') return;
    try {
      await client.addMember(current.name, user);
      $('add-member-input').value = '';
      await refreshChannels();
      renderHeader();
    } catch (e) {
      showBanner(e.message, 'error', 5000);
    }
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem('chatgw-user');
    sessionStorage.removeItem('chatgw-sse');
    location.search = '';
  });
  document.addEventListener('visibilitychange', () => current && markRead(current));
  window.addEventListener('beforeunload', () => {
    if (current) sessionStorage.setItem('chatgw-open', current.name);
  });
  setInterval(renderTyping, 1000);

  const user = params.get('user') ?? sessionStorage.getItem('chatgw-user');
  if (user) {
    sessionStorage.setItem('chatgw-user', user);
    start(user, null, params.get('transport') === 'sse' || sessionStorage.getItem('chatgw-sse') === '1');
  } else {
    $('login').hidden = false;
  }
}

main();
