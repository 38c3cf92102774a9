// A Server-Sent Events reader over fetch (works in browsers and in Node,
// which has no EventSource, and can send an Authorization header, which
// EventSource cannot). The client reconnects itself, with its own
// positions, so the automatic reconnection of EventSource is not needed.

import { ChatError } from './codes.js';

/**
 * Opens `url` and calls `onEvent({event, data, id})` for every event and
 * `onActivity()` for every chunk (heartbeat comments included). Resolves
 * when the stream ends; rejects when it cannot be opened (a ChatError with
 * the HTTP status for a refused request).
 */
export async function readEventStream(url, { headers = {}, signal, fetch: fetchImpl, onEvent, onActivity }) {
  const f = fetchImpl ?? globalThis.fetch;
  const res = await f(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal,
    cache: 'no-store',
  });
  if (!res.ok) {
    let body = {};
    try {
      body = await res.json();
    } catch {
      // not JSON
    }
    throw new ChatError(body.code ?? 'http_error', body.message ?? `HTTP ${res.status}`, res.status);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let event = '';
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onActivity?.();
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length > 0) onEvent({ event: event || 'message', data: data.join('\n'), id });
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue; // comment (heartbeat)
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let v = colon < 0 ? '' : line.slice(colon + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (field === 'event') event = v;
      else if (field === 'data') data.push(v);
      else if (field === 'id') id = v;
    }
  }
}
