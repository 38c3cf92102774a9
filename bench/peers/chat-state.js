'use strict';
// The protocol subset `loadgen` uses (see /work/shared/protocol.md), shared
// by node-ws-server.js and bun-server.js so both peers answer identically:
//
//   on connect        -> hello {user, device, session, shard: 0, heartbeat_ms, limits}
//   join {channel, since?}  -> subscribe; joined {id, channel, head};
//                             then, with `since`, replay the msgs (since, head]
//   leave {channel}   -> unsubscribe; left {id, channel}
//   send {channel, client_msg_id, text}
//                     -> next seq of the channel; ack {id, channel,
//                        client_msg_id, seq, ts, duplicate:false} to the
//                        sender first, then ONE encoded `msg` frame published
//                        to every subscriber (the sender included).
//                        A retry of (channel, user, device, client_msg_id)
//                        gets the same seq with duplicate:true and is not
//                        published again.
//   ping              -> pong {id}
//
// NO PERSISTENCE: every channel's messages, seqs and the dedup table live
// in this process's memory only and are lost when it exits. Nothing is
// written to disk, so an `ack` here means "in memory", whereas the gateway
// acks only after its commit (fsync by default). Memory grows with every
// message for the life of the process (a benchmark server, not a product).
// No auth, no rate limits, no backpressure handling beyond the library's.

const LIMITS = { max_text_chars: 100000, max_frame_bytes: 2097152, history_max_limit: 200 };

let sessions = 0;

class ChatState {
  constructor() {
    /** channel name -> { frames: string[] (frames[seq-1] = encoded msg), dedup: Map<string, [seq, ts]> } */
    this.channels = new Map();
  }

  channel(name) {
    let c = this.channels.get(name);
    if (c === undefined) {
      c = { frames: [], dedup: new Map() };
      this.channels.set(name, c);
    }
    return c;
  }

  /** The `hello` frame of a new connection. */
  hello(user, device) {
    sessions += 1;
    return JSON.stringify({
      type: 'hello',
      user,
      device,
      session: `s${process.pid}-${sessions}`,
      shard: 0,
      heartbeat_ms: 30000,
      limits: LIMITS,
    });
  }

  /**
   * Handles one text frame from `conn` ({user, device} from the URL).
   * `io` is the server's: send(conn, string), subscribe(conn, channel),
   * unsubscribe(conn, channel), publish(channel, string).
   */
  handle(conn, user, device, text, io) {
    let req;
    try {
      req = JSON.parse(text);
    } catch (e) {
      io.send(conn, JSON.stringify({ type: 'error', code: 'bad_request', message: 'not JSON' }));
      return;
    }
    const id = req.id;
    const bad = (message) =>
      io.send(conn, JSON.stringify({ type: 'error', id, code: 'bad_request', message }));
    switch (req.type) {
      case 'join': {
        if (typeof req.channel !== 'string') return bad('join needs a channel');
        const c = this.channel(req.channel);
        io.subscribe(conn, req.channel);
        const head = c.frames.length;
        io.send(conn, JSON.stringify({ type: 'joined', id, channel: req.channel, head }));
        if (typeof req.since === 'number') {
          for (let s = Math.max(0, req.since); s < head; s++) io.send(conn, c.frames[s]);
        }
        return;
      }
      case 'leave': {
        if (typeof req.channel !== 'string') return bad('leave needs a channel');
        io.unsubscribe(conn, req.channel);
        io.send(conn, JSON.stringify({ type: 'left', id, channel: req.channel }));
        return;
      }
      case 'send': {
        const { channel, client_msg_id } = req;
        if (typeof channel !== 'string' || typeof client_msg_id !== 'string') {
          return bad('send needs channel and client_msg_id');
        }
        const c = this.channel(channel);
        const key = `${user}\u0000${device}\u0000${client_msg_id}`;
        const seen = c.dedup.get(key);
        if (seen !== undefined) {
          io.send(conn, JSON.stringify({
            type: 'ack', id, channel, client_msg_id, seq: seen[0], ts: seen[1], duplicate: true,
          }));
          return;
        }
        const seq = c.frames.length + 1;
        const ts = Date.now();
        const frame = JSON.stringify({
          type: 'msg', channel, seq, from: user, device, client_msg_id,
          kind: 'text', text: typeof req.text === 'string' ? req.text : '', ts,
        });
        c.frames.push(frame);
        c.dedup.set(key, [seq, ts]);
        io.send(conn, JSON.stringify({
          type: 'ack', id, channel, client_msg_id, seq, ts, duplicate: false,
        }));
        io.publish(channel, frame);
        return;
      }
      case 'ping':
        io.send(conn, JSON.stringify({ type: 'pong', id }));
        return;
      default:
        return bad(`unsupported request type ${JSON.stringify(req.type)}`);
    }
  }
}

/** user and device from `/ws?user=<id>&device=<id>`. */
function identity(url) {
  const u = new URL(url, 'http://localhost');
  return {
    user: u.searchParams.get('user') || 'anonymous',
    device: u.searchParams.get('device') || 'd0',
  };
}

/** The port: argv[2], else $PORT, else 0 (any free port). */
function port() {
  return Number(process.argv[2] ?? process.env.PORT ?? 0);
}

module.exports = { ChatState, identity, port };
