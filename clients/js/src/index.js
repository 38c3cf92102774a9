// @chat-gateway/client: the JavaScript SDK of the chat gateway.
// See README.md for a ten-line example and index.d.ts for every type.
export { ChatClient, dmChannel, httpBaseOf } from './client.js';
export { CLOSE_CODES, ChatError, RETRYABLE_ERRORS, describeClose } from './codes.js';
export { IndexedDBOutboxStore, MemoryOutboxStore, defaultOutboxStore } from './outbox.js';
export { readEventStream } from './sse.js';
export { tokenClaims, tokenExpiresMs } from './token.js';
