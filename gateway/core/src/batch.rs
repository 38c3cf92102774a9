//! A committed batch: one channel's newly stored messages, each encoded once
//! as a ready-to-send WebSocket frame.
//!
//! Server frames are unmasked, so every recipient gets the same bytes: the
//! owner encodes each message once, wraps the batch in an `Arc`, and hands a
//! pointer to every shard with subscribers. Frames sit back to back in one
//! buffer, so a connection that is behind by k messages of a batch gets them
//! as one contiguous range, which its outbox holds by reference
//! ([`Shared`], `conn.rs`).
//!
//! For members that negotiated permessage-deflate the batch keeps a second
//! set of the same frames, compressed ([`Batch::deflated`]): built when the
//! first such member needs it, by that member's shard, and shared with
//! every such member of every shard (compression costs per batch, not per
//! recipient; see `chat_proto::deflate`).

use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use chat_model::{Channel, Seq};
use chat_proto::deflate::Deflater;

/// A shard's handle on a batch it received: held by the replica's ring and
/// by every outbox that queued frames of the batch by reference
/// ([`crate::conn::Outbox::push_frames`]). Counted without atomics — all
/// on the shard's thread — so a 10,000-member fan-out does not bump the
/// cross-shard `Arc`'s count 10,000 times (the other shards' fan-outs bump
/// theirs on their own cores).
pub(crate) type Shared = Rc<Arc<Batch>>;

/// Committed messages `first_seq ..= last_seq()` of one channel.
pub struct Batch {
    /// The channel.
    pub channel: Channel,
    /// Seq of the first frame.
    pub(crate) first_seq: Seq,
    /// All frames, back to back.
    data: Vec<u8>,
    /// `ends[i]` is the end offset in `data` of the frame of `first_seq + i`.
    ends: Vec<usize>,
    /// The oldest seq an edit or delete in this batch targets: frames of
    /// that seq and later, encoded before, no longer show the latest view.
    pub(crate) oldest_target: Option<Seq>,
    /// The same frames compressed for permessage-deflate, once a member
    /// that negotiated it needed them. Memory: at most the plain frames'
    /// size again, for as long as the batch lives (the replica rings count
    /// only the plain frames).
    deflated: OnceLock<Box<Batch>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("channel", &self.channel)
            .field("first_seq", &self.first_seq)
            .field("len", &self.ends.len())
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Batch {
    /// Starts an empty batch whose first frame will carry `first_seq`.
    pub(crate) fn new(channel: Channel, first_seq: Seq) -> Batch {
        Batch {
            channel,
            first_seq,
            data: Vec::new(),
            ends: Vec::new(),
            oldest_target: None,
            deflated: OnceLock::new(),
        }
    }

    /// The same frames (same seqs, same order) compressed with
    /// permessage-deflate: each frame that shrinks is compressed on its own
    /// (no context takeover), the others are copied as they are. Built with
    /// `deflater` on the first call — by whichever shard asks first; a shard
    /// that races it builds its own copy once and keeps the first one — and
    /// shared afterwards, so it is never built per recipient.
    pub(crate) fn deflated(&self, deflater: &mut Deflater) -> &Batch {
        if let Some(done) = self.deflated.get() {
            return done;
        }
        let mut copy = Batch::new(self.channel.clone(), self.first_seq);
        copy.oldest_target = self.oldest_target;
        copy.data.reserve(self.data.len());
        let mut start = 0;
        for &end in &self.ends {
            copy.push_frame(|out| {
                deflater.append_frame(&self.data[start..end], out);
            });
            start = end;
        }
        copy.data.shrink_to_fit();
        // Never blocks: a racing shard's copy, identical, may win.
        let _ = self.deflated.set(Box::new(copy));
        self.deflated.get().map_or(self, |b| &**b)
    }

    /// The frames to send: the plain ones, or (`deflated`) the compressed
    /// copy once it was built ([`Batch::deflated`]).
    pub(crate) fn view(&self, deflated: bool) -> &Batch {
        if deflated {
            self.deflated.get().map_or(self, |b| &**b)
        } else {
            self
        }
    }

    /// Bytes `range` of the frames (a range [`Batch::frames_fitting_range`]
    /// gave).
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.data[range]
    }

    /// Records that a message of this batch edits or deletes `target`.
    pub(crate) fn note_target(&mut self, target: Seq) {
        self.oldest_target = Some(self.oldest_target.map_or(target, |t| t.min(target)));
    }

    /// Whether the compressed copy was built (for tests).
    #[cfg(test)]
    pub(crate) fn has_deflated(&self) -> bool {
        self.deflated.get().is_some()
    }

    /// Appends the frame of the next seq, produced by `encode`.
    pub(crate) fn push_frame(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.data);
        self.ends.push(self.data.len());
    }

    /// Number of messages.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Seq of the last frame (`first_seq - 1` when empty).
    pub fn last_seq(&self) -> Seq {
        Seq(self.first_seq.0 + self.ends.len() as u64 - 1)
    }

    /// Bytes of all frames.
    pub(crate) fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Bytes the batch keeps alive: its frames and, once built, their
    /// compressed copy.
    pub(crate) fn held_bytes(&self) -> usize {
        self.data.len() + self.deflated.get().map_or(0, |d| d.data.len())
    }

    /// The frames of every seq greater than `cursor` (all of them when the
    /// cursor is before the batch, none when it is at or past its end).
    pub(crate) fn frames_after(&self, cursor: Seq) -> &[u8] {
        if cursor < self.first_seq {
            return &self.data;
        }
        let skip = (cursor.0 - self.first_seq.0 + 1) as usize;
        if skip >= self.ends.len() {
            return &[];
        }
        &self.data[self.ends[skip - 1]..]
    }

    /// The frames after `cursor` that fit in `room` bytes (at least one
    /// frame when `at_least_one`), and the seq of the last one taken
    /// (`cursor` itself when none was taken).
    #[cfg(test)]
    pub(crate) fn frames_fitting(
        &self,
        cursor: Seq,
        room: usize,
        at_least_one: bool,
    ) -> (&[u8], Seq) {
        let (range, upto) = self.frames_fitting_range(cursor, room, at_least_one);
        (&self.data[range], upto)
    }

    /// [`Batch::frames_fitting`] as a byte range of the frames, for an
    /// outbox that queues them by reference.
    pub(crate) fn frames_fitting_range(
        &self,
        cursor: Seq,
        room: usize,
        at_least_one: bool,
    ) -> (Range<usize>, Seq) {
        let end = self.data.len();
        let start = end - self.frames_after(cursor).len();
        if start == end {
            return (end..end, cursor.max(self.last_seq()));
        }
        if end - start <= room {
            return (start..end, self.last_seq());
        }
        let first = self.first_seq.0;
        let first_idx = (cursor.0.max(first - 1) + 1 - first) as usize;
        // Last index whose end still fits.
        let fit = self.ends[first_idx..].partition_point(|&e| e - start <= room);
        let take = if fit == 0 && at_least_one { 1 } else { fit };
        if take == 0 {
            return (start..start, cursor);
        }
        let end = self.ends[first_idx + take - 1];
        (start..end, Seq(first + (first_idx + take - 1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: u64, n: u64) -> Batch {
        let mut b = Batch::new(Channel::from_validated(Arc::from("room:t")), Seq(first));
        for s in first..first + n {
            b.push_frame(|out| out.extend_from_slice(format!("[{s}]").as_bytes()));
        }
        b
    }

    #[test]
    fn frames_after_skips_what_the_cursor_already_has() {
        let b = batch(5, 3);
        assert_eq!(b.last_seq(), Seq(7));
        assert_eq!(b.frames_after(Seq(0)), b"[5][6][7]");
        assert_eq!(b.frames_after(Seq(4)), b"[5][6][7]");
        assert_eq!(b.frames_after(Seq(5)), b"[6][7]");
        assert_eq!(b.frames_after(Seq(6)), b"[7]");
        assert_eq!(b.frames_after(Seq(7)), b"");
        assert_eq!(b.frames_after(Seq(100)), b"");
    }

    /// A batch of `msg`-like JSON text frames of seqs first..first+n.
    fn json_batch(first: u64, n: u64) -> Batch {
        let mut b = Batch::new(Channel::from_validated(Arc::from("room:t")), Seq(first));
        for s in first..first + n {
            b.push_frame(|out| {
                chat_proto::ws::encode_text_with(out, |out| {
                    out.extend_from_slice(
                        format!(
                            r#"{{"type":"msg","channel":"room:t","seq":{s},"from":"alice","text":"see you at the standup tomorrow, bring the notes (#{s})"}}"#
                        )
                        .as_bytes(),
                    );
                });
            });
        }
        b
    }

    /// The texts of server frames, read by a client that negotiated
    /// permessage-deflate.
    fn texts(frames: &[u8]) -> Vec<String> {
        use chat_proto::ws::{Role, WsDecoder, WsEvent};
        let mut dec = WsDecoder::new(Role::Client, 1 << 20).with_permessage_deflate();
        let mut inflater = chat_proto::deflate::Inflater::new();
        let mut out = Vec::new();
        dec.feed_with(frames, &mut inflater, &mut |e| {
            if let WsEvent::Text(t) = e {
                out.push(t.to_owned());
            }
        })
        .expect("valid frames");
        out
    }

    #[test]
    fn the_compressed_copy_is_built_once_and_holds_the_same_seqs_smaller() {
        let b = json_batch(5, 4);
        let mut deflater = Deflater::new();
        let first: *const Batch = b.deflated(&mut deflater);
        let again: *const Batch = b.deflated(&mut Deflater::new());
        assert!(std::ptr::eq(first, again), "built once, then shared");
        let z = b.deflated(&mut deflater);
        assert_eq!((z.first_seq, z.last_seq()), (b.first_seq, b.last_seq()));
        assert!(z.byte_len() < b.byte_len());
        // Every cursor and budget cut gives the same messages, compressed.
        assert_eq!(texts(z.frames_after(Seq(0))), texts(b.frames_after(Seq(0))));
        assert_eq!(texts(z.frames_after(Seq(6))), texts(b.frames_after(Seq(6))));
        assert_eq!(texts(z.frames_after(Seq(6))).len(), 2);
        let (bytes, upto) = z.frames_fitting(Seq(4), 1, true);
        assert_eq!(upto, Seq(5), "one frame: the first after the cursor");
        assert_eq!(texts(bytes), texts(b.frames_fitting(Seq(4), 1, true).0));
    }

    #[test]
    fn frames_fitting_takes_whole_frames_within_the_room() {
        let b = batch(5, 3); // each frame is 3 bytes
        let fit = |cursor, room, at_least_one| b.frames_fitting(Seq(cursor), room, at_least_one);
        assert_eq!(fit(4, 100, false), (&b"[5][6][7]"[..], Seq(7)));
        assert_eq!(fit(4, 7, false), (&b"[5][6]"[..], Seq(6)));
        assert_eq!(fit(5, 3, false), (&b"[6]"[..], Seq(6)));
        assert_eq!(fit(4, 2, false), (&b""[..], Seq(4)));
        assert_eq!(fit(4, 2, true), (&b"[5]"[..], Seq(5)));
        assert_eq!(fit(0, 3, false), (&b"[5]"[..], Seq(5)));
    }
}
