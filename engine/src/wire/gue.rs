//! Generic UDP Encapsulation, variant 0 (draft-ietf-intarea-gue-09, §3.1), carried in UDP
//! to the configured port.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | 0 |C|   Hlen  |  Proto/ctype  |             Flags             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! ~                  Extensions Fields (optional)                 ~
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Hlen counts the 32-bit words of extension fields. For a data message (C = 0),
//! Proto/ctype is the IP protocol of the payload (4 for IPv4, 41 for IPv6). Variant 1
//! (the first bits `01`, direct IP encapsulation) and the reserved variants are
//! [`Error::Unsupported`]. After [`Packet::new_checked`] no accessor panics.

use super::{be, Error, IpProtocol, Result};

/// The length of the GUE header without extension fields.
pub const BASE_HEADER_LEN: usize = 4;

/// A view of a GUE packet (the UDP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a variant-0 header whose extension fields fit the buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the variant and the length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < BASE_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.variant() != 0 {
            return Err(Error::Unsupported);
        }
        if len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The variant: the first two bits.
    pub fn variant(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }

    /// Whether this is a control message.
    pub fn is_control(&self) -> bool {
        self.buffer.as_ref()[0] & 0x20 != 0
    }

    /// Hlen: the extension fields' length in 32-bit words.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x1f
    }

    /// The header length in bytes, extension fields included.
    pub fn header_len(&self) -> usize {
        BASE_HEADER_LEN + 4 * usize::from(self.hlen())
    }

    /// Proto/ctype: the IP protocol of the payload of a data message, or the control
    /// message type.
    pub fn proto_ctype(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// The flags.
    pub fn flags(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), 2)
    }

    /// The extension fields, raw.
    pub fn extensions(&self) -> &[u8] {
        &self.buffer.as_ref()[BASE_HEADER_LEN..self.header_len()]
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// A variant-0 GUE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// A data message carrying a packet of `protocol`.
    Data {
        /// The IP protocol of the payload.
        protocol: IpProtocol,
        /// The flags.
        flags: u16,
        /// Extension fields' length in 32-bit words (emitted as zeros).
        hlen: u8,
    },
    /// A control message.
    Control {
        /// The control message type.
        ctype: u8,
        /// The flags.
        flags: u16,
        /// Extension fields' length in 32-bit words (emitted as zeros).
        hlen: u8,
    },
}

impl Repr {
    /// The header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let (flags, hlen) = (packet.flags(), packet.hlen());
        Ok(if packet.is_control() {
            Repr::Control { ctype: packet.proto_ctype(), flags, hlen }
        } else {
            Repr::Data { protocol: IpProtocol::from(packet.proto_ctype()), flags, hlen }
        })
    }

    /// A data message without flags or extensions: what vipgate emits.
    pub const fn data(protocol: IpProtocol) -> Repr {
        Repr::Data { protocol, flags: 0, hlen: 0 }
    }

    /// The length of the header.
    pub fn buffer_len(&self) -> usize {
        let (Repr::Data { hlen, .. } | Repr::Control { hlen, .. }) = *self;
        BASE_HEADER_LEN + 4 * usize::from(hlen & 0x1f)
    }

    /// Writes the header, extension fields zeroed, into the start of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        let (c, proto, flags, hlen) = match *self {
            Repr::Data { protocol, flags, hlen } => (0, u8::from(protocol), flags, hlen),
            Repr::Control { ctype, flags, hlen } => (0x20, ctype, flags, hlen),
        };
        buffer[0] = c | (hlen & 0x1f);
        buffer[1] = proto;
        be::put_u16(buffer, 2, flags);
        let len = self.buffer_len();
        buffer[BASE_HEADER_LEN..len].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PACKET: [u8; 12] = [
        // variant 0, data, Hlen 1; protocol 4 (IPv4); flags 0x8000
        0x01, 0x04, 0x80, 0x00,
        // one word of extension fields
        0x00, 0x00, 0x00, 0x2a,
        // payload: the start of an IPv4 header
        0x45, 0x00, 0x00, 0x14,
    ];

    fn repr() -> Repr {
        Repr::Data { protocol: IpProtocol::Ipv4, flags: 0x8000, hlen: 1 }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.variant(), p.is_control(), p.hlen(), p.header_len()), (0, false, 1, 8));
        assert_eq!((p.proto_ctype(), p.flags()), (4, 0x8000));
        assert_eq!(p.extensions(), &[0, 0, 0, 0x2a]);
        assert_eq!(p.payload(), &[0x45, 0x00, 0x00, 0x14]);
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&PACKET[..]).unwrap()).unwrap(), repr());
        let control = [0x20, 0x07, 0x00, 0x00];
        assert_eq!(
            Repr::parse(&Packet::new_checked(&control[..]).unwrap()).unwrap(),
            Repr::Control { ctype: 7, flags: 0, hlen: 0 }
        );
    }

    #[test]
    fn construct_and_emit() {
        let mut bytes = [0xffu8; 8];
        repr().emit(&mut bytes);
        assert_eq!(bytes[..4], PACKET[..4]);
        assert_eq!(bytes[4..8], [0, 0, 0, 0]);
        let mut plain = [0xffu8; 4];
        let r = Repr::data(IpProtocol::Ipv6);
        assert_eq!(r.buffer_len(), 4);
        r.emit(&mut plain);
        assert_eq!(plain, [0x00, 41, 0x00, 0x00]);
    }

    #[test]
    fn refused() {
        assert_eq!(Packet::new_checked(&PACKET[..3]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&PACKET[..7]).unwrap_err(), Error::Truncated);
        // Variant 1: an IPv4 header straight after UDP.
        assert_eq!(Packet::new_checked(&[0x45, 0, 0, 20][..]).unwrap_err(), Error::Unsupported);
    }
}
