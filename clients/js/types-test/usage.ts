// Compiled (not run) by `npm run typecheck`: the declarations in
// src/index.d.ts describe the API the way an app uses it.
import {
  ChatClient,
  ChatError,
  MemoryOutboxStore,
  describeClose,
  dmChannel,
  type Ack,
  type ChannelInfo,
  type Message,
  type OutboxStore,
} from '../src/index.js';

const store: OutboxStore = new MemoryOutboxStore();
const chat = new ChatClient({
  urls: ['ws://127.0.0.1:8080/ws'],
  getToken: async () => 'token',
  store,
  transport: 'auto',
});
const off = chat.on('message', (m: Message) => console.log(m.channel, m.seq, m.text ?? '(deleted)'));
chat.on('state', ({ state }) => {
  if (state === 'reconnecting') console.log('reconnecting');
});
chat.on('disconnected', (d) => console.log(d.code, d.reconnect, d.willReconnect));
chat.on('channel_added', ({ channel, kind }) => chat.join(channel, { since: kind === 'dm' ? 0 : undefined }));

async function main(): Promise<void> {
  const hello = await chat.connect();
  console.log(hello.heartbeat_ms, hello.limits.max_text_chars);
  await chat.join(dmChannel('alice', 'bob'));
  const sending = chat.send('room:lobby', 'hi');
  const id: string = sending.clientMsgId;
  await sending.stored;
  const ack: Ack = await sending;
  await chat.edit('room:lobby', ack.seq, 'hello');
  const page = await chat.history('room:lobby', { before: ack.seq, limit: 20 });
  const mine: ChannelInfo[] = await chat.channels();
  const unread: Record<string, number> = await chat.unread();
  console.log(id, page.has_more, mine.length, unread, describeClose(4009).reconnect);
  try {
    await chat.send('dm:x:y', 'no');
  } catch (e) {
    if (e instanceof ChatError && !e.retryable) console.log(e.code);
  }
  off();
  chat.close();
}
void main();
