//! UDP (RFC 768).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Length             |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Length covers header and data; [`Packet::payload`] ends there, so trailing bytes in the
//! buffer are ignored. A zero checksum means "none" over IPv4 (and over IPv6 for tunnels,
//! RFC 6935). After [`Packet::new_checked`] no accessor panics.

use std::net::IpAddr;

use super::{be, checksum, Error, Field, IpProtocol, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const CHECKSUM: Field = 6..8;
}

/// The length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds the header and as many bytes as Length says.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks 8 ≤ Length ≤ buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < field_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length: header and data, in bytes.
    pub fn len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Whether the datagram carries no data.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The data after the header, up to Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is right, with the pseudo-header of `src` and `dst`; a zero
    /// checksum (none) counts as right.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(len));
        let data = checksum::data(&self.buffer.as_ref()[..usize::from(len)]);
        checksum::combine(&[ph, data]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    /// Sets Length.
    pub fn set_len(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Computes the checksum over Length bytes with the pseudo-header of `src` and `dst`
    /// and writes it; a computed zero is sent as `0xffff` (RFC 768).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = self.len();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(len));
        let data = checksum::data(&self.buffer.as_ref()[..usize::from(len)]);
        let ck = checksum::finish(checksum::combine(&[ph, data]));
        self.set_checksum(if ck == 0 { 0xffff } else { ck });
    }

    /// The data after the header, up to Length, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length of the data in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// The header of a checked datagram (checksum not verified).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// The length of the header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `packet`, whose buffer holds the header and `payload_len`
    /// bytes of data. With `checksum_from = Some((src, dst))` the checksum is computed over
    /// the data already in place; with `None` it is left zero ("no checksum", as for GUE
    /// over IPv4, RFC 8086 §4.1.1 / RFC 6935 for IPv6 tunnels).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        checksum_from: Option<(IpAddr, IpAddr)>,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        match checksum_from {
            Some((src, dst)) => packet.fill_checksum(src, dst),
            None => packet.set_checksum(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));

    #[rustfmt::skip]
    static DATAGRAM: [u8; 14] = [
        // source port 40000, destination port 8000
        0x9c, 0x40, 0x1f, 0x40,
        // length 12, checksum
        0x00, 0x0c, 0xce, 0xaf,
        // payload
        0xaa, 0xbb, 0xcc, 0xdd,
        // trailing bytes past Length
        0xee, 0xff,
    ];

    fn repr() -> Repr {
        Repr { src_port: 40000, dst_port: 8000, payload_len: 4 }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 8000, 12));
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.is_empty());
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 14];
        bytes[12..].copy_from_slice(&[0xee, 0xff]);
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_src_port(40000);
        p.set_dst_port(8000);
        p.set_len(12);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        p.fill_checksum(SRC, DST);
        assert_eq!(bytes, DATAGRAM);
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&DATAGRAM[..]).unwrap()).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = DATAGRAM;
        bytes[..8].fill(0);
        repr().emit(&mut Packet::new_unchecked(&mut bytes[..]), Some((SRC, DST)));
        assert_eq!(bytes, DATAGRAM);
        repr().emit(&mut Packet::new_unchecked(&mut bytes[..]), None);
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().checksum(), 0);
    }

    #[test]
    fn bad_lengths() {
        assert_eq!(Packet::new_checked(&DATAGRAM[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&DATAGRAM[..11]).unwrap_err(), Error::Truncated);
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }
}
