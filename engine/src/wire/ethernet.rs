//! Ethernet II frames (IEEE 802.3, "DIX" framing).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Destination MAC address                     |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                     Source MAC address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           EtherType           |   Payload ...                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! After [`Frame::new_checked`] no accessor panics. The frame check sequence is not part
//! of the buffer (NICs strip it).

use core::fmt;

use super::{be, enum_with_unknown, Error, Field, Rest, Result};

enum_with_unknown! {
    /// The EtherType of a frame or of a VLAN tag's payload.
    pub enum EtherType(u16) {
        /// IPv4.
        Ipv4 = 0x0800,
        /// ARP (RFC 826).
        Arp = 0x0806,
        /// An IEEE 802.1Q VLAN tag follows.
        Vlan = 0x8100,
        /// IPv6.
        Ipv6 = 0x86dd,
        /// An IEEE 802.1ad service tag (QinQ) follows.
        QinQ = 0x88a8,
    }
}

/// A 48-bit Ethernet MAC address.
// `eq` below is the derived relation (all bytes equal), only faster: Hash stays consistent.
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Clone, Copy, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl PartialEq for EthernetAddress {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // One integer compare, rather than a call to memcmp.
        self.to_u64() == other.to_u64()
    }
}

impl EthernetAddress {
    /// The address as the low 48 bits of an integer.
    #[inline]
    pub const fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
    }

    /// The broadcast address, `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Whether the group bit is set (broadcast or multicast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The address from the first six bytes of `bytes`.
    ///
    /// # Panics
    /// If `bytes` is shorter than six bytes.
    pub fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&bytes[..6]);
        EthernetAddress(a)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::str::FromStr for EthernetAddress {
    type Err = Error;

    /// Parses `02:00:00:00:00:01` (or with `-` separators).
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or(Error::Malformed)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Malformed);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| Error::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(Error::Malformed);
        }
        Ok(EthernetAddress(out))
    }
}

mod field {
    use super::{Field, Rest};
    pub(super) const DESTINATION: Field = 0..6;
    pub(super) const SOURCE: Field = 6..12;
    pub(super) const ETHERTYPE: Field = 12..14;
    pub(super) const PAYLOAD: Rest = 14..;
}

/// The length of an Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// A view without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// A view of a buffer at least as long as the header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the whole header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        be::put_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value.into());
    }

    /// The bytes after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// An Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl Repr {
    /// The header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr { src_addr: frame.src_addr(), dst_addr: frame.dst_addr(), ethertype: frame.ethertype() })
    }

    /// The length of the header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`, whose buffer holds at least [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static FRAME: [u8; 18] = [
        // destination
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        // source
        0x02, 0x00, 0x00, 0x00, 0x00, 0xfe,
        // ethertype: IPv4
        0x08, 0x00,
        // payload
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn repr() -> Repr {
        Repr {
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
            ethertype: EtherType::Ipv4,
        }
    }

    #[test]
    fn deconstruct() {
        let frame = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 0xfe]));
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 18];
        let mut frame = Frame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
        frame.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 0xfe]));
        frame.set_ethertype(EtherType::Ipv4);
        frame.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME);
    }

    #[test]
    fn parse() {
        let frame = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(Repr::parse(&frame).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = FRAME;
        bytes[..14].fill(0);
        repr().emit(&mut Frame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, FRAME);
    }

    #[test]
    fn truncated_and_unknown() {
        assert_eq!(Frame::new_checked(&FRAME[..13]).unwrap_err(), Error::Truncated);
        let mut bytes = FRAME;
        bytes[12..14].copy_from_slice(&[0x12, 0x34]);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Unknown(0x1234));
    }

    #[test]
    fn mac_from_str() {
        assert_eq!("02:00:00:00:00:fe".parse(), Ok(EthernetAddress([2, 0, 0, 0, 0, 0xfe])));
        assert_eq!("02-00-00-00-00-FE".parse(), Ok(EthernetAddress([2, 0, 0, 0, 0, 0xfe])));
        assert!("02:00:00:00:00".parse::<EthernetAddress>().is_err());
        assert!("02:00:00:00:00:fe:01".parse::<EthernetAddress>().is_err());
        assert!("02:00:00:00:00:g0".parse::<EthernetAddress>().is_err());
        assert!("02:00:00:00:00:+f".parse::<EthernetAddress>().is_err());
        assert_eq!(EthernetAddress([2, 0, 0, 0, 0, 0xfe]).to_string(), "02:00:00:00:00:fe");
    }
}
