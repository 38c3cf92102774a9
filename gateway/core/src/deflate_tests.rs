//! permessage-deflate in a shard's fan-out: a committed batch is compressed
//! once and its compressed frames go to every member that negotiated the
//! extension; the others get the plain frames, as before.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chat_model::{Channel, MessageKind, Seq, StoredMessage};
use chat_proto::auth::Identity;
use chat_proto::request::JoinMode;
use chat_proto::response::{self, MsgView};

use crate::batch::Batch;
use crate::conn::{Phase, Sub};
use crate::replica::Replica;
use crate::vocab::ConnId;
use crate::{Config, ShardId, ShardState, Stats};

fn batch(channel: &Channel, first: u64, n: u64) -> Arc<Batch> {
    let mut b = Batch::new(channel.clone(), Seq(first));
    for seq in first..first + n {
        let m = StoredMessage {
            seq,
            from: "alice".into(),
            device: "laptop".into(),
            client_msg_id: format!("m{seq}"),
            kind: MessageKind::Text,
            text: format!("anyone up for lunch at the thai place around 12:30? (#{seq})"),
            target: None,
            media: None,
            ts: 1_700_000_000_000,
            edited: false,
            deleted: false,
        };
        b.push_frame(|out| response::msg(out, channel, &MsgView::from_stored(&m)));
    }
    Arc::new(b)
}

/// A shard with `deflate.len()` live members of `channel`, their outboxes
/// emptied of `hello`.
fn shard_with_members(channel: &Channel, deflate: &[bool]) -> (ShardState, Vec<ConnId>) {
    let mut st = ShardState::new(
        ShardId(0),
        1,
        Arc::new(Config::default()),
        Arc::new(Stats::default()),
    );
    let mut rep = Replica::new();
    let mut ids = Vec::new();
    for (i, &z) in deflate.iter().enumerate() {
        let id = st.open_conn(
            &Identity {
                user: format!("u{i}"),
                device: "d".into(),
                expires_ms: None,
            },
            1_000,
        );
        if z {
            st.use_permessage_deflate(id);
        }
        let pending = st.output_bytes(id).len();
        st.wrote(id, pending, 1_000);
        st.conns.get_mut(&id).unwrap().subs.insert(
            channel.clone(),
            Sub {
                phase: Phase::Live,
                ..Sub::joining(1, JoinMode::Live)
            },
        );
        rep.members.insert(id);
        ids.push(id);
    }
    st.replicas.insert(channel.clone(), rep);
    (st, ids)
}

#[test]
fn deflate_members_share_one_compressed_copy_and_plain_members_get_plain_frames() {
    let channel = Channel::from_validated(Arc::from("room:z"));
    let (mut st, ids) = shard_with_members(&channel, &[true, false, true, false]);
    let b = batch(&channel, 1, 3);
    st.on_batch(&b);
    let out: Vec<Vec<u8>> = ids.iter().map(|id| st.output_bytes(*id)).collect();
    assert_eq!(
        out[1],
        b.frames_after(Seq::ZERO),
        "plain members: the frames as today"
    );
    assert_eq!(out[3], out[1]);
    let shared = b.deflated(&mut chat_proto::deflate::Deflater::new());
    assert_eq!(
        out[0],
        shared.frames_after(Seq::ZERO),
        "the copy built during the fan-out, not a new one"
    );
    assert_eq!(out[2], out[0], "every deflate member gets the same bytes");
    assert!(out[0].len() < out[1].len());
    assert_eq!(out[0][0] & 0x40, 0x40, "RSV1: compressed");
}

#[test]
fn a_batch_without_deflate_members_is_never_compressed() {
    let channel = Channel::from_validated(Arc::from("room:p"));
    let (mut st, _) = shard_with_members(&channel, &[false, false]);
    let b = batch(&channel, 1, 2);
    st.on_batch(&b);
    assert!(!b.has_deflated());
}

#[test]
fn a_deflate_member_catching_up_from_the_ring_gets_the_compressed_frames() {
    let channel = Channel::from_validated(Arc::from("room:c"));
    let (mut st, ids) = shard_with_members(&channel, &[true]);
    let b = batch(&channel, 1, 3);
    // The member is behind a full outbox: the batch lands in the ring only.
    st.conns
        .get_mut(&ids[0])
        .unwrap()
        .subs
        .get_mut(&channel)
        .unwrap()
        .phase = Phase::CatchUp { fetching: true };
    st.on_batch(&b);
    assert!(st.output_bytes(ids[0]).is_empty());
    let sub = st
        .conns
        .get_mut(&ids[0])
        .unwrap()
        .subs
        .get_mut(&channel)
        .unwrap();
    sub.phase = Phase::CatchUp { fetching: false };
    st.catch_up(ids[0], &channel);
    let shared = b.deflated(&mut chat_proto::deflate::Deflater::new());
    assert_eq!(st.output_bytes(ids[0]), shared.frames_after(Seq::ZERO));
}
