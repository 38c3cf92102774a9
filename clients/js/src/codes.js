// Close codes and error codes of the gateway protocol, with what the client
// does about each (docs/protocol.md, "Close codes").

/**
 * What the client does after a close:
 * - `backoff`: reconnect with jittered exponential backoff;
 * - `slow_backoff`: the same, but never sooner than `slowBackoffMs`;
 * - `random_delay`: the server is draining: reconnect after a random delay;
 * - `refresh_token`: get a new token (token callback), reconnect at once;
 * - `never`: stop (another connection of the same device took over).
 */
export const CLOSE_CODES = Object.freeze({
  1000: { name: 'normal', reason: 'closed normally', reconnect: 'backoff' },
  1001: { name: 'going_away', reason: 'server shutting down or restarting', reconnect: 'random_delay' },
  1002: { name: 'protocol_error', reason: 'WebSocket protocol violation', reconnect: 'backoff' },
  1006: { name: 'abnormal', reason: 'connection lost (network, server gone, or refused at the upgrade)', reconnect: 'backoff' },
  1007: { name: 'invalid_data', reason: 'invalid UTF-8', reconnect: 'backoff' },
  1008: { name: 'policy', reason: 'sustained rate limiting', reconnect: 'slow_backoff' },
  1009: { name: 'too_big', reason: 'frame larger than the server accepts', reconnect: 'backoff' },
  4001: { name: 'token_expired', reason: 'token expired', reconnect: 'refresh_token' },
  4008: { name: 'idle', reason: 'no frame within 2 x heartbeat', reconnect: 'backoff' },
  4009: { name: 'replaced', reason: 'replaced by a newer connection of the same device', reconnect: 'never' },
  4029: { name: 'too_many_connections', reason: 'too many connections for this user', reconnect: 'slow_backoff' },
});

/** The documented meaning of a close code (unknown codes: reconnect with backoff). */
export function describeClose(code) {
  const known = CLOSE_CODES[code];
  if (known) return { code, ...known };
  return { code, name: 'unknown', reason: `closed with code ${code}`, reconnect: 'backoff' };
}

/** Error codes after which a send is worth retrying (it stays in the outbox). */
export const RETRYABLE_ERRORS = Object.freeze(['unavailable', 'rate_limited', 'disconnected', 'timeout']);

/** An error answered by the gateway (or a transport failure: `disconnected`, `timeout`). */
export class ChatError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.name = 'ChatError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }

  /** Whether retrying the same request later can succeed. */
  get retryable() {
    return RETRYABLE_ERRORS.includes(this.code);
  }
}
