// ChatClient: one logical connection to the gateway that survives network
// failures, server restarts, token expiry and page reloads.
//
// - Transport: WebSocket (`/ws`), or Server-Sent Events (`/v1/events`) plus
//   the HTTP API where WebSocket is blocked (`transport: 'auto'` falls back
//   after `wsFailuresBeforeSse` failed attempts in a row).
// - Reconnect: jittered exponential backoff over the list of URLs; close
//   codes are handled as documented (describeClose).
// - Resume: every joined channel is rejoined with `since` = the last seq the
//   client delivered to the app, and messages are delivered once per
//   (channel, seq), in order: the app sees one gap-free, duplicate-free
//   stream per channel.
// - Outbox: a send is stored (outbox.js) before it is written, and resent
//   with the same client_msg_id after a reconnect or a reload until acked.

import { ChatError, describeClose } from './codes.js';
import { Emitter } from './emitter.js';
import { defaultOutboxStore } from './outbox.js';
import { readEventStream } from './sse.js';
import { tokenClaims, tokenExpiresMs } from './token.js';

const DEFAULTS = Object.freeze({
  transport: 'auto',
  backoffInitialMs: 500,
  backoffMaxMs: 15_000,
  slowBackoffMs: 10_000,
  goingAwayDelayMs: [1_000, 5_000],
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  typingIntervalMs: 2_500,
  wsFailuresBeforeSse: 2,
  tokenRefreshMarginMs: 30_000,
  sseReopenDelayMs: 20,
});

function randomId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The HTTP base (`http://host:port`) of a WebSocket URL (`ws://host:port/ws`). */
export function httpBaseOf(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : 'http:';
  u.pathname = u.pathname.replace(/\/ws\/?$/, '');
  u.search = '';
  u.hash = '';
  return u.toString().replace(/\/$/, '');
}

/** The DM channel of two users (`dm:<a>:<b>`, a < b). */
export function dmChannel(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

function defaultUrls() {
  const loc = globalThis.location;
  if (!loc?.host) return [];
  return [`${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`];
}

const enc = encodeURIComponent;

export class ChatClient extends Emitter {
  /** @param {import('./index.js').ChatClientOptions} options */
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.urls = options.urls ?? (options.url ? [options.url] : defaultUrls());
    if (this.urls.length === 0) throw new Error('ChatClient needs `url` or `urls`');
    /** @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
    this.state = 'idle';
    /** @type {'websocket'|'sse'|null} */
    this.transport = null;
    this.hello = null;
    this.user = options.user ?? null;
    this.device = options.device ?? null;

    this._store = options.store ?? null;
    this._channels = new Map(); // channel -> {position, joined, buffer, filling, waiters}
    this._pending = new Map(); // request id -> {resolve, reject, timer}
    this._sendIds = new Map(); // request id -> client_msg_id
    this._sends = new Map(); // client_msg_id -> {key, entry, resolve, reject, epoch}
    this._epoch = 0; // one per transport session; stale callbacks are ignored
    this._flushedEpoch = -1;
    this._nextId = 1;
    this._attempt = 0;
    this._urlIndex = 0;
    this._wsFailures = 0;
    this._useSse = this.options.transport === 'sse';
    this._everOpened = false;
    this._typingAt = new Map();
    this._chain = Promise.resolve();
    this._token = null;
    this._tokenExp = null;
    this._tokenGotAt = 0;
    this._timers = {};
    this._ws = null;
    this._sseAbort = null;
    this._sseChannels = new Set();
    this._pumping = false;
    this._pumpAgain = false;
  }

  // ----------------------------------------------------------- lifecycle --

  /** Connects (and keeps reconnecting). Resolves at the first `hello`. */
  connect() {
    if (this.state !== 'idle' && this.state !== 'closed') return this._opened;
    this._closedByUser = false;
    this._opened = new Promise((resolve, reject) => {
      this._resolveOpened = resolve;
      this._rejectOpened = reject;
    });
    this._opened.catch(() => {});
    this._attempt = 0;
    this._connectNow();
    return this._opened;
  }

  /** Closes for good (the outbox is kept for the next client of this device). */
  close() {
    this._closedByUser = true;
    this._endTransport();
    clearTimeout(this._timers.retry);
    this._setState('closed');
    this._rejectOpened?.(new ChatError('closed', 'client closed'));
  }

  _setState(state, extra = {}) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state, transport: this.transport, ...extra });
  }

  _connectNow({ quiet = false } = {}) {
    clearTimeout(this._timers.retry);
    if (this._closedByUser) return;
    const url = this.urls[this._urlIndex % this.urls.length];
    if (!quiet) this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    const epoch = ++this._epoch;
    this._gotHello = false;
    clearTimeout(this._timers.connect);
    this._timers.connect = setTimeout(() => {
      if (epoch === this._epoch && !this._gotHello) {
        this._transportClosed(epoch, 1006, 'no hello in time', false);
      }
    }, this.options.connectTimeoutMs);
    if (this._useSse) this._openSse(url, epoch);
    else this._openWs(url, epoch);
  }

  /** Stops the current transport and its timers; its callbacks become stale. */
  _endTransport() {
    this._epoch++;
    for (const name of ['heartbeat', 'connect', 'refresh', 'reopen']) {
      clearTimeout(this._timers[name]);
      clearInterval(this._timers[name]);
    }
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = ws.onopen = null;
      try {
        ws.close(1000);
      } catch {
        // not open yet
      }
    }
    this._sseAbort?.abort();
    this._sseAbort = null;
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new ChatError('disconnected', 'the connection closed before the reply'));
    }
    this._pending.clear();
    this._sendIds.clear();
    for (const c of this._channels.values()) c.joined = false;
  }

  _backoff() {
    const { backoffInitialMs: initial, backoffMaxMs: max } = this.options;
    const ceiling = Math.min(max, initial * 2 ** Math.min(this._attempt, 20));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  /** The transport of `epoch` ended with a close code: decide what next. */
  _transportClosed(epoch, code, reason, hadHello) {
    if (epoch !== this._epoch) return;
    this._endTransport();
    if (this._closedByUser) return;
    const info = describeClose(code);
    const why = reason || info.reason;
    if (!hadHello && !this._useSse && this.options.transport === 'auto') {
      this._wsFailures++;
      if (this._wsFailures >= this.options.wsFailuresBeforeSse) {
        this._useSse = true;
        this.emit('fallback', { transport: 'sse', reason: why });
      }
    }
    if (!hadHello && this.options.getToken) this._token = null; // maybe refused: fresh token
    let delay;
    switch (info.reconnect) {
      case 'never':
        this.emit('disconnected', { ...info, reason: why, willReconnect: false });
        this._setState('closed', { code, reason: why });
        this._rejectOpened?.(new ChatError(info.name, why));
        return;
      case 'refresh_token':
        if (!this.options.getToken) {
          this.emit('disconnected', { ...info, reason: why, willReconnect: false });
          this._setState('closed', { code, reason: why });
          this._rejectOpened?.(new ChatError(info.name, why));
          return;
        }
        this._token = null;
        delay = 0;
        break;
      case 'random_delay': {
        const [lo, hi] = this.options.goingAwayDelayMs;
        delay = Math.round(lo + Math.random() * (hi - lo));
        break;
      }
      case 'slow_backoff':
        delay = Math.max(this._backoff(), this.options.slowBackoffMs);
        break;
      default:
        delay = this._backoff();
    }
    this._attempt++;
    this._urlIndex++;
    this.emit('disconnected', { ...info, reason: why, willReconnect: true, delayMs: delay });
    this._setState('reconnecting', { code, reason: why, delayMs: delay });
    this._timers.retry = setTimeout(() => this._connectNow(), delay);
  }

  // -------------------------------------------------------------- tokens --

  _refreshMarginMs() {
    const life = this._tokenExp - this._tokenGotAt;
    return Math.min(this.options.tokenRefreshMarginMs, Math.max(0, life / 5));
  }

  /** The token to use now (from the callback, refreshed before `exp`), or null. */
  async _authToken() {
    if (this.options.getToken) {
      const stale = this._tokenExp !== null && this._tokenExp - Date.now() < this._refreshMarginMs();
      if (!this._token || stale) {
        this._token = await this.options.getToken();
        this._tokenExp = tokenExpiresMs(this._token);
        this._tokenGotAt = Date.now();
      }
      return this._token;
    }
    return this.options.token ?? null;
  }

  _scheduleTokenRefresh(epoch) {
    if (!this.options.getToken || this._tokenExp === null) return;
    const at = this._tokenExp - this._refreshMarginMs() - Date.now();
    this._timers.refresh = setTimeout(async () => {
      if (epoch !== this._epoch) return;
      try {
        this._token = null;
        await this._authToken();
      } catch (e) {
        this.emit('error', new ChatError('token', `token callback failed: ${e?.message ?? e}`));
        return; // the server closes with 4001 at expiry; that retries
      }
      if (epoch !== this._epoch) return;
      // No in-band re-auth in the protocol: reconnect with the new token.
      // Resume is exact, so this costs one round trip and nothing else.
      this._endTransport();
      this._connectNow({ quiet: true });
    }, Math.max(0, at));
  }

  _authParams(url, token) {
    if (token) url.searchParams.set('token', token);
    else if (this.user) {
      url.searchParams.set('user', this.user);
      if (this.device) url.searchParams.set('device', this.device);
    }
    return url;
  }

  // ----------------------------------------------------------- transports --

  async _openWs(url, epoch) {
    let token;
    try {
      token = await this._authToken();
    } catch (e) {
      this._transportClosed(epoch, 1006, `token callback failed: ${e?.message ?? e}`, false);
      return;
    }
    if (epoch !== this._epoch) return;
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(this._authParams(new URL(url), token).toString());
    } catch (e) {
      this._transportClosed(epoch, 1006, e?.message ?? String(e), false);
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => {
      if (epoch !== this._epoch) return;
      this._lastRx = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      this._onFrame(frame, epoch);
    };
    ws.onclose = (ev) => {
      if (epoch !== this._epoch) return;
      this._transportClosed(epoch, ev.code || 1006, ev.reason, this._gotHello);
    };
    ws.onerror = () => {
      // A close event follows, with its code; Node 20's WebSocket does not
      // always send one after a refused upgrade, so count the error as one.
      setTimeout(() => {
        if (epoch === this._epoch) this._transportClosed(epoch, 1006, 'WebSocket error', this._gotHello);
      }, 50);
    };
  }

  _sseUrl(url) {
    const u = new URL(`${this._httpBase(url)}/v1/events`);
    const list = [];
    for (const [channel, c] of this._channels) {
      list.push(c.position === null ? channel : `${channel}=${c.position}`);
    }
    if (list.length) u.searchParams.set('channels', list.join(','));
    return u;
  }

  async _openSse(url, epoch) {
    let token;
    try {
      token = await this._authToken();
    } catch (e) {
      this._transportClosed(epoch, 1006, `token callback failed: ${e?.message ?? e}`, false);
      return;
    }
    if (epoch !== this._epoch) return;
    const ctrl = new AbortController();
    this._sseAbort = ctrl;
    this._sseChannels = new Set(this._channels.keys());
    this._sseClose = null;
    const u = this._sseUrl(url);
    if (!token) this._authParams(u, null);
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    try {
      await readEventStream(u, {
        headers,
        signal: ctrl.signal,
        fetch: this.options.fetch,
        onActivity: () => {
          if (epoch === this._epoch) this._lastRx = Date.now();
        },
        onEvent: (ev) => {
          if (epoch !== this._epoch) return;
          let frame;
          try {
            frame = JSON.parse(ev.data);
          } catch {
            return;
          }
          this._onFrame(frame, epoch);
        },
      });
      if (epoch !== this._epoch) return;
      const c = this._sseClose;
      this._transportClosed(epoch, c?.code ?? 1006, c?.reason ?? 'event stream ended', this._gotHello);
    } catch (e) {
      if (epoch !== this._epoch) return;
      if (e?.status === 401 && this.options.getToken) this._token = null;
      this._transportClosed(epoch, 1006, e?.message ?? String(e), this._gotHello);
    }
  }

  /** SSE streams cover a fixed set of channels: a join or leave reopens. */
  _reopenSseSoon() {
    if (!this._useSse || this.state !== 'open') return;
    clearTimeout(this._timers.reopen);
    this._timers.reopen = setTimeout(() => {
      if (!this._useSse || this.state !== 'open') return;
      this._endTransport();
      this._connectNow({ quiet: true });
    }, this.options.sseReopenDelayMs);
  }

  _write(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  _startHeartbeat(epoch) {
    const hb = this.hello?.heartbeat_ms ?? 30_000;
    const every = Math.max(100, Math.floor(hb / 2));
    this._lastRx = Date.now();
    this._timers.heartbeat = setInterval(() => {
      if (epoch !== this._epoch) return;
      if (Date.now() - this._lastRx > hb + every) {
        this._transportClosed(epoch, 1006, 'no frame from the server within the heartbeat', true);
        return;
      }
      // Browsers never send WebSocket pings: an app-level ping keeps the
      // connection from being closed as idle (4008) and proves it alive.
      if (!this._useSse) this._write({ type: 'ping' });
    }, every);
  }

  // ------------------------------------------------------ incoming frames --

  _onFrame(f, epoch) {
    switch (f.type) {
      case 'hello':
        return this._onHello(f, epoch);
      case 'msg':
        return this._onMsg(f);
      case 'joined':
        return this._onJoined(f);
      case 'left':
        return this._onLeft(f);
      case 'ack':
        this._sendIds.delete(f.id);
        return this._completeSend(f.client_msg_id, {
          channel: f.channel,
          client_msg_id: f.client_msg_id,
          seq: f.seq,
          ts: f.ts,
          duplicate: f.duplicate,
        });
      case 'error':
        return this._onError(f);
      case 'typing':
        return this.emit('typing', { channel: f.channel, user: f.user });
      case 'head': {
        // A `counts` member's badge: the channel's head moved.
        const c = this._channels.get(f.channel);
        if (c) c.head = Math.max(c.head ?? 0, f.head);
        return this.emit('head', { channel: f.channel, head: f.head });
      }
      case 'presence_update':
        return this.emit('presence', { channel: f.channel, user: f.user, status: f.status });
      case 'read':
        return this.emit('read', { channel: f.channel, user: f.user, seq: f.seq });
      case 'channel_added':
        return this.emit('channel_added', { channel: f.channel, kind: f.kind });
      case 'close': // SSE: the session was closed; the stream ends now
        this._sseClose = f;
        return this._transportClosed(epoch, f.code, f.reason, true);
      default:
        return this._resolveRequest(f);
    }
  }

  _resolveRequest(f) {
    const p = this._pending.get(f.id);
    if (!p) return false;
    this._pending.delete(f.id);
    clearTimeout(p.timer);
    if (f.type === 'error') p.reject(new ChatError(f.code, f.message));
    else p.resolve(f);
    return true;
  }

  _onHello(h, epoch) {
    clearTimeout(this._timers.connect);
    this._gotHello = true;
    this.hello = h;
    this.user = h.user;
    this.device = h.device;
    this._attempt = 0;
    this._wsFailures = 0;
    this._everOpened = true;
    this.transport = this._useSse ? 'sse' : 'websocket';
    this._startHeartbeat(epoch);
    if (!this._useSse) {
      for (const [channel, c] of this._channels) this._sendJoin(channel, c);
    }
    this._setState('open', {});
    this.emit('hello', h);
    this._resolveOpened?.(h);
    this._flushOutbox(epoch);
    this._scheduleTokenRefresh(epoch);
    if (this._useSse && [...this._channels.keys()].some((c) => !this._sseChannels.has(c))) {
      this._reopenSseSoon(); // joined while the stream was opening
    }
  }

  _sendJoin(channel, c) {
    // The id is the channel: a refusal names it (the SSE stream does the same).
    const req = { type: 'join', id: channel, channel };
    if (c.position !== null) req.since = c.position;
    if (c.mode && c.mode !== 'live') req.mode = c.mode;
    this._write(req);
  }

  _onJoined(f) {
    if (this._resolveRequest(f)) return;
    const c = this._channels.get(f.channel);
    if (!c) return;
    if (c.position === null) c.position = f.head;
    c.joined = true;
    c.head = f.head;
    const waiters = c.waiters.splice(0);
    for (const w of waiters) w.resolve({ channel: f.channel, head: f.head });
    this.emit('joined', { channel: f.channel, head: f.head, position: c.position });
  }

  _onLeft(f) {
    if (this._resolveRequest(f)) return;
    // Unsolicited: removed from the group.
    if (this._channels.delete(f.channel)) this.emit('left', { channel: f.channel });
  }

  _onError(f) {
    const cmid = this._sendIds.get(f.id);
    if (cmid !== undefined) {
      this._sendIds.delete(f.id);
      return this._sendRefused(cmid, new ChatError(f.code, f.message));
    }
    if (this._resolveRequest(f)) return;
    const err = new ChatError(f.code, f.message);
    if (typeof f.id === 'string' && this._channels.has(f.id)) {
      const c = this._channels.get(f.id);
      this._channels.delete(f.id);
      err.channel = f.id;
      for (const w of c.waiters.splice(0)) w.reject(err);
      this.emit('join_failed', { channel: f.id, error: err });
      return;
    }
    this.emit('error', err);
  }

  _onMsg(m) {
    const c = this._channels.get(m.channel);
    if (!c) return;
    if (c.position === null) c.position = m.seq - 1;
    if (m.seq <= c.position) return; // already delivered
    if (m.seq > c.position + 1) {
      // Never expected (the server sends every seq from the join position);
      // kept safe anyway: hold it and fill the gap from history.
      c.buffer.set(m.seq, m);
      this._fillGap(m.channel, c);
      return;
    }
    this._deliver(m.channel, c, m);
  }

  _deliver(channel, c, m) {
    c.position = m.seq;
    if (m.from === this.user && m.device === this.device) {
      // Our own message is committed: its send is done even if the ack was lost.
      this._completeSend(m.client_msg_id, {
        channel,
        client_msg_id: m.client_msg_id,
        seq: m.seq,
        ts: m.ts,
        duplicate: false,
      });
    }
    this.emit('message', m);
    for (const [seq, held] of c.buffer) {
      if (seq <= c.position) c.buffer.delete(seq);
      else if (seq === c.position + 1) {
        c.buffer.delete(seq);
        this._deliver(channel, c, held);
        return;
      }
    }
  }

  async _fillGap(channel, c) {
    if (c.filling) return;
    c.filling = true;
    try {
      while (c.buffer.size > 0 && this._channels.get(channel) === c) {
        if (c.buffer.has(c.position + 1)) {
          this._deliver(channel, c, c.buffer.get(c.position + 1));
          continue;
        }
        const page = await this.history(channel, { after: c.position, limit: 200 });
        if (page.messages.length === 0) break;
        for (const m of page.messages) {
          if (m.seq === c.position + 1) this._deliver(channel, c, m);
        }
      }
    } catch (e) {
      this.emit('error', e);
    } finally {
      c.filling = false;
    }
  }

  // ------------------------------------------------------------- channels --

  /**
   * Joins a channel and keeps it joined across reconnects. `since`: the last
   * seq the app already has (replay from there); without it, live from now.
   * `mode`: the audience tier — `live` (default), `digest` (every message,
   * delivered in batches at most every `digest_interval_ms`) or `counts` (no
   * messages; `head` events). Joining a joined channel with another `mode`
   * switches it (to `live`/`digest`: the messages after `position()` come at
   * once). Over SSE the mode is not sent (the stream is always `live`).
   */
  join(channel, { since, mode } = {}) {
    let c = this._channels.get(channel);
    const switching = c && mode !== undefined && (mode ?? 'live') !== (c.mode ?? 'live');
    if (switching) c.mode = mode;
    if (c && c.joined && this.state === 'open' && !(switching && !this._useSse)) {
      return Promise.resolve({ channel, head: c.head ?? c.position });
    }
    if (!c) {
      c = { position: since ?? null, joined: false, head: null, buffer: new Map(), filling: false, waiters: [], mode };
      this._channels.set(channel, c);
    } else if (since !== undefined && c.position === null) {
      c.position = since;
    }
    const p = new Promise((resolve, reject) => c.waiters.push({ resolve, reject }));
    if (this.state === 'open') {
      if (this._useSse) this._reopenSseSoon();
      else this._sendJoin(channel, c);
    }
    return p;
  }

  /** Leaves a channel (no more messages from it). */
  async leave(channel) {
    const c = this._channels.get(channel);
    if (!c) return;
    this._channels.delete(channel);
    for (const w of c.waiters.splice(0)) w.reject(new ChatError('left', 'left before the join completed'));
    if (this.state !== 'open') return;
    if (this._useSse) this._reopenSseSoon();
    else await this._request({ type: 'leave', channel }).catch(() => {});
  }

  /** The channels joined (or being joined). */
  channelsJoined() {
    return [...this._channels.keys()];
  }

  /** The last seq delivered to the app in `channel` (null: none yet). */
  position(channel) {
    return this._channels.get(channel)?.position ?? null;
  }

  // ---------------------------------------------------------------- sends --

  /** Sends a text (or `{kind: 'media', media}`) message through the durable outbox. */
  send(channel, text, options = {}) {
    const req = { type: 'send', channel, text };
    if (options.kind) req.kind = options.kind;
    if (options.media) req.media = options.media;
    return this._enqueue(req, options.clientMsgId);
  }

  /** Replaces the text of one of your messages (through the outbox). */
  edit(channel, target, text) {
    return this._enqueue({ type: 'edit', channel, target, text });
  }

  /** Deletes one of your messages (through the outbox). */
  delete(channel, target) {
    return this._enqueue({ type: 'delete', channel, target });
  }

  _serial(fn) {
    const run = this._chain.then(fn);
    this._chain = run.catch(() => {});
    return run;
  }

  async _ensureStore() {
    if (this._store) return this._store;
    let { user, device } = this;
    if (!user && (this.options.token || this.options.getToken)) {
      const claims = tokenClaims(await this._authToken()) ?? {};
      user = claims.sub;
      device = claims.device;
    }
    this._store = defaultOutboxStore(`${user ?? 'anonymous'}:${device ?? 'default'}`);
    return this._store;
  }

  _enqueue(req, clientMsgId) {
    const client_msg_id = clientMsgId ?? randomId();
    const entry = { ...req, client_msg_id, created: Date.now() };
    let resolve;
    let reject;
    const acked = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    acked.catch(() => {}); // failures are also emitted as `send_failed`
    const record = { key: null, entry, resolve, reject, epoch: -1 };
    this._sends.set(client_msg_id, record);
    const stored = this._serial(async () => {
      const store = await this._ensureStore();
      record.key = await store.add(entry);
      this.emit('outbox', { pending: this._sends.size });
      // Before this epoch's flush, the flush writes it (in order).
      if (this._flushedEpoch === this._epoch) this._writeSend(record);
    });
    stored.catch((e) => {
      this._sends.delete(client_msg_id);
      reject(e);
    });
    acked.clientMsgId = client_msg_id;
    acked.stored = stored;
    return acked;
  }

  /** The entries in the outbox (sent or not, not yet acked), oldest first. */
  async pendingSends() {
    return this._serial(async () => {
      const store = await this._ensureStore();
      return store.list();
    });
  }

  /** Resends the unacked tail of the outbox, in order, on the current transport. */
  _flushOutbox(epoch) {
    return this._serial(async () => {
      const store = await this._ensureStore();
      const entries = await store.list();
      for (const e of entries) {
        const rec = this._sends.get(e.client_msg_id);
        if (rec) rec.key = e.key;
        else this._sends.set(e.client_msg_id, { key: e.key, entry: e, resolve: null, reject: null, epoch: -1 });
      }
      if (epoch !== this._epoch || this.state !== 'open') return;
      this._flushedEpoch = epoch;
      if (entries.length) this.emit('outbox', { pending: this._sends.size, resending: entries.length });
      if (this._useSse) {
        this._pumpHttp();
        return;
      }
      for (const e of entries) {
        const rec = this._sends.get(e.client_msg_id);
        if (rec) this._writeSend(rec);
      }
    }).catch((e) => this.emit('error', e));
  }

  _writeSend(rec) {
    if (this._useSse) {
      this._pumpHttp();
      return;
    }
    if (rec.epoch === this._epoch) return; // already written on this connection
    const id = this._nextId++;
    const { key: _key, created: _created, ...frame } = rec.entry;
    if (!this._write({ ...frame, id })) return;
    rec.epoch = this._epoch;
    this._sendIds.set(id, rec.entry.client_msg_id);
  }

  /** SSE mode: sends go over the HTTP API, one at a time, in outbox order. */
  async _pumpHttp() {
    if (this._pumping) {
      this._pumpAgain = true;
      return;
    }
    this._pumping = true;
    try {
      do {
        this._pumpAgain = false;
        const recs = [...this._sends.values()]
          .filter((r) => r.key !== null)
          .sort((a, b) => a.key - b.key);
        for (const rec of recs) {
          if (this.state !== 'open' || !this._useSse) return;
          const { type, channel, client_msg_id, text, kind, media, target } = rec.entry;
          if (!this._sends.has(client_msg_id)) continue;
          const body = { client_msg_id };
          if (type === 'send') {
            body.text = text;
            if (kind) body.kind = kind;
            if (media) body.media = media;
          } else {
            body.kind = type;
            body.target = target;
            if (text !== undefined) body.text = text;
          }
          try {
            const ack = await this._http('POST', `/v1/channels/${enc(channel)}/messages`, body);
            this._completeSend(client_msg_id, { ...ack, channel, client_msg_id });
          } catch (e) {
            const err = e instanceof ChatError ? e : new ChatError('disconnected', String(e));
            if (err.retryable || err.status === undefined) {
              this._retrySendsSoon();
              return;
            }
            this._sendRefused(client_msg_id, err);
          }
        }
      } while (this._pumpAgain);
    } finally {
      this._pumping = false;
    }
  }

  _retrySendsSoon() {
    clearTimeout(this._timers.resend);
    const epoch = this._epoch;
    this._timers.resend = setTimeout(() => {
      if (epoch !== this._epoch || this.state !== 'open') return;
      for (const rec of this._sends.values()) rec.epoch = -1;
      this._flushOutbox(epoch);
    }, this._backoff());
  }

  _sendRefused(cmid, err) {
    if (err.retryable) {
      this._retrySendsSoon();
      return;
    }
    const rec = this._sends.get(cmid);
    if (!rec) return;
    this._sends.delete(cmid);
    if (rec.key !== null) this._store.remove(rec.key).catch(() => {});
    rec.reject?.(err);
    this.emit('send_failed', { entry: rec.entry, error: err });
    this.emit('outbox', { pending: this._sends.size });
  }

  _completeSend(cmid, ack) {
    const rec = this._sends.get(cmid);
    if (!rec || rec.entry.channel !== ack.channel || rec.key === null) return;
    this._sends.delete(cmid);
    this._store.remove(rec.key).catch((e) => this.emit('error', e));
    rec.resolve?.(ack);
    this.emit('ack', ack);
    this.emit('outbox', { pending: this._sends.size });
  }

  // ------------------------------------------------------------- requests --

  _request(obj) {
    if (this.state !== 'open' || this._useSse || !this._ws) {
      return Promise.reject(new ChatError('disconnected', 'not connected'));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ChatError('timeout', `no reply to ${obj.type} in time`));
      }, this.options.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      if (!this._write({ ...obj, id })) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new ChatError('disconnected', 'not connected'));
      }
    });
  }

  _wsOpen() {
    return this.state === 'open' && !this._useSse && this._ws?.readyState === 1;
  }

  _httpBase(url) {
    return this.options.httpUrl ?? httpBaseOf(url ?? this.urls[this._urlIndex % this.urls.length]);
  }

  /** One HTTP API call; the JSON answer (null for 204) or a ChatError. */
  async _http(method, path, body) {
    const token = await this._authToken();
    const u = new URL(this._httpBase() + path);
    if (!token) this._authParams(u, null);
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const f = this.options.fetch ?? globalThis.fetch;
    let res;
    try {
      res = await f(u, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ChatError('disconnected', e?.message ?? String(e));
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // not JSON
    }
    if (!res.ok) throw new ChatError(json?.code ?? 'http_error', json?.message ?? `HTTP ${res.status}`, res.status);
    return json;
  }

  /** A page of history: `{channel, messages, has_more}` (ascending). */
  async history(channel, { before, after, limit } = {}) {
    if (this._wsOpen()) {
      const req = { type: 'history', channel };
      if (before !== undefined) req.before = before;
      if (after !== undefined) req.after = after;
      if (limit !== undefined) req.limit = limit;
      const r = await this._request(req);
      return { channel: r.channel, messages: r.messages, has_more: r.has_more };
    }
    const q = new URLSearchParams();
    if (before !== undefined) q.set('before', before);
    if (after !== undefined) q.set('after', after);
    if (limit !== undefined) q.set('limit', limit);
    const qs = q.toString();
    return this._http('GET', `/v1/channels/${enc(channel)}/messages${qs ? `?${qs}` : ''}`);
  }

  /** Who is online in a channel: `{channel, online, count}`. */
  async presence(channel) {
    if (this._wsOpen()) {
      const r = await this._request({ type: 'presence', channel });
      return { channel: r.channel, online: r.online, count: r.count };
    }
    return this._http('GET', `/v1/channels/${enc(channel)}/presence`);
  }

  /** Moves your read cursor (the other members get a `read` event). */
  async markRead(channel, seq) {
    if (this._wsOpen()) {
      this._write({ type: 'read', channel, seq });
      return;
    }
    await this._http('POST', `/v1/channels/${enc(channel)}/read`, { seq });
  }

  /** Reports what this device received (WebSocket only; coalesced by the server). */
  markDelivered(channel, seq) {
    if (this._wsOpen()) this._write({ type: 'delivered', channel, seq });
  }

  /** Tells the channel you are typing; throttled. Returns whether it was sent. */
  typing(channel) {
    const now = Date.now();
    if (now - (this._typingAt.get(channel) ?? 0) < this.options.typingIntervalMs) return false;
    if (!this._wsOpen()) return false; // the HTTP API has no typing
    this._typingAt.set(channel, now);
    return this._write({ type: 'typing', channel });
  }

  /** Creates a group with you and `members`; resolves to its channel name. */
  async createGroup(members) {
    const r = await this._http('POST', '/v1/groups', { members });
    return r.channel;
  }

  /** Adds a member to a group you belong to. */
  async addMember(channel, user) {
    await this._http('POST', `/v1/groups/${enc(channel.replace(/^group:/, ''))}/members`, { user });
  }

  /** Removes a member (or yourself) from a group you belong to. */
  async removeMember(channel, user) {
    await this._http('DELETE', `/v1/groups/${enc(channel.replace(/^group:/, ''))}/members/${enc(user)}`);
  }

  /** Unread counts of your channels: `{channel: n}` (only n > 0). */
  async unread() {
    return (await this._http('GET', '/v1/me/unread')).unread;
  }

  /** Your groups and DMs with members, head, read cursor and unread count. */
  async channels() {
    return (await this._http('GET', '/v1/me/channels')).channels;
  }
}
