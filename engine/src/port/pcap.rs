//! Classic pcap files (the libpcap format): a reader and a writer.
//!
//! ```text
//! file   = global header (24 bytes) · record*
//! global = magic (a1b2c3d4: µs, a1b23c4d: ns, either byte order) · version 2.4 ·
//!          thiszone · sigfigs · snaplen · link type (1 = Ethernet)
//! record = seconds · fraction (µs or ns) · captured length · original length · bytes
//! ```
//!
//! Only Ethernet captures are read. pcapng files are recognised and refused with a hint.
//! Every error says which record and what was wrong.

use std::fmt;
use std::io::{self, Read, Write};

/// The pcap link type of Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The largest record this reader accepts.
pub const MAX_RECORD: usize = 256 * 1024;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG: u32 = 0x0a0d_0d0a;

/// A problem with a capture.
#[derive(Debug)]
pub enum PcapError {
    /// Reading or writing failed.
    Io(io::Error),
    /// The file is not a classic pcap file.
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

/// Reads records from a pcap stream.
#[derive(Debug)]
pub struct Reader<R: Read> {
    inner: R,
    swapped: bool,
    nanos: bool,
    buf: Vec<u8>,
    record: u64,
    /// The capture's snap length.
    pub snaplen: u32,
}

impl<R: Read> Reader<R> {
    /// Reads the global header; only Ethernet captures are accepted.
    pub fn new(mut inner: R) -> Result<Reader<R>, PcapError> {
        let mut h = [0u8; 24];
        if let Err(e) = inner.read_exact(&mut h) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                PcapError::NotPcap("shorter than a pcap header (24 bytes)".into())
            } else {
                PcapError::Io(e)
            });
        }
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (swapped, nanos) = match magic {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            m if m.swap_bytes() == MAGIC_US => (true, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            PCAPNG => return Err(PcapError::NotPcap(
                "this is a pcapng file; convert it with `editcap -F pcap IN OUT` or `tcpdump -r IN -w OUT`"
                    .into(),
            )),
            m => return Err(PcapError::NotPcap(format!("not a pcap file (magic {m:#010x})"))),
        };
        let word = |i: usize| {
            let v = u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
            if swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        let snaplen = word(16);
        let linktype = word(20);
        if linktype != LINKTYPE_ETHERNET {
            return Err(PcapError::NotPcap(format!(
                "link type {linktype} is not Ethernet (1); capture on an Ethernet interface"
            )));
        }
        Ok(Reader { inner, swapped, nanos, buf: Vec::with_capacity(2048), record: 0, snaplen })
    }

    /// The next record, or `None` at the end of the file.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        let mut h = [0u8; 16];
        match read_full(&mut self.inner, &mut h)? {
            0 => return Ok(None),
            16 => {}
            n => {
                return Err(PcapError::BadRecord {
                    record: self.record + 1,
                    what: format!("header cut short after {n} of 16 bytes"),
                })
            }
        }
        self.record += 1;
        let word = |i: usize| {
            let v = u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
            if self.swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        let (sec, frac, incl, orig) = (word(0), word(4), word(8) as usize, word(12));
        if incl > MAX_RECORD {
            return Err(PcapError::BadRecord {
                record: self.record,
                what: format!("claims {incl} bytes, more than {MAX_RECORD}"),
            });
        }
        self.buf.resize(incl, 0);
        let got = read_full(&mut self.inner, &mut self.buf)?;
        if got != incl {
            return Err(PcapError::BadRecord {
                record: self.record,
                what: format!("cut short: {got} of {incl} bytes"),
            });
        }
        let frac_ns = if self.nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        Ok(Some(Record {
            time_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            data: &self.buf,
            orig_len: orig.max(incl as u32),
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
            &[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        );
        assert!(e.unwrap_err().to_string().contains("pcapng"));
        assert!(Reader::new(&b"hello"[..]).unwrap_err().to_string().contains("shorter"));
        let mut w = Writer::new(Vec::new()).unwrap();
        w.write(0, &[1; 10]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - 3);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.next().unwrap_err().to_string(), "record 1: cut short: 7 of 10 bytes");
        let mut linux_sll = Writer::new(Vec::new()).unwrap().finish().unwrap();
        linux_sll[20] = 113;
        assert!(Reader::new(&linux_sll[..]).unwrap_err().to_string().contains("not Ethernet"));
    }
}
