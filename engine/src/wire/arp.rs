//! ARP (RFC 826), for Ethernet and IPv4 only.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |       Hardware type (1)       |     Protocol type (0x0800)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | HW len (6)    | Proto len (4) |           Operation           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                Sender hardware address (6 bytes)              |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               | Sender protocol address (4)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                Target hardware address (6 bytes)              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Target protocol address (4)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Packet::new_checked`] accepts any hardware and protocol lengths that fit the buffer;
//! [`Repr::parse`] accepts only Ethernet/IPv4 and says [`Error::Unsupported`] otherwise.
//! After `new_checked` no accessor panics.

use std::net::Ipv4Addr;

use super::{be, enum_with_unknown, Error, EtherType, EthernetAddress, Field, Result};

enum_with_unknown! {
    /// The ARP operation.
    pub enum Operation(u16) {
        /// Who has this protocol address?
        Request = 1,
        /// This hardware address has it.
        Reply = 2,
    }
}

/// The ARP hardware type of Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

mod field {
    use super::Field;
    pub(super) const HTYPE: Field = 0..2;
    pub(super) const PTYPE: Field = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Field = 6..8;
    pub(super) const ADDRESSES: usize = 8;
}

/// The length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = field::ADDRESSES + 2 * (6 + 4);

/// A view of an ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds the fixed part and all four addresses.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the addresses that the length fields announce.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::ADDRESSES || len < self.len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The length of the packet as its length fields describe it.
    fn len(&self) -> usize {
        field::ADDRESSES + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::HTYPE.start)
    }

    /// Protocol type, an EtherType.
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(be::u16_at(self.buffer.as_ref(), field::PTYPE.start))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        Operation::from(be::u16_at(self.buffer.as_ref(), field::OPER.start))
    }

    fn address(&self, index: usize) -> &[u8] {
        let h = usize::from(self.hardware_len());
        let p = usize::from(self.protocol_len());
        let (start, len) = match index {
            0 => (field::ADDRESSES, h),
            1 => (field::ADDRESSES + h, p),
            2 => (field::ADDRESSES + h + p, h),
            _ => (field::ADDRESSES + 2 * h + p, p),
        };
        &self.buffer.as_ref()[start..start + len]
    }

    /// Sender hardware address, as many bytes as `hardware_len`.
    pub fn source_hardware_addr(&self) -> &[u8] {
        self.address(0)
    }

    /// Sender protocol address, as many bytes as `protocol_len`.
    pub fn source_protocol_addr(&self) -> &[u8] {
        self.address(1)
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.address(2)
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.address(3)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the fixed part for Ethernet/IPv4 with `operation`.
    pub fn set_ethernet_ipv4(&mut self, operation: Operation) {
        let b = self.buffer.as_mut();
        be::put_u16(b, field::HTYPE.start, HARDWARE_ETHERNET);
        be::put_u16(b, field::PTYPE.start, EtherType::Ipv4.into());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        be::put_u16(b, field::OPER.start, operation.into());
    }

    /// Writes the four addresses of an Ethernet/IPv4 packet.
    pub fn set_ethernet_ipv4_addrs(
        &mut self,
        source_hardware_addr: EthernetAddress,
        source_protocol_addr: Ipv4Addr,
        target_hardware_addr: EthernetAddress,
        target_protocol_addr: Ipv4Addr,
    ) {
        let b = &mut self.buffer.as_mut()[field::ADDRESSES..ETHERNET_IPV4_LEN];
        b[0..6].copy_from_slice(&source_hardware_addr.0);
        b[6..10].copy_from_slice(&source_protocol_addr.octets());
        b[10..16].copy_from_slice(&target_hardware_addr.0);
        b[16..20].copy_from_slice(&target_protocol_addr.octets());
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// The operation.
    pub operation: Operation,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

impl Repr {
    /// An Ethernet/IPv4 ARP packet; other hardware or protocol types are
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            operation: packet.operation(),
            source_hardware_addr: EthernetAddress::from_bytes(packet.source_hardware_addr()),
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: EthernetAddress::from_bytes(packet.target_hardware_addr()),
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// The length of the packet.
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes the packet into `packet`, whose buffer holds at least
    /// [`ETHERNET_IPV4_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_ethernet_ipv4(self.operation);
        packet.set_ethernet_ipv4_addrs(
            self.source_hardware_addr,
            self.source_protocol_addr,
            self.target_hardware_addr,
            self.target_protocol_addr,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static REQUEST: [u8; 28] = [
        // hardware type: Ethernet, protocol type: IPv4
        0x00, 0x01, 0x08, 0x00,
        // lengths 6 and 4, operation: request
        0x06, 0x04, 0x00, 0x01,
        // sender: 02:00:00:00:00:fe, 198.51.100.254
        0x02, 0x00, 0x00, 0x00, 0x00, 0xfe, 198, 51, 100, 254,
        // target: unknown, 198.51.100.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 51, 100, 1,
    ];

    fn repr() -> Repr {
        Repr {
            operation: Operation::Request,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
            source_protocol_addr: Ipv4Addr::new(198, 51, 100, 254),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(198, 51, 100, 1),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::Ipv4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.source_hardware_addr(), &[2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(p.source_protocol_addr(), &[198, 51, 100, 254]);
        assert_eq!(p.target_hardware_addr(), &[0; 6]);
        assert_eq!(p.target_protocol_addr(), &[198, 51, 100, 1]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xffu8; 28];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_ethernet_ipv4(Operation::Request);
        p.set_ethernet_ipv4_addrs(
            EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
            Ipv4Addr::new(198, 51, 100, 254),
            EthernetAddress([0; 6]),
            Ipv4Addr::new(198, 51, 100, 1),
        );
        assert_eq!(bytes, REQUEST);
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&REQUEST[..]).unwrap()).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = [0u8; 28];
        let r = repr();
        assert_eq!(r.buffer_len(), 28);
        r.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REQUEST);
    }

    #[test]
    fn lengths_and_other_protocols() {
        assert_eq!(Packet::new_checked(&REQUEST[..27]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&REQUEST[..7]).unwrap_err(), Error::Truncated);
        // Hardware length 255 announces more than the buffer has.
        let mut big = REQUEST;
        big[4] = 255;
        assert_eq!(Packet::new_checked(&big[..]).unwrap_err(), Error::Truncated);
        // A well-formed packet for another hardware type is not ours to answer.
        let mut other = REQUEST;
        other[1] = 6;
        let p = Packet::new_checked(&other[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Unsupported);
    }
}
