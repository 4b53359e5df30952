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
//! Only Ethernet packets are read: a classic file of another link type is refused at its
//! header, a pcapng packet of a non-Ethernet interface when it is reached. Every error
//! says which record (packet, counted from 1) and what was wrong.

use std::fmt;
use std::io::{self, Read, Write};

/// The pcap link type of Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;

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
}

#[derive(Debug)]
enum Format {
    Classic { swapped: bool, nanos: bool },
    Ng(Section),
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

/// The names of link types a capture is often made with, for error messages.
fn linktype_name(linktype: u32) -> String {
    let name = match linktype {
        0 => " (BSD loopback)",
        101 => " (raw IP)",
        113 => " (Linux cooked capture, as `tcpdump -i any` writes)",
        127 => " (802.11 radiotap)",
        228 => " (raw IPv4)",
        229 => " (raw IPv6)",
        276 => " (Linux cooked capture v2, as `tcpdump -i any` writes)",
        _ => "",
    };
    format!(
        "link type {linktype}{name} is not Ethernet (1); capture on an Ethernet interface (tcpdump -i eth0)"
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
        if linktype != LINKTYPE_ETHERNET {
            return Err(PcapError::NotPcap(linktype_name(linktype)));
        }
        Ok(Reader {
            inner,
            format: Format::Classic { swapped, nanos },
            buf: Vec::with_capacity(2048),
            record: 0,
        })
    }

    /// The next record, or `None` at the end of the file.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        match self.format {
            Format::Classic { swapped, nanos } => self.next_classic(swapped, nanos),
            Format::Ng(_) => self.next_ng(),
        }
    }

    fn bad(&self, what: String) -> PcapError {
        PcapError::BadRecord { record: self.record + 1, what }
    }

    fn next_classic(&mut self, swapped: bool, nanos: bool) -> Result<Option<Record<'_>>, PcapError> {
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
        Ok(Some(Record {
            time_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            data: &self.buf,
            orig_len: orig.max(incl as u32),
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

    fn next_ng(&mut self) -> Result<Option<Record<'_>>, PcapError> {
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
    fn packet(&mut self, kind: u32, at: u64, big_endian: bool) -> Result<Option<Record<'_>>, PcapError> {
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
        if u32::from(iface.linktype) != LINKTYPE_ETHERNET {
            return Err(self.bad(format!("interface {interface}: {}", linktype_name(iface.linktype.into()))));
        }
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
        Ok(Some(Record {
            time_ns,
            data: &self.buf[start..start + captured],
            orig_len: original.max(captured as u32),
        }))
    }
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
        let mut linux_sll = Writer::new(Vec::new()).unwrap().finish().unwrap();
        linux_sll[20] = 113;
        assert_eq!(
            Reader::new(&linux_sll[..]).unwrap_err().to_string(),
            "link type 113 (Linux cooked capture, as `tcpdump -i any` writes) is not Ethernet (1); \
             capture on an Ethernet interface (tcpdump -i eth0)"
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
        let mut cooked = section_header();
        cooked.extend(interface(113, &[]));
        cooked.extend(enhanced(0, 1, &[0; 60]));
        assert_eq!(
            first(&cooked),
            "record 1: interface 0: link type 113 (Linux cooked capture, as `tcpdump -i any` writes) \
             is not Ethernet (1); capture on an Ethernet interface (tcpdump -i eth0)"
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
}
