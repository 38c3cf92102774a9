//! The simulated clients: their actions, what they read from their
//! sockets, and the invariants checked on every event and at the end.

use super::*;

impl Sim {
    pub(super) fn request(&mut self, c: usize, req: Req, json: serde_json::Value) {
        let Some((s, conn)) = self.clients[c].conn else {
            return;
        };
        let id = self.clients[c].next_id;
        self.clients[c].next_id += 1;
        let mut json = json;
        json["id"] = serde_json::json!(id);
        self.clients[c].pending.insert(id, req);
        let text = json.to_string();
        self.log(format!("client {c} (shard {s}): {text}"));
        self.shards[s].on_ws_event(conn, WsEvent::Text(&text), self.now);
        self.apply(s);
    }

    pub(super) fn connect(&mut self, c: usize) {
        let s = self.rng.below(NR_SHARDS);
        let identity = Identity {
            user: self.clients[c].user.clone(),
            device: self.clients[c].device.clone(),
            expires_ms: None,
        };
        let conn = self.shards[s].open_conn(&identity, self.now);
        self.apply(s);
        self.log(format!("client {c} connects to shard {s} as {conn:?}"));
        let cl = &mut self.clients[c];
        cl.conn = Some((s, conn));
        cl.dec = WsDecoder::new(Role::Client, usize::MAX / 2);
        cl.pending.clear();
        cl.sent_here.clear();
        cl.acked_here.clear();
        // Resume: rejoin what it was in, from what it has.
        let rejoin: Vec<(String, Option<u64>)> = cl
            .chans
            .iter()
            .filter(|(_, ch)| ch.state == ChanState::Wanted)
            .map(|(name, ch)| (name.clone(), ch.last_seen))
            .collect();
        for ch in cl.chans.values_mut() {
            ch.state = ChanState::Out;
        }
        for (channel, since) in rejoin {
            self.counts.resumes += u64::from(since.is_some());
            self.join(c, &channel, since);
        }
        // Retry every send not acked yet.
        let retries: Vec<(String, String, String)> = self.clients[c]
            .unacked
            .iter()
            .map(|(cmid, (ch, text))| (cmid.clone(), ch.clone(), text.clone()))
            .collect();
        for (cmid, channel, text) in retries {
            self.send(c, &channel, cmid, text);
        }
    }

    pub(super) fn disconnect(&mut self, c: usize) {
        let Some((s, conn)) = self.clients[c].conn.take() else {
            return;
        };
        self.log(format!("client {c} disconnects from shard {s}"));
        self.shards[s].close_conn(conn, self.now);
        self.apply(s);
        // Joins stay wanted: resumed at the next connect.
        for ch in self.clients[c].chans.values_mut() {
            ch.state = match ch.state {
                ChanState::Joining { .. } | ChanState::Live { .. } | ChanState::Wanted => {
                    ChanState::Wanted
                }
                ChanState::Leaving { .. } | ChanState::Out => ChanState::Out,
            };
        }
    }

    pub(super) fn join(&mut self, c: usize, channel: &str, since: Option<u64>) {
        let req = self.clients[c].next_id;
        let ch = self.clients[c].chans.get_mut(channel).unwrap();
        ch.state = match ch.state {
            ChanState::Leaving { join, next, .. } => ChanState::Leaving {
                join,
                next,
                rejoin: Some(req),
            },
            _ => ChanState::Joining { req },
        };
        let mut json = serde_json::json!({"type": "join", "channel": channel});
        // Every third client is a `digest` member: every invariant a live
        // member keeps (each seq once, in order, acks first) holds for it.
        if c % 3 == 1 {
            json["mode"] = serde_json::json!("digest");
        }
        if let Some(s) = since {
            json["since"] = serde_json::json!(s);
        }
        let req = Req::Join {
            channel: channel.to_string(),
            since,
        };
        self.request(c, req, json);
    }

    pub(super) fn send(&mut self, c: usize, channel: &str, cmid: String, text: String) {
        if !self.clients[c].unacked.contains_key(&cmid) {
            self.clients[c].sent_here.insert(cmid.clone());
        }
        self.clients[c]
            .unacked
            .insert(cmid.clone(), (channel.to_string(), text.clone()));
        let json = serde_json::json!({"type": "send", "channel": channel, "client_msg_id": cmid, "text": text});
        let req = Req::Send {
            channel: channel.to_string(),
            cmid,
        };
        self.request(c, req, json);
    }

    pub(super) fn may_use(&self, c: usize, channel: &str) -> bool {
        match channel.strip_prefix("dm:") {
            Some(pair) => pair.split(':').any(|u| u == self.clients[c].user),
            None => true,
        }
    }

    pub(super) fn client_action(&mut self) {
        let c = self.rng.below(CLIENTS);
        if self.clients[c].conn.is_none() {
            if self.rng.chance(40) {
                self.connect(c);
            }
            return;
        }
        let channel = CHANNELS[self.rng.below(CHANNELS.len())].to_string();
        match self.rng.below(100) {
            0..=14 => {
                // Also while a leave is on its way: join, leave and join
                // again in one burst.
                let state = self.clients[c].chans[&channel].state;
                if self.may_use(c, &channel)
                    && matches!(
                        state,
                        ChanState::Out | ChanState::Leaving { rejoin: None, .. }
                    )
                {
                    let since = if self.rng.chance(50) {
                        self.clients[c].chans[&channel].last_seen
                    } else {
                        None
                    };
                    self.join(c, &channel, since);
                }
            }
            15..=19 => {
                let leaving = match self.clients[c].chans[&channel].state {
                    ChanState::Live { next } => Some(ChanState::Leaving {
                        join: None,
                        next: Some(next),
                        rejoin: None,
                    }),
                    // Leave before the join is answered (then maybe join
                    // again at once: the old join's answer comes late).
                    ChanState::Joining { req } => Some(ChanState::Leaving {
                        join: Some(req),
                        next: None,
                        rejoin: None,
                    }),
                    _ => None,
                };
                if let Some(state) = leaving {
                    self.clients[c].chans.get_mut(&channel).unwrap().state = state;
                    let json = serde_json::json!({"type": "leave", "channel": channel});
                    self.request(c, Req::Leave, json);
                }
            }
            20..=49 => {
                if self.may_use(c, &channel) {
                    let cl = &mut self.clients[c];
                    cl.counter += 1;
                    let cmid = format!("{}-{}", cl.device, cl.counter);
                    let len = 20 + self.rng.below(300);
                    let text = format!("{cmid}:{}", "x".repeat(len));
                    self.send(c, &channel, cmid, text);
                }
            }
            50..=54 => {
                // A retry of the oldest send not acked yet.
                if let Some((cmid, (ch, text))) = self.clients[c]
                    .unacked
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                {
                    self.send(c, &ch, cmid, text);
                }
            }
            55..=89 => self.read(c),
            90..=92 => self.request(c, Req::Ping, serde_json::json!({"type": "ping"})),
            _ => self.disconnect(c),
        }
    }

    /// Reads some (or all) of what the client's socket would give it.
    pub(super) fn read(&mut self, c: usize) {
        let Some((s, conn)) = self.clients[c].conn else {
            return;
        };
        let pending = self.shards[s].output_bytes(conn);
        let avail = pending.len();
        if avail == 0 {
            return;
        }
        let n = if self.rng.chance(50) {
            avail
        } else {
            1 + self.rng.below(avail)
        };
        let bytes = if self.rng.chance(50) {
            // The socket ring's write-only pass: the socket takes `n`
            // bytes, then would block.
            let mut room = n;
            let mut taken = Vec::new();
            let pass = self.shards[s].write_pass(conn, self.now, |iov| {
                if room == 0 {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                let before = taken.len();
                for piece in iov {
                    let k = piece.len().min(room - (taken.len() - before));
                    taken.extend_from_slice(&piece[..k]);
                }
                let k = taken.len() - before;
                room -= k;
                Ok(k)
            });
            if pass == WritePass::Busy && taken.is_empty() {
                // More than writing is due: the driver's general loop.
                self.shards[s].wrote(conn, n, self.now);
                pending[..n].to_vec()
            } else {
                taken
            }
        } else {
            self.shards[s].wrote(conn, n, self.now);
            pending[..n].to_vec()
        };
        self.apply(s);
        let mut events = Vec::new();
        let result = self.clients[c].dec.feed(&bytes, &mut |ev| {
            if let WsEvent::Text(t) = ev {
                events.push(t.to_string());
            } else if let WsEvent::Close(_) = ev {
                events.push("<close>".into());
            }
        });
        if let Err(e) = result {
            self.fail(&format!("client {c}: bad frame from the server: {e:?}"));
        }
        for text in events {
            if text == "<close>" {
                self.log(format!("client {c} got a close"));
                self.disconnect(c);
                return;
            }
            self.on_event(c, &text);
        }
    }

    pub(super) fn on_event(&mut self, c: usize, text: &str) {
        let ev = decode_server_event(text).unwrap_or_else(|e| self.fail(&format!("{e}: {text}")));
        let short: String = text.chars().take(120).collect();
        self.log(format!("client {c} <- {short}"));
        let id_of =
            |id: &Option<serde_json::Value>| id.as_ref().and_then(serde_json::Value::as_u64);
        match ev {
            ServerEvent::Hello { .. }
            | ServerEvent::Pong { .. }
            | ServerEvent::Typing { .. }
            | ServerEvent::Head { .. } => {
                if let ServerEvent::Pong { id } = ev {
                    self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                }
            }
            ServerEvent::Joined { id, channel, head } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                let Some(Req::Join {
                    channel: asked,
                    since,
                }) = req
                else {
                    self.fail(&format!("client {c}: joined without a join: {text}"));
                };
                if asked != channel {
                    self.fail(&format!(
                        "client {c}: joined answers another channel: {text}"
                    ));
                }
                let req_id = id_of(&id).unwrap_or(0);
                let state = self.clients[c].chans[&channel].state;
                let live = match state {
                    ChanState::Joining { req } if req == req_id => true,
                    ChanState::Leaving {
                        join: Some(req), ..
                    } if req == req_id => false,
                    _ => {
                        // The answer to an earlier join of this channel
                        // (left, maybe joined again, meanwhile): it must
                        // not start a stream.
                        self.counts.stale_joins += 1;
                        return;
                    }
                };
                if let Some(s) = since {
                    if s > head {
                        self.fail(&format!("client {c}: since {s} beyond head {head}"));
                    }
                }
                let ch = self.clients[c].chans.get_mut(&channel).unwrap();
                let from = since.unwrap_or(head);
                ch.state = match (live, ch.state) {
                    (true, _) => ChanState::Live { next: from + 1 },
                    (false, ChanState::Leaving { rejoin, .. }) => ChanState::Leaving {
                        join: None,
                        next: Some(from + 1),
                        rejoin,
                    },
                    (false, other) => other,
                };
                if ch.last_seen.is_none_or(|l| l < from) {
                    ch.last_seen = Some(from);
                }
            }
            ServerEvent::Left { id, channel } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                if !matches!(req, Some(Req::Leave)) {
                    self.fail(&format!("client {c}: an unasked left: {text}"));
                }
                let ch = self.clients[c].chans.get_mut(&channel).unwrap();
                if let ChanState::Leaving { rejoin, .. } = ch.state {
                    ch.state = match rejoin {
                        Some(req) => ChanState::Joining { req },
                        None => ChanState::Out,
                    };
                }
            }
            ServerEvent::Msg(m) => self.on_msg(c, &m),
            ServerEvent::Ack {
                id,
                channel,
                client_msg_id,
                seq,
                duplicate,
                ..
            } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                let Some(Req::Send { channel: ch, cmid }) = req else {
                    self.fail(&format!("client {c}: an ack without a send: {text}"));
                };
                if ch != channel || cmid != client_msg_id {
                    self.fail(&format!("client {c}: an ack for another send: {text}"));
                }
                let key = (
                    self.clients[c].user.clone(),
                    self.clients[c].device.clone(),
                    cmid.clone(),
                );
                match self.acked.get(&key) {
                    Some(&first) if first != seq => {
                        self.fail(&format!("a retry got seq {seq}, the original {first}"))
                    }
                    Some(_) if !duplicate => {
                        self.fail(&format!("a retry's ack says duplicate false: {text}"))
                    }
                    Some(_) => {}
                    None => {
                        self.acked.insert(key, seq);
                    }
                }
                self.check_stored(&channel, seq, &self.clients[c].user.clone(), &cmid);
                self.counts.acks += 1;
                self.counts.duplicate_acks += u64::from(duplicate);
                self.clients[c].acked_here.insert(cmid.clone());
                self.clients[c].unacked.remove(&cmid);
            }
            ServerEvent::Error { id, code, .. } => {
                let req = self.clients[c].pending.remove(&id_of(&id).unwrap_or(0));
                match (req, code.as_str()) {
                    // A failed commit: the client retries later.
                    (Some(Req::Send { .. }), "unavailable") => {}
                    // A head that could not be loaded: joined again later.
                    (Some(Req::Join { channel, .. }), "unavailable") => {
                        let req_id = id_of(&id).unwrap_or(0);
                        let ch = self.clients[c].chans.get_mut(&channel).unwrap();
                        ch.state = match ch.state {
                            ChanState::Joining { req } if req == req_id => ChanState::Out,
                            ChanState::Leaving {
                                join: Some(req),
                                rejoin,
                                ..
                            } if req == req_id => ChanState::Leaving {
                                join: None,
                                next: None,
                                rejoin,
                            },
                            ChanState::Leaving {
                                rejoin: Some(req),
                                join,
                                next,
                            } if req == req_id => ChanState::Leaving {
                                join,
                                next,
                                rejoin: None,
                            },
                            other => other,
                        };
                    }
                    // A repeated join answered when the channel was left
                    // before the first was answered.
                    (Some(Req::Join { .. }), "bad_request") => {}
                    (req, _) => {
                        self.fail(&format!("client {c}: unexpected error for {req:?}: {text}"))
                    }
                }
            }
            ServerEvent::History { .. } | ServerEvent::Other(_) => {}
        }
    }

    pub(super) fn on_msg(&mut self, c: usize, m: &chat_proto::ClientMsg) {
        let me_user = self.clients[c].user.clone();
        let me_device = self.clients[c].device.clone();
        let state = self.clients[c].chans[&m.channel].state;
        let next = match state {
            ChanState::Live { next }
            | ChanState::Leaving {
                next: Some(next), ..
            } => next,
            other => self.fail(&format!(
                "client {c}: msg {} of {} while {other:?}",
                m.seq, m.channel
            )),
        };
        if m.seq != next {
            self.fail(&format!(
                "client {c}: {} seq {} where {next} was next (a gap or a duplicate)",
                m.channel, m.seq
            ));
        }
        let ch = self.clients[c].chans.get_mut(&m.channel).unwrap();
        ch.state = match ch.state {
            ChanState::Leaving { join, rejoin, .. } => ChanState::Leaving {
                join,
                next: Some(next + 1),
                rejoin,
            },
            _ => ChanState::Live { next: next + 1 },
        };
        ch.last_seen = Some(m.seq);
        self.counts.delivered += 1;
        if m.from == me_user
            && m.device == me_device
            && self.clients[c].sent_here.contains(&m.client_msg_id)
            && !self.clients[c].acked_here.contains(&m.client_msg_id)
        {
            self.fail(&format!(
                "client {c}: its own msg {} came before its ack",
                m.client_msg_id
            ));
        }
        self.check_stored(&m.channel, m.seq, &m.from, &m.client_msg_id);
        let stored = self.store.message(&m.channel, Seq(m.seq)).unwrap().unwrap();
        if m.text.as_deref() != Some(stored.text.as_str()) {
            self.fail(&format!(
                "{} seq {}: delivered text differs from the store",
                m.channel, m.seq
            ));
        }
    }

    /// The store holds `seq` of `channel`, sent by `from` as `cmid`: nothing
    /// is delivered or acked before it is stored.
    pub(super) fn check_stored(&self, channel: &str, seq: u64, from: &str, cmid: &str) {
        match self.store.message(channel, Seq(seq)) {
            Ok(Some(m)) if m.from == from && m.client_msg_id == cmid => {}
            other => self.fail(&format!(
                "{channel} seq {seq} ({from}/{cmid}) delivered or acked but the store has {other:?}"
            )),
        }
    }

    // ----- a run ---------------------------------------------------------------

    /// The end state: dense channels, every message stored once, every live
    /// member caught up.
    pub(super) fn check_end(&mut self) {
        for channel in CHANNELS {
            let head = self.store.head(channel).unwrap().0;
            let all = self
                .store
                .read(
                    channel,
                    ReadRange::After(Seq(0)),
                    ReadLimit {
                        messages: 1_000_000,
                        bytes: usize::MAX,
                    },
                )
                .unwrap()
                .messages;
            let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
            if seqs != (1..=head).collect::<Vec<_>>() {
                self.fail(&format!(
                    "{channel}: stored seqs are not 1..={head}: {seqs:?}"
                ));
            }
            let mut keys = HashSet::new();
            for m in &all {
                if !keys.insert((m.from.clone(), m.device.clone(), m.client_msg_id.clone())) {
                    self.fail(&format!("{channel}: {} stored twice", m.client_msg_id));
                }
            }
            for c in 0..CLIENTS {
                if self.clients[c].conn.is_none() {
                    continue;
                }
                if let ChanState::Live { next } = self.clients[c].chans[channel].state {
                    if next != head + 1 {
                        self.fail(&format!(
                            "client {c} in {channel} stopped at {} of head {head}",
                            next - 1
                        ));
                    }
                }
            }
        }
        for ((user, device, cmid), seq) in &self.acked {
            let ok = CHANNELS.iter().any(|ch| {
                self.store
                    .message(ch, Seq(*seq))
                    .ok()
                    .flatten()
                    .is_some_and(|m| {
                        &m.from == user && &m.device == device && &m.client_msg_id == cmid
                    })
            });
            if !ok {
                self.fail(&format!(
                    "acked {user}/{device}/{cmid} at {seq} is not stored"
                ));
            }
        }
    }
}
