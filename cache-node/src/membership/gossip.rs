//! SWIM membership with foca, sans-I/O: [`Gossip`] takes datagrams and timer events and returns
//! what to send, what to schedule, and whether the member list changed. The driver
//! (`driver.rs`) moves those over QUIC datagrams and tokio timers; the tests here move them
//! between several instances in memory under a clock they drive.
//!
//! A node advertises itself `serving` and announces itself to the seeds; until another member
//! has acknowledged it (foca's `Active`) it lists itself as `joining`. `drain` re-advertises it
//! with weight 0 under a new generation. A member that stops answering probes is suspected, then
//! declared down after [`suspect_to_down_after`](foca::Config::suspect_to_down_after).
//!
//! Only operator actions (drain) change a live node's identity. foca takes a payload only when it
//! is addressed to the receiver's current identity, so two nodes that changed identity at the
//! same moment would address each other's old selves and ignore each other; a state that every
//! node changes at once (like joining → serving) therefore stays local.

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use bytes::Bytes;
use cache_proto::wire::{MemberInfo, MemberState};
use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand_foca::{SeedableRng, rngs::StdRng};

use super::peer::Peer;

/// Largest gossip datagram: fits a QUIC datagram frame under quinn's initial 1200-byte MTU.
pub const MAX_PACKET: usize = 1100;

/// foca tuned for a cache cluster on one network: probe every second, give a probe 500 ms,
/// declare a suspect down after 3 s (a dead node leaves every ring in about 4 s).
pub fn config() -> foca::Config {
    let mut c = foca::Config::new_lan(NonZeroU32::new(16).expect("non-zero"));
    c.probe_period = Duration::from_secs(1);
    c.probe_rtt = Duration::from_millis(500);
    c.suspect_to_down_after = Duration::from_secs(3);
    c.max_packet_size = MAX_PACKET.try_into().expect("non-zero");
    c
}

type Swim = Foca<Peer, PostcardCodec, StdRng, NoCustomBroadcast>;

/// What one step of the protocol asks the driver to do.
#[derive(Debug, Default)]
pub struct Outbox {
    pub send: Vec<(SocketAddr, Bytes)>,
    pub schedule: Vec<(Duration, Timer<Peer>)>,
    /// The member list (or this node's own identity) changed: rebuild the ring.
    pub changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip: {0}")]
    Foca(#[from] foca::Error),
}

pub struct Gossip {
    foca: Swim,
    runtime: AccumulatingRuntime<Peer>,
    seeds: Vec<SocketAddr>,
    changed: bool,
    /// Acknowledged by another member (foca's `Active`), and not alone since.
    active: bool,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("me", self.foca.identity()).field("members", &self.foca.num_members()).finish()
    }
}

impl Gossip {
    /// A node with identity `me` that will look for the cluster at `seeds` (its own address
    /// among them is ignored).
    pub fn new(me: Peer, seeds: &[SocketAddr], rng_seed: u64) -> Self {
        let seeds = seeds.iter().copied().filter(|&s| s != me.addr).collect();
        let foca = Foca::new(me, config(), StdRng::seed_from_u64(rng_seed), PostcardCodec);
        Self { foca, runtime: AccumulatingRuntime::new(), seeds, changed: true, active: false }
    }

    pub fn me(&self) -> &Peer {
        self.foca.identity()
    }

    /// Announces this node to every seed (again: harmless once joined).
    pub fn announce(&mut self) -> Result<(), GossipError> {
        for &seed in &self.seeds {
            self.foca.announce(Peer::seed(seed), &mut self.runtime)?;
        }
        Ok(())
    }

    /// Whether this node knows no other live member (it should announce to the seeds again).
    pub fn is_alone(&self) -> bool {
        self.foca.num_members() == 0
    }

    /// A datagram from a peer. Bad bytes are an error and change nothing.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), GossipError> {
        self.foca.handle_data(data, &mut self.runtime)?;
        Ok(())
    }

    pub fn handle_timer(&mut self, timer: Timer<Peer>) -> Result<(), GossipError> {
        self.foca.handle_timer(timer, &mut self.runtime)?;
        Ok(())
    }

    /// Re-advertises this node with another state and weight.
    pub fn set_state(&mut self, state: MemberState, weight: u32) -> Result<(), GossipError> {
        let next = self.me().with(state, weight);
        self.foca.change_identity(next, &mut self.runtime)?;
        self.changed = true;
        Ok(())
    }

    /// Tells the cluster this node is leaving (on shutdown).
    pub fn leave(&mut self) -> Result<(), GossipError> {
        self.foca.leave_cluster(&mut self.runtime)?;
        Ok(())
    }

    /// This node (`joining` until acknowledged) and every live member, one entry per id (the
    /// newest generation).
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut peers: Vec<&Peer> =
            self.foca.iter_members().map(|m| m.id()).filter(|p| !p.is_seed_placeholder()).collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id).then(b.generation.cmp(&a.generation)));
        peers.dedup_by(|later, first| later.id == first.id);
        let mut me = self.me().info();
        if !self.active && me.state == MemberState::Serving {
            me.state = MemberState::Joining;
        }
        let mut members: Vec<MemberInfo> = peers.into_iter().filter(|p| p.id != me.id).map(Peer::info).collect();
        members.push(me);
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members
    }

    /// Takes what the last calls produced, noting from foca's notifications whether the member
    /// list changed.
    pub fn take(&mut self) -> Result<Outbox, GossipError> {
        let mut out = Outbox::default();
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::Active => self.active = true,
                OwnedNotification::Idle | OwnedNotification::Defunct => self.active = false,
                OwnedNotification::MemberUp(_)
                | OwnedNotification::MemberDown(_)
                | OwnedNotification::Rename(..)
                | OwnedNotification::Rejoin(_) => {}
            }
            self.changed = true;
        }
        while let Some((to, data)) = self.runtime.to_send() {
            out.send.push((to.addr, data));
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            out.schedule.push((after, timer));
        }
        out.changed = std::mem::take(&mut self.changed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use cache_proto::key::NodeId;

    use super::*;

    /// Several nodes, a network in memory that can cut nodes off, and a clock the test drives.
    struct Sim {
        now: Duration,
        nodes: BTreeMap<SocketAddr, Gossip>,
        /// (due, seq, node, timer)
        timers: Vec<(Duration, u64, SocketAddr, Timer<Peer>)>,
        wire: Vec<(SocketAddr, Bytes)>,
        down: HashSet<SocketAddr>,
        seq: u64,
    }

    fn addr(i: u16) -> SocketAddr {
        ([10, 0, 0, i as u8], 7000).into()
    }

    fn peer(i: u16, generation: u64) -> Peer {
        Peer {
            id: NodeId::new(&format!("n{i}")).expect("id"),
            addr: addr(i),
            weight: 1,
            state: MemberState::Serving,
            generation,
        }
    }

    impl Sim {
        fn new() -> Self {
            Self {
                now: Duration::ZERO,
                nodes: BTreeMap::new(),
                timers: vec![],
                wire: vec![],
                down: HashSet::new(),
                seq: 0,
            }
        }

        fn start(&mut self, p: Peer, seeds: &[SocketAddr]) {
            let at = p.addr;
            let mut g = Gossip::new(p, seeds, u64::from(at.port()) ^ self.seq);
            g.announce().expect("announce");
            self.nodes.insert(at, g);
            self.down.remove(&at);
            self.flush(at);
        }

        fn flush(&mut self, at: SocketAddr) {
            let Some(g) = self.nodes.get_mut(&at) else { return };
            let out = g.take().expect("take");
            for (after, timer) in out.schedule {
                self.seq += 1;
                self.timers.push((self.now + after, self.seq, at, timer));
            }
            if !self.down.contains(&at) {
                self.wire.extend(out.send);
            }
        }

        /// Runs the cluster for `secs` simulated seconds, in 10 ms steps.
        fn run(&mut self, secs: f64) {
            let end = self.now + Duration::from_secs_f64(secs);
            while self.now < end {
                self.now += Duration::from_millis(10);
                for (to, data) in std::mem::take(&mut self.wire) {
                    if self.down.contains(&to) {
                        continue;
                    }
                    if let Some(g) = self.nodes.get_mut(&to) {
                        // Stale or unknown-sender messages are errors foca reports; fine.
                        let _ = g.handle_data(&data);
                        self.flush(to);
                    }
                }
                self.timers.sort_by_key(|t| (t.0, t.1));
                let due: Vec<_> = self.timers.iter().take_while(|t| t.0 <= self.now).cloned().collect();
                self.timers.drain(..due.len());
                for (_, _, at, timer) in due {
                    if self.down.contains(&at) {
                        continue;
                    }
                    if let Some(g) = self.nodes.get_mut(&at) {
                        g.handle_timer(timer).expect("timer");
                        self.flush(at);
                    }
                }
            }
        }

        /// `kill -9`: the node sends and receives nothing from now on.
        fn kill(&mut self, at: SocketAddr) {
            self.down.insert(at);
            self.nodes.remove(&at);
        }

        fn view(&self, at: SocketAddr) -> Vec<(String, MemberState, u32)> {
            self.nodes[&at].members().into_iter().map(|m| (m.id.to_string(), m.state, m.weight)).collect()
        }

        fn ids(&self, at: SocketAddr) -> Vec<String> {
            self.view(at).into_iter().map(|v| v.0).collect()
        }
    }

    #[test]
    fn nodes_join_through_a_seed_and_turn_serving() {
        let mut sim = Sim::new();
        sim.start(peer(1, 100), &[addr(1)]);
        assert_eq!(sim.view(addr(1)), [("n1".to_owned(), MemberState::Joining, 1)]);
        for i in 2..=3 {
            sim.start(peer(i, 100), &[addr(1)]);
        }
        sim.run(3.0);
        for i in 1..=3 {
            assert_eq!(sim.ids(addr(i)), ["n1", "n2", "n3"], "node {i}");
            assert!(sim.view(addr(i)).iter().all(|v| v.1 == MemberState::Serving), "{:?}", sim.view(addr(i)));
        }
    }

    #[test]
    fn a_dead_node_is_removed_within_seconds_and_comes_back_with_its_id() {
        let mut sim = Sim::new();
        for i in 1..=4 {
            sim.start(peer(i, 100), &[addr(1)]);
        }
        sim.run(3.0);
        sim.kill(addr(3));
        let killed_at = sim.now;
        let mut removed_after = None;
        for _ in 0..200 {
            sim.run(0.1);
            if [1, 2, 4].iter().all(|&i| !sim.ids(addr(i)).contains(&"n3".to_owned())) {
                removed_after = Some(sim.now - killed_at);
                break;
            }
        }
        let removed_after = removed_after.expect("n3 removed from every view within 20 s");
        assert!(removed_after < Duration::from_secs(8), "took {removed_after:?}");

        // Restarted: same id and address, a later generation (its start time).
        sim.start(peer(3, 200), &[addr(1)]);
        sim.run(3.0);
        for i in 1..=4 {
            assert_eq!(sim.ids(addr(i)), ["n1", "n2", "n3", "n4"], "node {i}");
        }
    }

    #[test]
    fn drain_is_seen_by_everyone_as_weight_zero() {
        let mut sim = Sim::new();
        for i in 1..=3 {
            sim.start(peer(i, 100), &[addr(1)]);
        }
        sim.run(3.0);
        let g = sim.nodes.get_mut(&addr(2)).expect("n2");
        g.set_state(MemberState::Draining, 0).expect("drain");
        sim.flush(addr(2));
        sim.run(2.0);
        for i in 1..=3 {
            let view = sim.view(addr(i));
            assert!(view.contains(&("n2".to_owned(), MemberState::Draining, 0)), "node {i}: {view:?}");
            assert_eq!(view.len(), 3, "node {i}: {view:?}");
        }
    }

    #[test]
    fn a_node_that_starts_before_its_seed_joins_once_the_seed_is_up() {
        let mut sim = Sim::new();
        sim.start(peer(2, 100), &[addr(1)]);
        sim.run(1.0);
        assert!(sim.nodes[&addr(2)].is_alone());
        sim.start(peer(1, 100), &[addr(1)]);
        // The driver re-announces while alone; do what it does.
        for _ in 0..3 {
            let g = sim.nodes.get_mut(&addr(2)).expect("n2");
            if g.is_alone() {
                g.announce().expect("announce");
                sim.flush(addr(2));
            }
            sim.run(1.0);
        }
        assert_eq!(sim.ids(addr(1)), ["n1", "n2"]);
        assert_eq!(sim.ids(addr(2)), ["n1", "n2"]);
    }

    #[test]
    fn garbage_datagrams_are_errors_that_change_nothing() {
        let mut g = Gossip::new(peer(1, 100), &[addr(2)], 1);
        let before = g.members();
        for bad in [&b""[..], b"\x00", b"\xff\xff\xff\xff", &[7u8; 2000][..], &[0u8; 64][..]] {
            assert!(g.handle_data(bad).is_err(), "{bad:?}");
        }
        assert_eq!(g.members(), before);
    }
}
