//! The flows a fleet shares (`[fleet]`), so that a flow the routers move to another
//! appliance keeps its backend there.
//!
//! Routers spread flows over the appliances with ECMP and move some whenever an appliance
//! fails or joins. With stable backends that costs nothing: every appliance's Maglev picks
//! what the others picked. While backends are draining it does: a flow remembered on a
//! draining backend is known only to the appliance that remembered it, and another one
//! would pick an active backend, whose kernel resets the connection. So every appliance
//! tells its peers of every flow it remembers anew, and they remember it too:
//!
//! - its workers queue each new flow ([`vipgate_engine::announce`]); the control thread
//!   empties the queues every [`TICK`], and sends each peer the flows as records of the
//!   flow's key and its (VIP, backend) pair by name (numbers are each appliance's own);
//! - a peer checks the message's HMAC-SHA256 under the fleet's key and drops what fails
//!   (counted: a forged record never redirects a flow), finds each pair in its running
//!   tables (a pair it does not have is refused and counted), and has every worker
//!   remember the flows it does not know already (its own decision stands);
//! - a peer acknowledges each message of flows; one not acknowledged within
//!   [`RETRY_AFTER`] is sent again, [`TRIES`] times at most (then given up, and counted);
//!   a peer one was given up for counts as down until it acknowledges again, and gets
//!   each message once (it asks for everything with its hello when it comes back);
//! - records carry no time, so the peers' clocks do not matter; taking one twice, late or
//!   out of order changes nothing (a flow already known keeps its backend; a record of
//!   the same decision keeps the entry alive, as a packet would);
//! - the appliance that announced a flow tells it again every third of the TCP idle
//!   timeout while a worker there has it live, so that the peers' copies do not expire
//!   meanwhile; one that no worker has live any more is forgotten.
//!
//! An appliance that starts says hello to its peers (again after 1 and 5 s, as a hello can
//! be lost); each answers with every flow it knows, its own and those it took from peers
//! (at most [`KEPT`], each kept for the TCP idle timeout since it was last told), a tick's
//! share at a time.
//!
//! Each message is a UDP datagram: `VGF1`, the sender's id and sequence number (an
//! acknowledgement carries the one it acknowledges), its kind (flows, hello,
//! acknowledgement), a count, the records ([`RECORD_LEN`] bytes each), and the HMAC of all
//! that.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use vipgate_engine::announce::Announcer;
use vipgate_engine::flow::FlowKey;
use vipgate_engine::maglev::BackendId;
use vipgate_engine::numbering::Target;
use vipgate_engine::table::VipProtocol;
use vipgate_engine::vip::VipId;

use crate::config::FleetConfig;
use crate::engine::Engine;

/// How often the queues are emptied and the socket read.
pub const TICK: Duration = Duration::from_millis(10);
/// New flows each worker's queue holds between two ticks.
pub const QUEUE: usize = 1 << 16;
/// Records a message carries at most (a message stays under 1 400 bytes).
pub const PER_MESSAGE: usize = 16;
/// A record: the flow's key (40 bytes), the VIP (address 16, protocol 1, port 2, whether
/// it has one 1) and the backend (address 16, port 2, whether it has one 1).
pub const RECORD_LEN: usize = 79;
const MAGIC: &[u8; 4] = b"VGF1";
/// Magic, sender, sequence number, kind, count.
const HEADER_LEN: usize = 4 + 8 + 8 + 1 + 2;
/// A message of flows.
const FLOWS: u8 = 1;
/// A peer that has just started asks for every flow the receiver knows.
const HELLO: u8 = 2;
/// A peer took the message of flows whose sequence number this one carries.
const ACK: u8 = 3;
/// A message of flows not acknowledged within this is sent again ...
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// ... this many times at most.
const TRIES: u32 = 10;
/// Messages awaiting their acknowledgement, at most (the oldest are given up beyond).
const UNACKED: usize = 1 << 14;

/// Records sent to one peer a tick at most, when a peer that started asks for all.
const BULK_PER_TICK: usize = 64 * PER_MESSAGE;
/// Flows the sharing keeps (its own and its peers'), to tell a peer that starts.
pub const KEPT: usize = 1 << 18;
/// How often the flows known are looked at: those not told for a third of the TCP idle
/// timeout are told again if a worker here has them live, and forgotten if none has.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Flows looked at in one go, at most.
const REFRESH_BATCH: usize = 4096;
/// How long the workers have to say which flows they have live.
const ALIVE_TIMEOUT: Duration = Duration::from_millis(100);
/// When a starting appliance says hello: at once, then after these.
const HELLO_AGAIN: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];
const MAC_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What the fleet's sharing did, since start (`ctl status`, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetCounts {
    /// Records sent (to each peer: a flow sent to two peers counts twice).
    pub records_sent: u64,
    /// Messages that could not be sent (the kernel refused them).
    pub send_errors: u64,
    /// Records received and handed to the workers to remember.
    pub records_taken: u64,
    /// Messages dropped: their HMAC did not verify under the fleet's key.
    pub refused_forged: u64,
    /// Messages dropped: not a message of this protocol, or cut short.
    pub refused_malformed: u64,
    /// Records refused: their (VIP, backend) pair is not in the running tables.
    pub refused_unknown_pair: u64,
    /// Messages sent again, unacknowledged.
    pub resent: u64,
    /// Records told again because the flow is still live here.
    pub refreshed: u64,
    /// Records given up: their message was never acknowledged.
    pub records_given_up: u64,
}

/// A message of flows sent to a peer and not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    msg: Vec<u8>,
    records: usize,
    sent: Instant,
    tries: u32,
}

/// The sharing of one appliance: its socket, its peers, its workers' queues.
pub struct Fleet {
    socket: UdpSocket,
    peers: Vec<SocketAddr>,
    key: Vec<u8>,
    sender: u64,
    seq: u64,
    announcers: Vec<Arc<Announcer>>,
    /// Every flow known (announced here or by a peer), with when it was last told and
    /// whether it was announced here, oldest first in `order`; at most [`KEPT`], each for
    /// `keep_for`.
    known: std::collections::HashMap<[u8; 40], (Target, Instant, bool)>,
    order: std::collections::VecDeque<([u8; 40], Instant)>,
    keep_for: Duration,
    /// Records still to send to a peer that asked for all, a tick's share at a time.
    bulk: Vec<(SocketAddr, Vec<(FlowKey, Target)>)>,
    started: Instant,
    hellos: usize,
    refreshed: Instant,
    /// Messages of flows awaiting their acknowledgement, by peer and sequence number.
    unacked: std::collections::BTreeMap<(SocketAddr, u64), Unacked>,
    /// Peers down: a message to them was given up, and they acknowledged nothing since.
    /// Their messages are sent once and not again (a peer that comes back asks for
    /// everything with its hello).
    down: std::collections::HashSet<SocketAddr>,
    /// What it did.
    pub counts: FleetCounts,
}

impl core::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fleet")
            .field("peers", &self.peers)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// A random id for this process's messages.
fn random_id() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_ne_bytes(b) ^ u64::from(std::process::id())
}

impl Fleet {
    /// Binds `config.listen` and has `engine`'s workers announce their new flows.
    pub fn start(config: &FleetConfig, engine: &mut Engine) -> Result<Fleet, String> {
        let socket =
            UdpSocket::bind(config.listen).map_err(|e| format!("[fleet] listen {}: {e}", config.listen))?;
        socket.set_nonblocking(true).map_err(|e| format!("[fleet] listen {}: {e}", config.listen))?;
        let announcers = engine.announce(QUEUE);
        log::info!("fleet: sharing new flows with {} peer(s) from {}", config.peers.len(), config.listen);
        Ok(Fleet {
            socket,
            peers: config.peers.clone(),
            key: config.key.clone(),
            sender: random_id(),
            seq: 0,
            announcers,
            known: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
            keep_for: engine.config().engine.tcp_idle_timeout,
            bulk: Vec::new(),
            started: Instant::now(),
            hellos: 0,
            refreshed: Instant::now(),
            unacked: std::collections::BTreeMap::new(),
            down: std::collections::HashSet::new(),
            counts: FleetCounts::default(),
        })
    }

    /// Keeps `key` → `target` as known now (`own`: announced here; a flow announced here
    /// stays so).
    fn keep(&mut self, key: &FlowKey, target: Target, own: bool) {
        let k = key.to_bytes();
        let now = Instant::now();
        let own = own || self.known.get(&k).is_some_and(|(_, _, o)| *o);
        self.known.insert(k, (target, now, own));
        self.order.push_back((k, now));
        // The oldest go first: past their time, or past the room.
        while let Some(&(k, at)) = self.order.front() {
            if now.duration_since(at) < self.keep_for && self.known.len() <= KEPT {
                break;
            }
            self.order.pop_front();
            if self.known.get(&k).is_some_and(|(_, last, _)| *last == at) {
                self.known.remove(&k);
            }
        }
        // Entries told again leave stale ones in `order`: keep it within bounds.
        if self.order.len() > 2 * KEPT {
            let known = &self.known;
            self.order.retain(|(k, at)| known.get(k).is_some_and(|(_, last, _)| last == at));
        }
    }

    /// Says hello to every peer, at start and a little later (a hello can be lost).
    fn greet(&mut self) {
        let due = self.hellos == 0
            || HELLO_AGAIN.get(self.hellos - 1).is_some_and(|&d| self.started.elapsed() >= d);
        if due {
            self.hellos += 1;
            self.flush_to(None, HELLO, &[], 0);
        }
    }

    /// Sends the flows announced since the last tick, and takes the peers' messages.
    pub fn tick(&mut self, engine: &Engine) {
        self.greet();
        self.send(engine);
        self.send_bulk();
        self.receive(engine);
        self.resend();
        self.refresh(engine);
    }

    /// Tells the peers again of the flows announced here that a worker still has live, once
    /// a third of the idle timeout has passed since they were last told, so that the
    /// peers' copies (which only traffic there would keep) do not expire while the flow
    /// goes on; forgets the ones no worker has. (Only the flows announced here: a peer's
    /// flow told back would keep it alive between the two.)
    fn refresh(&mut self, engine: &Engine) {
        let now = Instant::now();
        if now.duration_since(self.refreshed) < REFRESH_EVERY {
            return;
        }
        self.refreshed = now;
        let due = (self.keep_for / 3).max(REFRESH_EVERY);
        let stale: Vec<([u8; 40], Target)> = self
            .known
            .iter()
            .filter(|(_, (_, told, own))| *own && now.duration_since(*told) >= due)
            .take(REFRESH_BATCH)
            .map(|(k, (t, _, _))| (*k, *t))
            .collect();
        let keys: Vec<FlowKey> = stale.iter().filter_map(|(k, _)| FlowKey::from_bytes(k)).collect();
        if keys.len() != stale.len() || keys.is_empty() {
            return;
        }
        let live = engine.alive(&keys, ALIVE_TIMEOUT);
        let mut again = Vec::new();
        for ((k, target), (key, live)) in stale.iter().zip(keys.into_iter().zip(live)) {
            if live {
                again.push((key, *target));
            } else {
                self.known.remove(k);
            }
        }
        self.counts.refreshed += again.len() as u64;
        self.tell(&again);
    }

    /// Tells every peer of `flows` (as this appliance's own), [`PER_MESSAGE`] a message.
    fn tell(&mut self, flows: &[(FlowKey, Target)]) {
        for chunk in flows.chunks(PER_MESSAGE) {
            let mut records = Vec::with_capacity(chunk.len() * RECORD_LEN);
            for (key, target) in chunk {
                encode_record(&mut records, key, target);
                self.keep(key, *target, true);
            }
            self.flush_to(None, FLOWS, &records, chunk.len());
        }
    }

    /// Sends again what was not acknowledged in time; gives up after [`TRIES`].
    fn resend(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (&(peer, seq), u) in self.unacked.iter_mut() {
            if now.duration_since(u.sent) < RETRY_AFTER {
                continue;
            }
            if u.tries >= TRIES || self.down.contains(&peer) {
                gone.push((peer, seq));
                self.counts.records_given_up += u.records as u64;
                self.down.insert(peer);
                continue;
            }
            u.tries += 1;
            u.sent = now;
            self.counts.resent += 1;
            if self.socket.send_to(&u.msg, peer).is_err() {
                self.counts.send_errors += 1;
            }
        }
        for k in gone {
            self.unacked.remove(&k);
        }
    }

    /// Sends a tick's share of what peers that started asked for.
    fn send_bulk(&mut self) {
        let mut budget = BULK_PER_TICK;
        while budget > 0 {
            let Some((peer, records)) = self.bulk.last_mut() else { break };
            let peer = *peer;
            let n = records.len().min(PER_MESSAGE).min(budget);
            let chunk: Vec<(FlowKey, Target)> = records.drain(records.len() - n..).collect();
            if records.is_empty() {
                self.bulk.pop();
            }
            let mut body = Vec::with_capacity(n * RECORD_LEN);
            for (k, t) in &chunk {
                encode_record(&mut body, k, t);
            }
            self.flush_to(Some(peer), FLOWS, &body, n);
            budget -= n.max(1);
        }
    }

    fn send(&mut self, engine: &Engine) {
        let mut flows = Vec::new();
        for a in &self.announcers {
            while let Some(n) = a.pop() {
                // A pair the numbering no longer names cannot be told to the peers.
                if let Some((target, _)) = engine.target(n.number) {
                    flows.push((n.key, target));
                }
            }
        }
        self.tell(&flows);
    }

    /// Sends a message of `kind` with `count` records to `to`, or to every peer.
    fn flush_to(&mut self, to: Option<SocketAddr>, kind: u8, records: &[u8], count: usize) {
        self.seq += 1;
        let msg = seal(&self.key, self.sender, self.seq, kind, records, count);
        let one = to.map(|p| [p]);
        let peers: &[SocketAddr] = match &one {
            Some(p) => p,
            None => &self.peers,
        };
        for &peer in peers {
            match self.socket.send_to(&msg, peer) {
                Ok(_) => self.counts.records_sent += count as u64,
                Err(_) => self.counts.send_errors += 1,
            }
            if kind == FLOWS && !self.down.contains(&peer) {
                // Kept until the peer acknowledges it (sent again meanwhile), within bounds.
                if self.unacked.len() >= UNACKED {
                    if let Some((_, u)) = self.unacked.pop_first() {
                        self.counts.records_given_up += u.records as u64;
                    }
                }
                let u = Unacked { msg: msg.clone(), records: count, sent: Instant::now(), tries: 1 };
                self.unacked.insert((peer, self.seq), u);
            }
        }
    }

    fn receive(&mut self, engine: &Engine) {
        let mut buf = [0u8; 2048];
        let mut flows = Vec::new();
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            match decode(&self.key, &buf[..n]) {
                Err(Refused::Forged) => self.counts.refused_forged += 1,
                Err(Refused::Malformed) => self.counts.refused_malformed += 1,
                Ok((ACK, _)) => {
                    let seq = u64::from_be_bytes(buf[12..20].try_into().unwrap_or_default());
                    self.unacked.remove(&(from, seq));
                    self.down.remove(&from);
                }
                Ok((HELLO, _)) => {
                    // A peer that started: everything known, a tick's share at a time.
                    let all =
                        self.known.iter().filter_map(|(k, (t, _, _))| Some((FlowKey::from_bytes(k)?, *t)));
                    let all: Vec<(FlowKey, Target)> = all.collect();
                    log::info!("fleet: {from} started: sending it {} flow(s)", all.len());
                    self.bulk.retain(|(p, _)| *p != from);
                    self.bulk.push((from, all));
                }
                Ok((_, records)) => {
                    // Acknowledged by its own sequence number, whatever its records hold.
                    let seq = u64::from_be_bytes(buf[12..20].try_into().unwrap_or_default());
                    let ack = seal(&self.key, self.sender, seq, ACK, &[], 0);
                    if self.socket.send_to(&ack, from).is_err() {
                        self.counts.send_errors += 1;
                    }
                    for (key, target) in records {
                        match engine.number_of(&target) {
                            Some(number) => {
                                flows.push((key, number));
                                self.keep(&key, target, false);
                                self.counts.records_taken += 1;
                            }
                            None => self.counts.refused_unknown_pair += 1,
                        }
                    }
                }
            }
        }
        engine.adopt(&flows);
    }
}

/// A message: the header, `records` (`count` of them) and the HMAC of both.
fn seal(key: &[u8], sender: u64, seq: u64, kind: u8, records: &[u8], count: usize) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HEADER_LEN + records.len() + MAC_LEN);
    msg.extend_from_slice(MAGIC);
    msg.extend_from_slice(&sender.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.push(kind);
    msg.extend_from_slice(&(count as u16).to_be_bytes());
    msg.extend_from_slice(records);
    let tag = mac(key, &msg);
    msg.extend_from_slice(&tag);
    msg
}

fn mac(key: &[u8], msg: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Forged,
    Malformed,
}

fn encode_addr(out: &mut Vec<u8>, a: IpAddr) {
    let v6 = match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    out.extend_from_slice(&v6.octets());
}

fn decode_addr(b: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn encode_port(out: &mut Vec<u8>, port: Option<u16>) {
    out.extend_from_slice(&port.unwrap_or(0).to_be_bytes());
    out.push(u8::from(port.is_some()));
}

fn encode_record(out: &mut Vec<u8>, key: &FlowKey, t: &Target) {
    out.extend_from_slice(&key.to_bytes());
    encode_addr(out, t.vip.addr);
    out.push(t.vip.protocol.number());
    encode_port(out, t.vip.port);
    encode_addr(out, t.backend.addr);
    encode_port(out, t.backend.port);
}

fn decode_record(r: &[u8; RECORD_LEN]) -> Option<(FlowKey, Target)> {
    let key = FlowKey::from_bytes(r[..40].try_into().ok()?)?;
    let port = |at: usize| (r[at + 2] != 0).then(|| u16::from_be_bytes([r[at], r[at + 1]]));
    let protocol = match r[56] {
        0 => VipProtocol::Any,
        6 => VipProtocol::Tcp,
        17 => VipProtocol::Udp,
        _ => return None,
    };
    let vip = VipId { addr: decode_addr(r[40..56].try_into().ok()?), protocol, port: port(57) };
    let backend = BackendId { addr: decode_addr(r[60..76].try_into().ok()?), port: port(76) };
    Some((key, Target { vip, backend }))
}

/// A message's kind and records.
fn decode(key: &[u8], msg: &[u8]) -> Result<(u8, Vec<(FlowKey, Target)>), Refused> {
    if msg.len() < HEADER_LEN + MAC_LEN || &msg[..4] != MAGIC {
        return Err(Refused::Malformed);
    }
    let (body, tag) = msg.split_at(msg.len() - MAC_LEN);
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(body);
    m.verify_slice(tag).map_err(|_| Refused::Forged)?;
    let kind = body[20];
    let count = usize::from(u16::from_be_bytes([body[21], body[22]]));
    let records = &body[HEADER_LEN..];
    if !matches!(kind, FLOWS | HELLO | ACK) || records.len() != count * RECORD_LEN {
        return Err(Refused::Malformed);
    }
    let records = records
        .chunks_exact(RECORD_LEN)
        .map(|r| r.try_into().ok().and_then(decode_record).ok_or(Refused::Malformed))
        .collect::<Result<_, _>>()?;
    Ok((kind, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            vip: VipId { addr: "203.0.113.10".parse().unwrap(), protocol: VipProtocol::Tcp, port: Some(7) },
            backend: BackendId { addr: "2001:db8:b::40".parse().unwrap(), port: None },
        }
    }

    fn message(key: &[u8], records: &[(FlowKey, Target)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, t) in records {
            encode_record(&mut body, k, t);
        }
        seal(key, 7, 1, FLOWS, &body, records.len())
    }

    #[test]
    fn records_go_through_a_message_and_back() {
        let key = [7u8; 32];
        let flows = [
            (
                FlowKey::new("198.51.100.2".parse().unwrap(), "203.0.113.10".parse().unwrap(), 6, 40000, 7),
                target(),
            ),
            (
                FlowKey::new("2001:db8:c::2".parse().unwrap(), "2001:db8:ab::10".parse().unwrap(), 17, 5, 53),
                Target { vip: VipId { port: None, protocol: VipProtocol::Any, ..target().vip }, ..target() },
            ),
        ];
        let msg = message(&key, &flows);
        assert_eq!(msg.len(), HEADER_LEN + 2 * RECORD_LEN + MAC_LEN);
        assert_eq!(decode(&key, &msg), Ok((FLOWS, flows.to_vec())));
        assert_eq!(decode(&key, &seal(&key, 7, 2, HELLO, &[], 0)), Ok((HELLO, Vec::new())));
    }

    #[test]
    fn a_message_under_another_key_or_changed_or_cut_is_refused() {
        let key = [7u8; 32];
        let flows = [(
            FlowKey::new("198.51.100.2".parse().unwrap(), "203.0.113.10".parse().unwrap(), 6, 40000, 7),
            target(),
        )];
        let msg = message(&key, &flows);
        assert_eq!(decode(&[8u8; 32], &msg), Err(Refused::Forged));
        let mut changed = msg.clone();
        changed[HEADER_LEN + 60] ^= 1; // the backend's address
        assert_eq!(decode(&key, &changed), Err(Refused::Forged));
        assert_eq!(decode(&key, &msg[..msg.len() - 1]), Err(Refused::Forged));
        assert_eq!(decode(&key, b"VGF1"), Err(Refused::Malformed));
        assert_eq!(decode(&key, &[0u8; 200]), Err(Refused::Malformed));
    }
}
