//! `Gossip::handle_data` (what a node does with a gossip datagram from another node): any
//! sequence of datagrams, raw or mutated from a real join, and the timers they schedule, never
//! panics, and the member list that results lists this node once. (Whatever members gossip
//! lists, the ring built from them is fuzzed by `members_json`, from any member list.)
//!
//! Input: `flags | record*`, a record being `tag | len (2 bytes) | bytes`. Flag bit 0: the node
//! first takes the datagrams of a real join (it knows a peer). Even tag: `bytes` is a datagram.
//! Odd tag: a captured datagram of that join, XORed with `bytes` (longer `bytes` append), so the
//! fuzzer reaches past the decoder into foca's handling.
#![no_main]

use std::{net::SocketAddr, sync::OnceLock};

use cache_proto::{key::NodeId, wire::MemberState};
use cache_node::membership::{gossip::Gossip, peer::Peer};
use libfuzzer_sys::fuzz_target;

fn peer(i: u8) -> Peer {
    Peer {
        id: NodeId::new(&format!("n{i}")).expect("id"),
        addr: addr(i),
        weight: 1,
        state: MemberState::Serving,
        generation: 100,
    }
}

fn addr(i: u8) -> SocketAddr {
    ([10, 0, 0, i], 7000).into()
}

/// The datagrams node 1 and node 2 received during a join, in order.
type Join = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Node 1 and node 2 (seeded by node 1) gossip until quiet; returns what each received, in order.
fn join() -> Join {
    let mut a = Gossip::new(peer(1), &[addr(1)], 1);
    let mut b = Gossip::new(peer(2), &[addr(1)], 2);
    b.announce().expect("announce");
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    let mut wire: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for g in [&mut a, &mut b] {
        wire.extend(g.take().expect("take").send.into_iter().map(|(to, d)| (to, d.to_vec())));
    }
    for _ in 0..16 {
        let mut next = Vec::new();
        for (to, data) in wire.drain(..) {
            let (g, log) = if to == addr(1) { (&mut a, &mut to_a) } else { (&mut b, &mut to_b) };
            log.push(data.clone());
            let _ = g.handle_data(&data);
            next.extend(g.take().expect("take").send.into_iter().map(|(to, d)| (to, d.to_vec())));
        }
        wire = next;
    }
    assert!(!to_a.is_empty(), "the join sent node 1 nothing");
    (to_a, to_b)
}

fn captured() -> &'static Join {
    static JOIN: OnceLock<Join> = OnceLock::new();
    JOIN.get_or_init(join)
}

fuzz_target!(|data: &[u8]| {
    let (to_a, to_b) = captured();
    let all: Vec<&Vec<u8>> = to_a.iter().chain(to_b).collect();
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let mut node = Gossip::new(peer(1), &[addr(1)], 1);
    if flags & 1 == 1 {
        for d in to_a {
            let _ = node.handle_data(d);
        }
    }
    let mut timers = Vec::new();
    while let [tag, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let datagram = if tag % 2 == 0 {
            bytes.to_vec()
        } else {
            let mut d = all[usize::from(tag / 2) % all.len()].clone();
            for (i, b) in bytes.iter().enumerate() {
                match d.get_mut(i) {
                    Some(x) => *x ^= b,
                    None => d.push(*b),
                }
            }
            d
        };
        let _ = node.handle_data(&datagram);
        timers.extend(node.take().expect("take").schedule.into_iter().map(|(_, t)| t));
    }
    // Fire what was scheduled once (the clock jumps ahead), as the driver would.
    for timer in timers.into_iter().take(64) {
        let _ = node.handle_timer(timer);
    }
    let _ = node.take().expect("take");
    let members = node.members();
    assert_eq!(members.iter().filter(|m| m.id.as_str() == "n1").count(), 1, "{members:?}");
    let mut ids: Vec<_> = members.iter().map(|m| &m.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), members.len(), "members listed twice: {members:?}");
});
