//! GRE (RFC 2784, with the key and sequence number of RFC 2890).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Checksum (optional)      |       Reserved1 (Optional)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Key (optional)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Sequence Number (Optional)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Version 0 only, without RFC 1701 routing: any other version, or a set bit among
//! Reserved0 (bit 1 and bits 4–12), is [`Error::Unsupported`] (RFC 2784, §2.3 tells a
//! receiver to discard those). After [`Packet::new_checked`] no accessor panics.

use super::{be, checksum, Error, EtherType, Result};

const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
const RESERVED0: u16 = 0x4ff8;
const VERSION: u16 = 0x0007;

/// The length of the GRE header without optional fields.
pub const BASE_HEADER_LEN: usize = 4;

/// A view of a GRE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a version-0 header whose optional fields fit the buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version, the reserved bits and the length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < BASE_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.flags() & (RESERVED0 | VERSION) != 0 {
            return Err(Error::Unsupported);
        }
        if len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn flags(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), 0)
    }

    /// Whether the checksum field is present.
    pub fn has_checksum(&self) -> bool {
        self.flags() & FLAG_C != 0
    }

    /// Whether the key field is present.
    pub fn has_key(&self) -> bool {
        self.flags() & FLAG_K != 0
    }

    /// Whether the sequence number field is present.
    pub fn has_sequence(&self) -> bool {
        self.flags() & FLAG_S != 0
    }

    /// The version (0).
    pub fn version(&self) -> u8 {
        (self.flags() & VERSION) as u8
    }

    /// The protocol type of the payload, an EtherType.
    pub fn protocol(&self) -> EtherType {
        EtherType::from(be::u16_at(self.buffer.as_ref(), 2))
    }

    /// The header length, optional fields included.
    pub fn header_len(&self) -> usize {
        BASE_HEADER_LEN
            + 4 * (usize::from(self.has_checksum())
                + usize::from(self.has_key())
                + usize::from(self.has_sequence()))
    }

    /// The checksum field, if present.
    pub fn checksum(&self) -> Option<u16> {
        self.has_checksum().then(|| be::u16_at(self.buffer.as_ref(), 4))
    }

    /// The key, if present.
    pub fn key(&self) -> Option<u32> {
        let at = 4 + 4 * usize::from(self.has_checksum());
        self.has_key().then(|| be::u32_at(self.buffer.as_ref(), at))
    }

    /// The sequence number, if present.
    pub fn sequence(&self) -> Option<u32> {
        let at = 4 + 4 * (usize::from(self.has_checksum()) + usize::from(self.has_key()));
        self.has_sequence().then(|| be::u32_at(self.buffer.as_ref(), at))
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum (over header and payload) is right, or absent.
    pub fn verify_checksum(&self) -> bool {
        !self.has_checksum() || checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

/// A GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// The protocol type of the payload.
    pub protocol: EtherType,
    /// Whether to carry a checksum over header and payload.
    pub checksum: bool,
    /// The key, if any.
    pub key: Option<u32>,
    /// The sequence number, if any.
    pub sequence: Option<u32>,
}

impl Repr {
    /// The header of a checked packet (checksum not verified).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            protocol: packet.protocol(),
            checksum: packet.has_checksum(),
            key: packet.key(),
            sequence: packet.sequence(),
        })
    }

    /// The length of the header.
    pub fn buffer_len(&self) -> usize {
        BASE_HEADER_LEN
            + 4 * (usize::from(self.checksum)
                + usize::from(self.key.is_some())
                + usize::from(self.sequence.is_some()))
    }

    /// Writes the header into the start of `buffer`, which holds the header followed by the
    /// payload; with `checksum`, the checksum covers both.
    pub fn emit(&self, buffer: &mut [u8]) {
        let mut flags = 0;
        if self.checksum {
            flags |= FLAG_C;
        }
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.sequence.is_some() {
            flags |= FLAG_S;
        }
        be::put_u16(buffer, 0, flags);
        be::put_u16(buffer, 2, self.protocol.into());
        let mut at = 4;
        if self.checksum {
            be::put_u32(buffer, at, 0);
            at += 4;
        }
        if let Some(key) = self.key {
            be::put_u32(buffer, at, key);
            at += 4;
        }
        if let Some(seq) = self.sequence {
            be::put_u32(buffer, at, seq);
        }
        if self.checksum {
            let ck = checksum::finish(checksum::data(buffer));
            be::put_u16(buffer, 4, ck);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PACKET: [u8; 16] = [
        // K and S present, version 0, protocol IPv4
        0x30, 0x00, 0x08, 0x00,
        // key
        0x00, 0x00, 0x5e, 0xed,
        // sequence number
        0x00, 0x00, 0x00, 0x07,
        // payload
        0x45, 0x00, 0x00, 0x14,
    ];

    fn repr() -> Repr {
        Repr { protocol: EtherType::Ipv4, checksum: false, key: Some(24301), sequence: Some(7) }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert!(!p.has_checksum() && p.has_key() && p.has_sequence());
        assert_eq!((p.version(), p.protocol(), p.header_len()), (0, EtherType::Ipv4, 12));
        assert_eq!((p.checksum(), p.key(), p.sequence()), (None, Some(24301), Some(7)));
        assert_eq!(p.payload(), &[0x45, 0x00, 0x00, 0x14]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct_and_emit() {
        let mut bytes = PACKET;
        bytes[..12].fill(0xff);
        let r = repr();
        assert_eq!(r.buffer_len(), 12);
        r.emit(&mut bytes);
        assert_eq!(bytes, PACKET);
        // The plain 4-byte form used for encapsulation.
        let plain = Repr { protocol: EtherType::Ipv6, checksum: false, key: None, sequence: None };
        let mut b = [0xffu8; 4];
        plain.emit(&mut b);
        assert_eq!(b, [0x00, 0x00, 0x86, 0xdd]);
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&PACKET[..]).unwrap()).unwrap(), repr());
    }

    #[test]
    fn checksum_round_trip() {
        let r = Repr { protocol: EtherType::Ipv4, checksum: true, key: None, sequence: None };
        let mut bytes = [0u8; 12];
        bytes[8..].copy_from_slice(&[0x45, 0x00, 0x00, 0x14]);
        r.emit(&mut bytes);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap(), r);
        bytes[9] ^= 0x10;
        assert!(!Packet::new_checked(&bytes[..]).unwrap().verify_checksum());
    }

    #[test]
    fn refused() {
        assert_eq!(Packet::new_checked(&PACKET[..3]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&PACKET[..11]).unwrap_err(), Error::Truncated);
        let mut b = PACKET;
        b[1] = 0x01; // version 1 (PPTP)
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Unsupported);
        let mut b = PACKET;
        b[0] |= 0x40; // routing present (RFC 1701)
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Unsupported);
    }
}
