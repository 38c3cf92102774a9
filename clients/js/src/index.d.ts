// Type declarations of @chat-gateway/client (hand-written; the sources are
// plain ES modules so the gateway can serve them to browsers as they are).

export type ChannelName = string;

/** A message as the gateway sends it (`msg` events and history pages). */
export interface Message {
  type: 'msg';
  channel: ChannelName;
  seq: number;
  from: string;
  device: string;
  client_msg_id: string;
  kind: 'text' | 'media' | 'edit' | 'delete';
  /** Absent for a message that was deleted later (history and replay). */
  text?: string;
  ts: number;
  /** The edited or deleted seq, for kinds `edit` and `delete`. */
  target?: number;
  media?: { url: string; mime: string; size: number };
  edited?: boolean;
  deleted?: boolean;
}

export interface Ack {
  channel: ChannelName;
  client_msg_id: string;
  seq: number;
  ts: number;
  duplicate: boolean;
}

export interface Hello {
  type: 'hello';
  user: string;
  device: string;
  session: string;
  shard: number;
  heartbeat_ms: number;
  limits: { max_text_chars: number; max_frame_bytes: number; history_max_limit: number };
}

export interface HistoryPage {
  channel: ChannelName;
  messages: Message[];
  has_more: boolean;
}

export interface Presence {
  channel: ChannelName;
  online: string[];
  count: number;
}

/** One of your groups or DMs (`GET /v1/me/channels`). */
export interface ChannelInfo {
  channel: ChannelName;
  kind: 'dm' | 'group';
  members: string[];
  head: number;
  read: number;
  unread: number;
}

/** A send, edit or delete waiting in the outbox. */
export interface OutboxEntry {
  key?: number;
  type: 'send' | 'edit' | 'delete';
  channel: ChannelName;
  client_msg_id: string;
  text?: string;
  kind?: 'text' | 'media';
  media?: { url: string; mime: string; size: number };
  target?: number;
  /** When it was stored (ms since the epoch). */
  created: number;
}

/** Where the outbox lives. `add` must be durable when it resolves. */
export interface OutboxStore {
  add(entry: OutboxEntry): Promise<number>;
  remove(key: number): Promise<void>;
  /** Every entry with its key, in key order. */
  list(): Promise<Array<OutboxEntry & { key: number }>>;
}

export class MemoryOutboxStore implements OutboxStore {
  add(entry: OutboxEntry): Promise<number>;
  remove(key: number): Promise<void>;
  list(): Promise<Array<OutboxEntry & { key: number }>>;
}

export class IndexedDBOutboxStore implements OutboxStore {
  constructor(name: string, options?: { indexedDB?: IDBFactory });
  readonly name: string;
  add(entry: OutboxEntry): Promise<number>;
  remove(key: number): Promise<void>;
  list(): Promise<Array<OutboxEntry & { key: number }>>;
}

/** IndexedDB in browsers, memory elsewhere. */
export function defaultOutboxStore(name: string): OutboxStore;

export type ReconnectAdvice = 'backoff' | 'slow_backoff' | 'random_delay' | 'refresh_token' | 'never';

export interface CloseInfo {
  code: number;
  name: string;
  reason: string;
  reconnect: ReconnectAdvice;
}

export const CLOSE_CODES: Readonly<Record<number, Omit<CloseInfo, 'code'>>>;
export function describeClose(code: number): CloseInfo;
export const RETRYABLE_ERRORS: readonly string[];

export class ChatError extends Error {
  constructor(code: string, message?: string, status?: number);
  /** The gateway's error code (`not_member`, `conflict`, ...) or `disconnected`/`timeout`. */
  code: string;
  /** The HTTP status, for HTTP API calls. */
  status?: number;
  /** For a refused join. */
  channel?: ChannelName;
  readonly retryable: boolean;
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
export type Transport = 'websocket' | 'sse';

export interface ChatClientOptions {
  /** `ws://host:port/ws`; in a browser page served by the gateway, defaults to this host. */
  url?: string;
  /** Several equivalent gateways, tried in turn. */
  urls?: string[];
  /** A fixed token (HS256 JWT). */
  token?: string;
  /** Called for a token at connect and again before `exp`. */
  getToken?: () => string | Promise<string>;
  /** Dev auth (no token): the user id. */
  user?: string;
  /** Dev auth (no token): this installation's device id (one per browser tab). */
  device?: string;
  /** Where the outbox lives (default: IndexedDB in browsers, memory in Node). */
  store?: OutboxStore;
  /** `auto` (WebSocket, SSE when WebSocket fails), `websocket` or `sse`. */
  transport?: 'auto' | Transport;
  /** WebSocket failures in a row (before any `hello`) before `auto` falls back to SSE. Default 2. */
  wsFailuresBeforeSse?: number;
  /** Default 500 ms, doubling up to `backoffMaxMs` (15 s); each delay is jittered (50-100%). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Least delay after 1008 and 4029. Default 10 s. */
  slowBackoffMs?: number;
  /** Range of the random delay after 1001. Default [1000, 5000] ms. */
  goingAwayDelayMs?: [number, number];
  /** Give up on an attempt without `hello` after this long. Default 10 s. */
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** At most one `typing` per channel per this long. Default 2.5 s. */
  typingIntervalMs?: number;
  /** Refresh the token this long before `exp` (at most a fifth of its lifetime). Default 30 s. */
  tokenRefreshMarginMs?: number;
  /** HTTP API base; default: derived from the WebSocket URL. */
  httpUrl?: string;
  /** A WebSocket constructor (default: the global one). */
  WebSocket?: unknown;
  /** A fetch function (default: the global one). */
  fetch?: typeof fetch;
}

/** A member's audience tier in a channel: every message at once, in batches, or only the head. */
export type JoinMode = 'live' | 'digest' | 'counts';

export interface ChatEvents {
  state: { state: ConnectionState; transport: Transport | null; code?: number; reason?: string; delayMs?: number };
  hello: Hello;
  /** Per channel: every seq once, in order, across reconnects. */
  message: Message;
  joined: { channel: ChannelName; head: number; position: number };
  join_failed: { channel: ChannelName; error: ChatError };
  /** Removed from a group by the server. */
  left: { channel: ChannelName };
  typing: { channel: ChannelName; user: string };
  /** The channel's head moved (channels joined with `mode: 'counts'`). */
  head: { channel: ChannelName; head: number };
  presence: { channel: ChannelName; user: string; status: 'online' | 'offline' };
  read: { channel: ChannelName; user: string; seq: number };
  channel_added: { channel: ChannelName; kind: 'dm' | 'group' };
  ack: Ack;
  send_failed: { entry: OutboxEntry; error: ChatError };
  outbox: { pending: number; resending?: number };
  disconnected: CloseInfo & { willReconnect: boolean; delayMs?: number };
  fallback: { transport: 'sse'; reason: string };
  error: ChatError | Error;
}

/** Resolves at the ack; `stored` resolves once the outbox holds it. */
export interface SendPromise extends Promise<Ack> {
  clientMsgId: string;
  stored: Promise<void>;
}

export class ChatClient {
  constructor(options?: ChatClientOptions);
  readonly state: ConnectionState;
  readonly transport: Transport | null;
  readonly hello: Hello | null;
  readonly user: string | null;
  readonly device: string | null;
  readonly urls: string[];

  on<K extends keyof ChatEvents>(type: K, listener: (event: ChatEvents[K]) => void): () => void;
  once<K extends keyof ChatEvents>(type: K, listener: (event: ChatEvents[K]) => void): () => void;
  off<K extends keyof ChatEvents>(type: K, listener: (event: ChatEvents[K]) => void): void;

  connect(): Promise<Hello>;
  close(): void;

  /** `mode`: the audience tier (protocol.md, "Audience tiers"); another mode on a joined channel switches it. */
  join(
    channel: ChannelName,
    options?: { since?: number; mode?: JoinMode },
  ): Promise<{ channel: ChannelName; head: number }>;
  leave(channel: ChannelName): Promise<void>;
  channelsJoined(): ChannelName[];
  position(channel: ChannelName): number | null;

  send(
    channel: ChannelName,
    text: string,
    options?: { kind?: 'text' | 'media'; media?: { url: string; mime: string; size: number }; clientMsgId?: string },
  ): SendPromise;
  edit(channel: ChannelName, target: number, text: string): SendPromise;
  delete(channel: ChannelName, target: number): SendPromise;
  pendingSends(): Promise<Array<OutboxEntry & { key: number }>>;

  history(channel: ChannelName, options?: { before?: number; after?: number; limit?: number }): Promise<HistoryPage>;
  presence(channel: ChannelName): Promise<Presence>;
  markRead(channel: ChannelName, seq: number): Promise<void>;
  markDelivered(channel: ChannelName, seq: number): void;
  typing(channel: ChannelName): boolean;

  createGroup(members: string[]): Promise<ChannelName>;
  addMember(channel: ChannelName, user: string): Promise<void>;
  removeMember(channel: ChannelName, user: string): Promise<void>;
  unread(): Promise<Record<ChannelName, number>>;
  channels(): Promise<ChannelInfo[]>;
}

export function dmChannel(a: string, b: string): ChannelName;
export function httpBaseOf(wsUrl: string): string;

export function readEventStream(
  url: string | URL,
  options: {
    headers?: Record<string, string>;
    signal?: AbortSignal;
    fetch?: typeof fetch;
    onEvent: (event: { event: string; data: string; id: string | null }) => void;
    onActivity?: () => void;
  },
): Promise<void>;

export function tokenClaims(token: string): Record<string, unknown> | null;
export function tokenExpiresMs(token: string): number | null;
