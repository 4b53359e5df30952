//! Packet captures: a reader of pcap and pcapng files, and a pcap writer.
//!
//! Classic pcap (the libpcap format):
//!
//! ```text
//! file   = global header (24 bytes) · record*
//! global = magic (a1b2c3d4: µs, a1b23c4d: ns, either byte order) · version 2.4 ·
//!          thiszone · sigfigs · snaplen · link type (1 = Ethernet)
//! record = seconds · fraction (µs or ns) · captured length · original length · bytes
//! ```
//!
//! pcapng (what Wireshark and dumpcap write by default), a sequence of blocks, each
//! `type · total length · body · total length` in the section's byte order:
//!
//! ```text
//! section header (0a0d0d0a) = byte-order magic 1a2b3c4d · version 1.x · length · options
//! interface (1)       = link type · snaplen · options (if_tsresol: 9, if_tsoffset: 14)
//! enhanced packet (6) = interface · time high · time low · captured · original · bytes
//! simple packet (3)   = original length · bytes (no time: the previous packet's is used)
//! packet (2, obsolete)= interface · drops · time high · time low · captured · original · bytes
//! ```
//!
//! Other pcapng blocks (name resolution, statistics, custom ...) are skipped; a new
//! section starts a new list of interfaces. Times are read in each interface's resolution
//! (microseconds unless `if_tsresol` says otherwise) and returned in nanoseconds.
//!
//! Ethernet captures are read as they are. Captures without Ethernet headers are read as
//! the Ethernet frames the receiving port would have seen, when the reader is told that
//! port's MAC address ([`Reader::receiving_as`]):
//!
//! - Linux cooked captures (link types 113 and 276, what `tcpdump -i any` writes) say per
//!   packet who it was for. A packet to the capturing host gets the port's MAC as its
//!   destination; a broadcast one ff:ff:ff:ff:ff:ff; a multicast one the group MAC of its
//!   IP destination (01:00:5e:… for IPv4, 33:33:… for IPv6). The source is the sender's
//!   MAC from the cooked header (zero when it has none). Packets the capturing host sent,
//!   or saw for other hosts, are not something a port receives: they are skipped and
//!   counted ([`Reader::not_received`]).
//! - Raw IP captures (link types 101, 228 and 229, from tunnel interfaces) carry no link
//!   information at all: every packet is taken as received, to the port's MAC, from a zero
//!   source MAC, its EtherType from the IP version.
//!
//! A capture of another link type is refused: a classic file at its header, a pcapng
//! packet of such an interface when it is reached. Every error says which record (counted
//! from 1 over the file's packets) and what was wrong.

use std::fmt;
use std::io::{self, Read, Write};

/// The pcap link type of Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The link layers this reader takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    /// Linux cooked capture (113): packet type, ARPHRD, address length, address (8),
    /// protocol; 16 bytes.
    Cooked,
    /// Linux cooked capture v2 (276): protocol, reserved, interface index (4), ARPHRD,
    /// packet type (1), address length (1), address (8); 20 bytes.
    Cooked2,
    /// Raw IP (101), the version in the packet's first nibble.
    Raw,
    /// Raw IPv4 (228).
    Raw4,
    /// Raw IPv6 (229).
    Raw6,
}

impl Link {
    fn of(linktype: u32) -> Option<Link> {
        Some(match linktype {
            LINKTYPE_ETHERNET => Link::Ethernet,
            113 => Link::Cooked,
            276 => Link::Cooked2,
            101 => Link::Raw,
            228 => Link::Raw4,
            229 => Link::Raw6,
            _ => return None,
        })
    }

    /// Its pcap link type (for messages).
    fn linktype(self) -> u32 {
        match self {
            Link::Ethernet => LINKTYPE_ETHERNET,
            Link::Cooked => 113,
            Link::Cooked2 => 276,
            Link::Raw => 101,
            Link::Raw4 => 228,
            Link::Raw6 => 229,
        }
    }
}

/// Linux's packet types (`PACKET_HOST` ...), as a cooked capture records them.
const PACKET_HOST: u8 = 0;
const PACKET_BROADCAST: u8 = 1;
const PACKET_MULTICAST: u8 = 2;

const ETHERNET_HEADER: usize = crate::wire::ethernet::HEADER_LEN;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The largest record this reader accepts.
pub const MAX_RECORD: usize = 256 * 1024;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;

/// The largest pcapng block this reader holds in memory: a largest record with room for
/// its options. Larger blocks of kinds it skips are read past, not held.
const MAX_BLOCK: usize = MAX_RECORD + 64 * 1024;

/// A problem with a capture.
#[derive(Debug)]
pub enum PcapError {
    /// Reading or writing failed.
    Io(io::Error),
    /// The file is not a pcap or pcapng capture this reader takes.
    NotPcap(String),
    /// A record is cut short or claims an impossible length.
    BadRecord {
        /// 1-based record number.
        record: u64,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Io(e) => write!(f, "{e}"),
            PcapError::NotPcap(why) => f.write_str(why),
            PcapError::BadRecord { record, what } => write!(f, "record {record}: {what}"),
        }
    }
}

impl std::error::Error for PcapError {}

impl From<io::Error> for PcapError {
    fn from(e: io::Error) -> Self {
        PcapError::Io(e)
    }
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time, in nanoseconds since the epoch.
    pub time_ns: u64,
    /// The bytes captured.
    pub data: &'a [u8],
    /// The frame's length on the wire (at least `data.len()`).
    pub orig_len: u32,
}

/// Reads records from a pcap or pcapng stream.
#[derive(Debug)]
pub struct Reader<R: Read> {
    inner: R,
    format: Format,
    buf: Vec<u8>,
    record: u64,
    /// The MAC address of the port that receives the packets, to frame packets of
    /// captures without Ethernet headers.
    receiver: Option<[u8; 6]>,
    /// A packet framed as Ethernet.
    frame: Vec<u8>,
    not_received: u64,
}

#[derive(Debug)]
enum Format {
    Classic { swapped: bool, nanos: bool, link: Link },
    Ng(Section),
}

/// A record as read, before framing: its bytes are `buf[start..start + len]`.
struct Raw {
    time_ns: u64,
    start: usize,
    len: usize,
    orig_len: u32,
    link: Link,
}

/// What a pcapng reader knows of the section it is in.
#[derive(Debug)]
struct Section {
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Bytes of the file read so far (for error messages).
    offset: u64,
    /// The last packet's time, for simple packet blocks, which carry none.
    last_ns: u64,
}

/// A pcapng interface description.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    /// Time units a second (`if_tsresol`).
    units: u64,
    /// Seconds added to every time (`if_tsoffset`).
    offset_s: i64,
}

/// A link type and its name, where it has one a capture is often made with.
fn linktype_named(linktype: u32) -> String {
    let name = match linktype {
        0 => " (BSD loopback)",
        101 => " (raw IP)",
        108 => " (OpenBSD loopback)",
        113 => " (Linux cooked capture)",
        127 => " (802.11 radiotap)",
        228 => " (raw IPv4)",
        229 => " (raw IPv6)",
        276 => " (Linux cooked capture v2)",
        _ => "",
    };
    format!("link type {linktype}{name}")
}

/// Why a capture of `linktype` is refused.
fn linktype_refused(linktype: u32) -> String {
    format!(
        "{} is not one this reader takes: Ethernet (1), Linux cooked (113, 276; tcpdump -i any) or \
         raw IP (101, 228, 229); capture on an Ethernet interface (tcpdump -i eth0)",
        linktype_named(linktype)
    )
}

fn u16_at(b: &[u8], i: usize, big_endian: bool) -> u16 {
    let v = [b[i], b[i + 1]];
    if big_endian {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], i: usize, big_endian: bool) -> u32 {
    let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
    if big_endian {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

impl<R: Read> Reader<R> {
    /// Reads the file's header: a classic pcap global header (only Ethernet captures are
    /// accepted) or a pcapng section header.
    pub fn new(mut inner: R) -> Result<Reader<R>, PcapError> {
        let mut h = [0u8; 24];
        let got = read_full(&mut inner, &mut h)?;
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if magic == PCAPNG && got >= 12 {
            let mut reader = Reader {
                inner,
                format: Format::Ng(Section {
                    big_endian: false,
                    interfaces: Vec::new(),
                    offset: 0,
                    last_ns: 0,
                }),
                buf: Vec::with_capacity(2048),
                record: 0,
                receiver: None,
                frame: Vec::new(),
                not_received: 0,
            };
            reader.section_header(&h[..got])?;
            return Ok(reader);
        }
        if got < 24 {
            return Err(PcapError::NotPcap("shorter than a pcap header (24 bytes)".into()));
        }
        let (swapped, nanos) = match magic {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            m if m.swap_bytes() == MAGIC_US => (true, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            m => return Err(PcapError::NotPcap(format!("not a pcap or pcapng file (magic {m:#010x})"))),
        };
        let linktype = u32_at(&h, 20, swapped);
        let Some(link) = Link::of(linktype) else {
            return Err(PcapError::NotPcap(linktype_refused(linktype)));
        };
        Ok(Reader {
            inner,
            format: Format::Classic { swapped, nanos, link },
            buf: Vec::with_capacity(2048),
            record: 0,
            receiver: None,
            frame: Vec::new(),
            not_received: 0,
        })
    }

    /// Frames the packets of captures without Ethernet headers (Linux cooked, raw IP) as
    /// received by a port of MAC address `mac` (see the module's documentation). Without
    /// it, such a packet is an error.
    pub fn receiving_as(mut self, mac: [u8; 6]) -> Reader<R> {
        self.receiver = Some(mac);
        self
    }

    /// The packets skipped so far because the capture says the port would not have received
    /// them: a cooked capture's packets that the capturing host sent, or saw for another
    /// host.
    pub fn not_received(&self) -> u64 {
        self.not_received
    }

    /// The next record, or `None` at the end of the file.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        // (the record, and the length of the link header it had when it was framed anew)
        let (raw, framed) = loop {
            let raw = match self.format {
                Format::Classic { swapped, nanos, link } => self.next_classic(swapped, nanos, link)?,
                Format::Ng(_) => self.next_ng()?,
            };
            let Some(raw) = raw else { return Ok(None) };
            if raw.link == Link::Ethernet {
                break (raw, None);
            }
            // (The record just read.)
            let (record, link) = (self.record, raw.link.linktype());
            let bad = |what: String| PcapError::BadRecord {
                record,
                what: format!("{}: {what}", linktype_named(link)),
            };
            let Some(mac) = self.receiver else {
                return Err(bad(
                    "its packets have no Ethernet header, and no port's MAC address was given to \
                     frame them with"
                        .into(),
                ));
            };
            let data = &self.buf[raw.start..raw.start + raw.len];
            match frame_as_received(raw.link, data, mac, &mut self.frame) {
                Ok(Some(_)) if self.frame.len() > MAX_RECORD => {
                    let n = self.frame.len();
                    return Err(bad(format!("{n} bytes with an Ethernet header, more than {MAX_RECORD}")));
                }
                Ok(Some(header)) => break (raw, Some(header)),
                Ok(None) => self.not_received += 1,
                Err(what) => return Err(bad(what)),
            }
        };
        Ok(Some(match framed {
            None => Record {
                time_ns: raw.time_ns,
                data: &self.buf[raw.start..raw.start + raw.len],
                orig_len: raw.orig_len,
            },
            Some(header) => Record {
                time_ns: raw.time_ns,
                data: &self.frame,
                // The length on the wire, with an Ethernet header for the capture's own.
                orig_len: ((raw.orig_len as usize).saturating_sub(header) + ETHERNET_HEADER)
                    .clamp(self.frame.len(), u32::MAX as usize) as u32,
            },
        }))
    }

    fn bad(&self, what: String) -> PcapError {
        PcapError::BadRecord { record: self.record + 1, what }
    }

    fn next_classic(&mut self, swapped: bool, nanos: bool, link: Link) -> Result<Option<Raw>, PcapError> {
        let mut h = [0u8; 16];
        match read_full(&mut self.inner, &mut h)? {
            0 => return Ok(None),
            16 => {}
            n => return Err(self.bad(format!("header cut short after {n} of 16 bytes"))),
        }
        let word = |i: usize| u32_at(&h, i, swapped);
        let (sec, frac, incl, orig) = (word(0), word(4), word(8) as usize, word(12));
        if incl > MAX_RECORD {
            return Err(self.bad(format!("claims {incl} bytes, more than {MAX_RECORD}")));
        }
        self.buf.resize(incl, 0);
        let got = read_full(&mut self.inner, &mut self.buf)?;
        if got != incl {
            return Err(self.bad(format!("cut short: {got} of {incl} bytes")));
        }
        self.record += 1;
        let frac_ns = if nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        Ok(Some(Raw {
            time_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            start: 0,
            len: incl,
            orig_len: orig.max(incl as u32),
            link,
        }))
    }

    fn section(&mut self) -> &mut Section {
        match &mut self.format {
            Format::Ng(s) => s,
            Format::Classic { .. } => unreachable!("pcapng blocks in a classic capture"),
        }
    }

    /// Reads a section header block whose first bytes, `start` (at least its type, length
    /// and byte-order magic), are already read.
    fn section_header(&mut self, start: &[u8]) -> Result<(), PcapError> {
        let at = self.section().offset;
        let big_endian = match u32::from_le_bytes([start[8], start[9], start[10], start[11]]) {
            PCAPNG_BYTE_ORDER => false,
            m if m.swap_bytes() == PCAPNG_BYTE_ORDER => true,
            m => {
                return Err(PcapError::NotPcap(format!(
                    "pcapng section header at byte {at}: byte-order magic {m:#010x}, not 0x1a2b3c4d"
                )))
            }
        };
        let len = u32_at(start, 4, big_endian) as usize;
        if !(28..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
            return Err(self.bad(format!("pcapng section header at byte {at} claims {len} bytes")));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&start[..start.len().min(len)]);
        self.fill_block(len, at, big_endian)?;
        let (major, minor) = (u16_at(&self.buf, 12, big_endian), u16_at(&self.buf, 14, big_endian));
        if major != 1 {
            return Err(PcapError::NotPcap(format!("pcapng version {major}.{minor}; this reader takes 1.x")));
        }
        let s = self.section();
        s.big_endian = big_endian;
        s.interfaces.clear();
        s.offset += len as u64;
        Ok(())
    }

    /// Reads the rest of a block of `len` bytes into `buf` (which holds its first bytes)
    /// and checks its trailing length (in the byte order given).
    fn fill_block(&mut self, len: usize, at: u64, big_endian: bool) -> Result<(), PcapError> {
        let have = self.buf.len();
        self.buf.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.buf[have..])?;
        if have + got != len {
            return Err(
                self.bad(format!("pcapng block at byte {at} cut short: {} of {len} bytes", have + got))
            );
        }
        let trailer = u32_at(&self.buf, len - 4, big_endian) as usize;
        if trailer != len {
            return Err(self.bad(format!(
                "pcapng block at byte {at}: its trailing length {trailer} is not its length {len}"
            )));
        }
        Ok(())
    }

    fn next_ng(&mut self) -> Result<Option<Raw>, PcapError> {
        loop {
            let at = self.section().offset;
            let mut h = [0u8; 12];
            match read_full(&mut self.inner, &mut h[..8])? {
                0 => return Ok(None),
                8 => {}
                n => return Err(self.bad(format!("pcapng block at byte {at} cut short after {n} bytes"))),
            }
            let big_endian = self.section().big_endian;
            let kind = u32_at(&h, 0, big_endian);
            if kind == PCAPNG {
                if read_full(&mut self.inner, &mut h[8..])? != 4 {
                    return Err(self.bad(format!("pcapng section header at byte {at} cut short")));
                }
                self.section_header(&h)?;
                continue;
            }
            let len = u32_at(&h, 4, big_endian) as usize;
            if len < 12 || !len.is_multiple_of(4) {
                return Err(
                    self.bad(format!("pcapng block at byte {at} (type {kind:#x}) claims {len} bytes"))
                );
            }
            if !matches!(kind, 1 | 2 | 3 | 6) {
                // Not a packet, nor an interface: read past it.
                let rest = (len - 8) as u64;
                let skipped = io::copy(&mut (&mut self.inner).take(rest), &mut io::sink())?;
                if skipped != rest {
                    return Err(self.bad(format!(
                        "pcapng block at byte {at} cut short: {} of {len} bytes",
                        skipped + 8
                    )));
                }
                self.section().offset += len as u64;
                continue;
            }
            if len > MAX_BLOCK {
                return Err(
                    self.bad(format!("pcapng block at byte {at} claims {len} bytes, more than {MAX_BLOCK}"))
                );
            }
            self.buf.clear();
            self.buf.extend_from_slice(&h[..8]);
            self.fill_block(len, at, big_endian)?;
            self.section().offset += len as u64;
            if kind == 1 {
                self.interface(at)?;
                continue;
            }
            return self.packet(kind, at, big_endian);
        }
    }

    /// Reads an interface description block (in `buf`).
    fn interface(&mut self, at: u64) -> Result<(), PcapError> {
        let big_endian = self.section().big_endian;
        let b = &self.buf;
        if b.len() < 20 {
            return Err(
                self.bad(format!("pcapng interface block at byte {at} is {} bytes, fewer than 20", b.len()))
            );
        }
        let mut interface = Interface {
            linktype: u16_at(b, 8, big_endian),
            snaplen: u32_at(b, 12, big_endian),
            units: 1_000_000,
            offset_s: 0,
        };
        let mut i = 16;
        while i + 4 <= b.len() - 4 {
            let (code, n) = (u16_at(b, i, big_endian), usize::from(u16_at(b, i + 2, big_endian)));
            let value = b.get(i + 4..i + 4 + n).filter(|_| i + 4 + n <= b.len() - 4);
            let Some(value) = value else {
                return Err(self
                    .bad(format!("pcapng interface block at byte {at}: option {code} runs past the block")));
            };
            match (code, value) {
                (0, _) => break,
                (9, &[resolution]) => {
                    let exponent = u32::from(resolution & 0x7f);
                    let units = if resolution & 0x80 != 0 {
                        2u64.checked_pow(exponent)
                    } else {
                        10u64.checked_pow(exponent)
                    };
                    let Some(units) = units.filter(|u| *u > 0) else {
                        return Err(self.bad(format!("pcapng interface block at byte {at}: time resolution {resolution:#04x} is out of range")));
                    };
                    interface.units = units;
                }
                (14, &[a, b0, c, d, e, f, g, h]) => {
                    let bytes = [a, b0, c, d, e, f, g, h];
                    interface.offset_s =
                        if big_endian { i64::from_be_bytes(bytes) } else { i64::from_le_bytes(bytes) };
                }
                _ => {}
            }
            i += 4 + n.next_multiple_of(4);
        }
        self.section().interfaces.push(interface);
        Ok(())
    }

    /// Reads the packet block of type `kind` in `buf`.
    fn packet(&mut self, kind: u32, at: u64, big_endian: bool) -> Result<Option<Raw>, PcapError> {
        let b = &self.buf;
        let body_end = b.len() - 4;
        let short =
            |need: usize| format!("pcapng packet block at byte {at} is {} bytes, fewer than {need}", b.len());
        // (interface, time in units, data start, captured, original)
        let (interface, time, start, captured, original) = match kind {
            // Enhanced, and the obsolete packet block, whose interface is 16 bits (then
            // 16 of drop count): the same layout otherwise.
            6 | 2 => {
                if b.len() < 32 {
                    return Err(self.bad(short(32)));
                }
                let interface =
                    if kind == 6 { u32_at(b, 8, big_endian) } else { u32::from(u16_at(b, 8, big_endian)) };
                let time = u64::from(u32_at(b, 12, big_endian)) << 32 | u64::from(u32_at(b, 16, big_endian));
                (interface, Some(time), 28, u32_at(b, 20, big_endian) as usize, u32_at(b, 24, big_endian))
            }
            _ => {
                if b.len() < 16 {
                    return Err(self.bad(short(16)));
                }
                let original = u32_at(b, 8, big_endian);
                let snaplen = match self.section().interfaces.first() {
                    Some(i) if i.snaplen > 0 => i.snaplen as usize,
                    _ => usize::MAX,
                };
                (0, None, 12, (original as usize).min(snaplen).min(body_end - 12), original)
            }
        };
        let Some(&iface) = self.section().interfaces.get(interface as usize) else {
            return Err(self.bad(format!("pcapng packet block at byte {at} names interface {interface}, which the section has not described")));
        };
        let linktype = u32::from(iface.linktype);
        let Some(link) = Link::of(linktype) else {
            return Err(self.bad(format!("interface {interface}: {}", linktype_refused(linktype))));
        };
        if captured > MAX_RECORD {
            return Err(self.bad(format!("claims {captured} bytes, more than {MAX_RECORD}")));
        }
        if start + captured > body_end {
            return Err(self.bad(format!(
                "pcapng packet block at byte {at} claims {captured} bytes, more than it holds"
            )));
        }
        let time_ns = match time {
            Some(t) => {
                let ns = u128::from(t) * 1_000_000_000 / u128::from(iface.units);
                let ns = ns as i128 + i128::from(iface.offset_s) * 1_000_000_000;
                ns.clamp(0, i128::from(u64::MAX)) as u64
            }
            None => self.section().last_ns,
        };
        self.section().last_ns = time_ns;
        self.record += 1;
        Ok(Some(Raw { time_ns, start, len: captured, orig_len: original.max(captured as u32), link }))
    }
}

/// Frames `data`, a packet of a capture of `link` (not Ethernet), into `frame` as the
/// Ethernet frame that a port of MAC address `mac` would have received (see the module's
/// documentation), and returns the length of the capture's link header; `None` when the
/// capture says the port would not have received it.
fn frame_as_received(
    link: Link,
    data: &[u8],
    mac: [u8; 6],
    frame: &mut Vec<u8>,
) -> Result<Option<usize>, String> {
    let short = |need: usize| format!("{} bytes, shorter than its header ({need})", data.len());
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    // (packet type, sender's address and its length, protocol, header length)
    let (packet_type, address, address_len, protocol, header) = match link {
        Link::Cooked => {
            if data.len() < 16 {
                return Err(short(16));
            }
            let packet_type = u8::try_from(be16(data, 0)).unwrap_or(u8::MAX);
            (packet_type, &data[6..14], be16(data, 4), be16(data, 14), 16)
        }
        Link::Cooked2 => {
            if data.len() < 20 {
                return Err(short(20));
            }
            (data[10], &data[12..20], u16::from(data[11]), be16(data, 0), 20)
        }
        Link::Raw | Link::Raw4 | Link::Raw6 => {
            let protocol = match (link, data.first().map(|b| b >> 4)) {
                (Link::Raw4, _) | (_, Some(4)) => ETHERTYPE_IPV4,
                (Link::Raw6, _) | (_, Some(6)) => ETHERTYPE_IPV6,
                // Neither: the engine drops it as not IP.
                _ => 0,
            };
            (PACKET_HOST, &[0u8; 8][..], 0, protocol, 0)
        }
        Link::Ethernet => unreachable!("Ethernet packets are not framed"),
    };
    let payload = &data[header..];
    let dst = match packet_type {
        PACKET_HOST => mac,
        PACKET_BROADCAST => [0xff; 6],
        PACKET_MULTICAST => match protocol {
            // The group MAC of the IP destination (RFC 2464, RFC 1112); of an address cut
            // short, what there is of it (the engine drops the packet as malformed).
            ETHERTYPE_IPV6 => {
                let mut m = [0x33, 0x33, 0, 0, 0, 0];
                for (i, b) in payload.iter().skip(36).take(4).enumerate() {
                    m[2 + i] = *b;
                }
                m
            }
            _ => {
                let mut m = [0x01, 0x00, 0x5e, 0, 0, 0];
                for (i, b) in payload.iter().skip(17).take(3).enumerate() {
                    m[3 + i] = *b;
                }
                m[3] &= 0x7f;
                m
            }
        },
        // Sent by the capturing host, seen for another host, looped back ...
        _ => return Ok(None),
    };
    let src: [u8; 6] = match address_len {
        6 => address[..6].try_into().expect("six bytes"),
        _ => [0; 6],
    };
    frame.clear();
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&protocol.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(Some(header))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes an Ethernet capture with nanosecond timestamps.
#[derive(Debug)]
pub struct Writer<W: Write> {
    inner: W,
}

impl<W: Write> Writer<W> {
    /// Writes the global header.
    pub fn new(mut inner: W) -> Result<Writer<W>, PcapError> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&(MAX_RECORD as u32).to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        inner.write_all(&h)?;
        Ok(Writer { inner })
    }

    /// Writes one frame captured at `time_ns`.
    pub fn write(&mut self, time_ns: u64, data: &[u8]) -> Result<(), PcapError> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((time_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((time_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(data)?;
        Ok(())
    }

    /// Pushes what is buffered to the stream.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.inner.flush()?;
        Ok(())
    }

    /// Flushes and returns the stream.
    pub fn finish(mut self) -> Result<W, PcapError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write(1_700_000_000_123_456_789, &[1, 2, 3]).unwrap();
        w.write(1_700_000_001_000_000_000, &[4; 70]).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        let a = r.next().unwrap().unwrap();
        assert_eq!((a.time_ns, a.data, a.orig_len), (1_700_000_000_123_456_789, &[1u8, 2, 3][..], 3));
        let b = r.next().unwrap().unwrap();
        assert_eq!((b.time_ns, b.data.len()), (1_700_000_001_000_000_000, 70));
        assert!(r.next().unwrap().is_none());
    }

    #[test]
    fn microsecond_big_endian_captures() {
        #[rustfmt::skip]
        let bytes = [
            // magic (µs, big-endian), version 2.4, zone, sigfigs
            0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,
            // snaplen 65535, link type 1
            0, 0, 0xff, 0xff, 0, 0, 0, 1,
            // record: 10 s, 5 µs, 2 bytes of 60
            0, 0, 0, 10, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 60,
            0xaa, 0xbb,
        ];
        let mut r = Reader::new(&bytes[..]).unwrap();
        let rec = r.next().unwrap().unwrap();
        assert_eq!((rec.time_ns, rec.data, rec.orig_len), (10_000_005_000, &[0xaa, 0xbb][..], 60));
    }

    #[test]
    fn refusals_say_why() {
        let e = Reader::new(
            &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "pcapng section header at byte 0: byte-order magic 0x00000000, not 0x1a2b3c4d"
        );
        assert!(Reader::new(&b"hello"[..]).unwrap_err().to_string().contains("shorter"));
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write(0, &[1; 10]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - 3);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.next().unwrap_err().to_string(), "record 1: cut short: 7 of 10 bytes");
        let mut radiotap = Writer::new(Vec::new()).unwrap().finish().unwrap();
        radiotap[20] = 127;
        assert_eq!(
            Reader::new(&radiotap[..]).unwrap_err().to_string(),
            "link type 127 (802.11 radiotap) is not one this reader takes: Ethernet (1), Linux cooked \
             (113, 276; tcpdump -i any) or raw IP (101, 228, 229); capture on an Ethernet interface \
             (tcpdump -i eth0)"
        );
    }

    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsBlock;
    use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::{DataLink, Endianness};
    use std::borrow::Cow;
    use std::time::Duration;

    /// A pcapng capture written by the pcap-file crate: an Ethernet interface with
    /// nanosecond times, packets of `sizes` bytes, a statistics block among them and a
    /// simple packet block at the end.
    fn independent_pcapng(endianness: Endianness, sizes: &[usize]) -> Vec<u8> {
        let section = SectionHeaderBlock { endianness, ..Default::default() };
        let mut w = PcapNgWriter::with_section_header(Vec::new(), section).unwrap();
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0xffff,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        };
        w.write_pcapng_block(interface).unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|b| (b + i) as u8).collect();
            let packet = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(1_700_000_000_000_000_007 + i as u64),
                original_len: size as u32 + 4,
                data: Cow::Owned(data),
                options: vec![],
            };
            w.write_pcapng_block(packet).unwrap();
            if i == 0 {
                let stats = InterfaceStatisticsBlock { interface_id: 0, timestamp: 5, options: vec![] };
                w.write_pcapng_block(stats).unwrap();
            }
        }
        let simple = SimplePacketBlock { original_len: 3, data: Cow::Owned(vec![7, 8, 9]) };
        w.write_pcapng_block(simple).unwrap();
        w.into_inner()
    }

    #[test]
    fn pcapng_from_another_writer_reads_as_written() {
        let sizes = [60, 61, 62, 63, 1514];
        for endianness in [Endianness::Little, Endianness::Big] {
            let bytes = independent_pcapng(endianness, &sizes);
            let mut r = Reader::new(&bytes[..]).unwrap();
            for (i, &size) in sizes.iter().enumerate() {
                let rec = r.next().unwrap().unwrap();
                let data: Vec<u8> = (0..size).map(|b| (b + i) as u8).collect();
                assert_eq!(rec.data, &data[..], "{endianness:?} packet {i}");
                assert_eq!(rec.time_ns, 1_700_000_000_000_000_007 + i as u64);
                assert_eq!(rec.orig_len, size as u32 + 4);
            }
            // The simple packet block carries no time: the last packet's.
            let rec = r.next().unwrap().unwrap();
            assert_eq!(
                (rec.data, rec.orig_len, rec.time_ns),
                (&[7u8, 8, 9][..], 3, 1_700_000_000_000_000_011)
            );
            assert!(r.next().unwrap().is_none());
        }
    }

    /// A pcapng block of `kind` with `body`, big-endian.
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len().next_multiple_of(4)) as u32;
        let mut b = kind.to_be_bytes().to_vec();
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(body);
        b.resize(len as usize - 4, 0);
        b.extend_from_slice(&len.to_be_bytes());
        b
    }

    fn section_header() -> Vec<u8> {
        let mut body = 0x1a2b_3c4du32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 1, 0, 0]);
        body.extend_from_slice(&(-1i64).to_be_bytes());
        block(PCAPNG, &body)
    }

    fn interface(linktype: u16, options: &[u8]) -> Vec<u8> {
        let mut body = linktype.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff]);
        body.extend_from_slice(options);
        block(1, &body)
    }

    fn enhanced(interface: u32, time: u64, data: &[u8]) -> Vec<u8> {
        let mut body = interface.to_be_bytes().to_vec();
        body.extend_from_slice(&((time >> 32) as u32).to_be_bytes());
        body.extend_from_slice(&(time as u32).to_be_bytes());
        body.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(data);
        block(6, &body)
    }

    #[test]
    fn pcapng_resolutions_offsets_and_sections() {
        let mut bytes = section_header();
        // Interface 0: microseconds (no if_tsresol), 10 s added; interface 1: 2^-10 s.
        bytes.extend(interface(1, &[0, 14, 0, 8, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0]));
        bytes.extend(interface(1, &[0, 9, 0, 1, 0x8a, 0, 0, 0, 0, 0, 0, 0]));
        bytes.extend(block(4, &[0, 0, 0, 0])); // name resolution: skipped
        bytes.extend(enhanced(0, 5, &[1; 60]));
        bytes.extend(enhanced(1, 1024 * 3 + 512, &[2; 60]));
        // An obsolete packet block: interface 1, drops, time, lengths.
        let mut old = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 2, 0, 0, 0, 64, 0xaa, 0xbb];
        old.resize(24, 0);
        bytes.extend(block(2, &old));
        // A new section: its own interfaces, nanoseconds.
        bytes.extend(section_header());
        bytes.extend(interface(1, &[0, 9, 0, 1, 9, 0, 0, 0]));
        bytes.extend(enhanced(0, 42, &[3; 61]));
        let mut r = Reader::new(&bytes[..]).unwrap();
        let mut got = Vec::new();
        while let Some(rec) = r.next().unwrap() {
            got.push((rec.time_ns, rec.data.to_vec(), rec.orig_len));
        }
        assert_eq!(
            got,
            [
                (10_000_005_000, vec![1; 60], 60),
                (3_500_000_000, vec![2; 60], 60),
                (1_000_000_000, vec![0xaa, 0xbb], 64),
                (42, vec![3; 61], 61),
            ]
        );
    }

    #[test]
    fn pcapng_refusals_say_which_record_and_why() {
        let first =
            |bytes: &[u8]| Reader::new(bytes).and_then(|mut r| r.next().map(|_| ())).unwrap_err().to_string();
        let mut radiotap = section_header();
        radiotap.extend(interface(127, &[]));
        radiotap.extend(enhanced(0, 1, &[0; 60]));
        assert_eq!(
            first(&radiotap),
            "record 1: interface 0: link type 127 (802.11 radiotap) is not one this reader takes: \
             Ethernet (1), Linux cooked (113, 276; tcpdump -i any) or raw IP (101, 228, 229); capture \
             on an Ethernet interface (tcpdump -i eth0)"
        );
        // Cooked packets need the receiving port's MAC address to be framed.
        let mut cooked = section_header();
        cooked.extend(interface(113, &[]));
        cooked.extend(enhanced(0, 1, &[0; 60]));
        assert_eq!(
            first(&cooked),
            "record 1: link type 113 (Linux cooked capture): its packets have no Ethernet header, and \
             no port's MAC address was given to frame them with"
        );
        let mut cut = section_header();
        cut.extend(interface(113, &[]));
        cut.extend(enhanced(0, 1, &[0; 60]));
        cut.extend(enhanced(0, 2, &[0; 15]));
        let mut r = Reader::new(&cut[..]).unwrap().receiving_as(PORT_MAC);
        r.next().unwrap().unwrap();
        assert_eq!(
            r.next().unwrap_err().to_string(),
            "record 2: link type 113 (Linux cooked capture): 15 bytes, shorter than its header (16)"
        );
        let mut undescribed = section_header();
        undescribed.extend(enhanced(0, 1, &[0; 60]));
        assert_eq!(
            first(&undescribed),
            "record 1: pcapng packet block at byte 28 names interface 0, which the section has not described"
        );
        let mut cut = section_header();
        cut.extend(interface(1, &[]));
        cut.extend(enhanced(0, 1, &[0; 60]));
        cut.truncate(cut.len() - 10);
        assert_eq!(first(&cut), "record 1: pcapng block at byte 48 cut short: 82 of 92 bytes");
        let mut trailer = section_header();
        trailer.extend(interface(1, &[]));
        let mut packet = enhanced(0, 1, &[0; 60]);
        let n = packet.len();
        packet[n - 1] ^= 4;
        trailer.extend(packet);
        assert_eq!(
            first(&trailer),
            "record 1: pcapng block at byte 48: its trailing length 88 is not its length 92"
        );
        let mut version = section_header();
        version[13] = 2;
        assert_eq!(first(&version), "pcapng version 2.0; this reader takes 1.x");
    }

    const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const SENDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

    fn udp_v4(dst: [u8; 4]) -> Vec<u8> {
        let mut p = Vec::new();
        etherparse::PacketBuilder::ipv4([192, 0, 2, 1], dst, 64)
            .udp(1000, 2000)
            .write(&mut p, b"hi")
            .unwrap();
        p
    }

    fn udp_v6(dst: [u8; 16]) -> Vec<u8> {
        let mut p = Vec::new();
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        etherparse::PacketBuilder::ipv6(src, dst, 64).udp(1000, 2000).write(&mut p, b"hi").unwrap();
        p
    }

    /// A Linux cooked (v1) header, from etherparse's writer: of packet type `packet_type`,
    /// from `sender` (an Ethernet device) or from a device without addresses.
    fn cooked(packet_type: u16, protocol: u16, sender: Option<[u8; 6]>) -> Vec<u8> {
        let mut address = [0u8; 8];
        if let Some(s) = sender {
            address[..6].copy_from_slice(&s);
        }
        etherparse::LinuxSllHeader {
            packet_type: etherparse::LinuxSllPacketType::try_from(packet_type).unwrap(),
            arp_hrd_type: if sender.is_some() {
                etherparse::ArpHardwareId::ETHERNET
            } else {
                etherparse::ArpHardwareId::NONE
            },
            sender_address_valid_length: if sender.is_some() { 6 } else { 0 },
            sender_address: address,
            protocol_type: etherparse::LinuxSllProtocolType::EtherType(etherparse::EtherType(protocol)),
        }
        .to_bytes()
        .to_vec()
    }

    /// A classic capture of `linktype` by pcap-file, each packet's wire length 4 more than
    /// captured.
    fn classic_of(datalink: DataLink, packets: &[Vec<u8>]) -> Vec<u8> {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let header = PcapHeader { datalink, ..Default::default() };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let time = Duration::from_micros(1_700_000_000_000_000 + i as u64);
            w.write_packet(&PcapPacket::new(time, p.len() as u32 + 4, p)).unwrap();
        }
        w.into_writer()
    }

    /// Every frame of `bytes` framed as received by `PORT_MAC`, with its wire length, and
    /// how many were not received.
    fn frames_of(bytes: &[u8]) -> (Vec<(Vec<u8>, u32)>, u64) {
        let mut r = Reader::new(bytes).unwrap().receiving_as(PORT_MAC);
        let mut out = Vec::new();
        while let Some(rec) = r.next().unwrap() {
            out.push((rec.data.to_vec(), rec.orig_len));
        }
        (out, r.not_received())
    }

    fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f =
            etherparse::Ethernet2Header { destination: dst, source: src, ether_type: ethertype.into() }
                .to_bytes()
                .to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn cooked_captures_read_as_the_port_would_have_received_them() {
        let to_us = udp_v4([203, 0, 113, 10]);
        let group4 = udp_v4([224, 0, 0, 251]);
        let mut solicited = [0u8; 16];
        solicited[..2].copy_from_slice(&[0xff, 0x02]);
        solicited[11..].copy_from_slice(&[1, 0xff, 0x12, 0x34, 0x56]);
        let group6 = udp_v6(solicited);
        let arp = [0x42u8; 28].to_vec();
        let with = |h: Vec<u8>, p: &[u8]| [h, p.to_vec()].concat();
        let packets = vec![
            with(cooked(0, 0x0800, Some(SENDER_MAC)), &to_us),
            with(cooked(4, 0x0800, Some(PORT_MAC)), &to_us),
            with(cooked(1, 0x0806, Some(SENDER_MAC)), &arp),
            with(cooked(2, 0x0800, Some(SENDER_MAC)), &group4),
            with(cooked(3, 0x0800, Some(SENDER_MAC)), &to_us),
            with(cooked(2, 0x86dd, Some(SENDER_MAC)), &group6),
            with(cooked(0, 0x0800, None), &to_us),
        ];
        let (frames, not_received) = frames_of(&classic_of(DataLink::LINUX_SLL, &packets));
        let expected = [
            ethernet(PORT_MAC, SENDER_MAC, 0x0800, &to_us),
            ethernet([0xff; 6], SENDER_MAC, 0x0806, &arp),
            ethernet([0x01, 0x00, 0x5e, 0, 0, 251], SENDER_MAC, 0x0800, &group4),
            ethernet([0x33, 0x33, 0xff, 0x12, 0x34, 0x56], SENDER_MAC, 0x86dd, &group6),
            ethernet(PORT_MAC, [0; 6], 0x0800, &to_us),
        ];
        assert_eq!(frames.iter().map(|f| f.0.clone()).collect::<Vec<_>>(), expected);
        // The wire length keeps what the capture did not hold (4 bytes a packet here).
        assert!(frames.iter().all(|(f, orig)| *orig as usize == f.len() + 4));
        // Sent by the capturing host, and for another host: skipped, counted.
        assert_eq!(not_received, 2);
        // An independent parser reads the frames as what they carry.
        let parsed = etherparse::SlicedPacket::from_ethernet(&frames[0].0).unwrap();
        match parsed.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                assert_eq!(ip.header().destination(), [203, 0, 113, 10])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cooked_v2_captures_read_alike() {
        // tcpdump's sll2 header: protocol, reserved, interface index, ARPHRD, packet
        // type, address length, address (8).
        let header = |packet_type: u8| {
            let mut h = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, packet_type, 6];
            h.extend_from_slice(&SENDER_MAC);
            h.extend_from_slice(&[0, 0]);
            h
        };
        let to_us = udp_v4([203, 0, 113, 10]);
        let packets = vec![[header(4), to_us.clone()].concat(), [header(0), to_us.clone()].concat()];
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let interface =
            InterfaceDescriptionBlock { linktype: DataLink::LINUX_SLL2, snaplen: 0, options: vec![] };
        w.write_pcapng_block(interface).unwrap();
        for p in &packets {
            let packet = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_micros(5),
                original_len: p.len() as u32,
                data: Cow::Borrowed(p),
                options: vec![],
            };
            w.write_pcapng_block(packet).unwrap();
        }
        let (frames, not_received) = frames_of(&w.into_inner());
        assert_eq!(frames, [(ethernet(PORT_MAC, SENDER_MAC, 0x0800, &to_us), to_us.len() as u32 + 14)]);
        assert_eq!(not_received, 1);
    }

    #[test]
    fn raw_ip_captures_read_as_received_from_no_address() {
        let (v4, v6) =
            (udp_v4([203, 0, 113, 10]), udp_v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]));
        let not_ip = vec![0x10; 20];
        let (frames, not_received) =
            frames_of(&classic_of(DataLink::RAW, &[v4.clone(), v6.clone(), not_ip.clone()]));
        let frames: Vec<Vec<u8>> = frames.into_iter().map(|f| f.0).collect();
        assert_eq!(
            frames,
            [
                ethernet(PORT_MAC, [0; 6], 0x0800, &v4),
                ethernet(PORT_MAC, [0; 6], 0x86dd, &v6),
                ethernet(PORT_MAC, [0; 6], 0, &not_ip),
            ]
        );
        assert_eq!(not_received, 0);
        // Link types 228 and 229 say the version themselves.
        let (frames, _) = frames_of(&classic_of(DataLink::IPV4, std::slice::from_ref(&not_ip)));
        assert_eq!(frames[0].0, ethernet(PORT_MAC, [0; 6], 0x0800, &not_ip));
        let (frames, _) = frames_of(&classic_of(DataLink::IPV6, std::slice::from_ref(&not_ip)));
        assert_eq!(frames[0].0, ethernet(PORT_MAC, [0; 6], 0x86dd, &not_ip));
        // A wire length at the format's limit stays there with an Ethernet header.
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write(0, &v4).unwrap();
        let mut huge = w.finish().unwrap();
        huge[20] = 101;
        huge[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        let (frames, _) = frames_of(&huge);
        assert_eq!(frames, [(ethernet(PORT_MAC, [0; 6], 0x0800, &v4), u32::MAX)]);
    }

    #[test]
    fn each_interface_of_a_pcapng_section_is_framed_by_its_own_link_type() {
        // dumpcap on an Ethernet interface and on a tunnel at once.
        let to_us = udp_v4([203, 0, 113, 10]);
        let on_ethernet = ethernet(PORT_MAC, SENDER_MAC, 0x0800, &to_us);
        let mut ng = section_header();
        ng.extend(interface(1, &[]));
        ng.extend(interface(101, &[]));
        ng.extend(interface(113, &[]));
        ng.extend(enhanced(1, 1, &to_us));
        ng.extend(enhanced(0, 2, &on_ethernet));
        ng.extend(enhanced(2, 3, &[cooked(0, 0x0800, Some(SENDER_MAC)), to_us.clone()].concat()));
        let (frames, not_received) = frames_of(&ng);
        let frames: Vec<Vec<u8>> = frames.into_iter().map(|f| f.0).collect();
        assert_eq!(frames, [ethernet(PORT_MAC, [0; 6], 0x0800, &to_us), on_ethernet.clone(), on_ethernet]);
        assert_eq!(not_received, 0);
    }
}
