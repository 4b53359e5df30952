//! TCP (RFC 9293), the header only: vipgate reads ports and flags, never a stream.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |       |       |R|E|G|K|H|T|N|N|                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Options are skipped via Data Offset. The buffer is the TCP segment: the IP payload.
//! After [`Packet::new_checked`] no accessor panics.

use std::net::IpAddr;

use super::{be, checksum, Error, Field, IpProtocol, Result};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const SEQ_NUM: Field = 4..8;
    pub(super) const ACK_NUM: Field = 8..12;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: Field = 14..16;
    pub(super) const CHECKSUM: Field = 16..18;
    pub(super) const URGENT: Field = 18..20;
}

/// The length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// The eight TCP flags of byte 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds the whole header, options included.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that Data Offset is at least 5 and the header fits the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < self.header_len() {
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// The header length in bytes, options included (Data Offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window.
    pub fn window_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options, raw.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the whole buffer, with the pseudo-header of `src` and
    /// `dst`, is right.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Tcp, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)]) == 0xffff
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

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        be::put_u32(self.buffer.as_mut(), field::SEQ_NUM.start, value);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        be::put_u32(self.buffer.as_mut(), field::ACK_NUM.start, value);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); clears the reserved bits.
    pub fn set_header_len(&mut self, value: usize) {
        self.buffer.as_mut()[field::DATA_OFFSET] = ((value / 4) as u8) << 4;
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, value: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = value.0;
    }

    /// Sets the window.
    pub fn set_window_len(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::WIN_SIZE.start, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    /// Computes the checksum over the whole buffer with the pseudo-header of `src` and
    /// `dst`, and writes it.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Tcp, b.len() as u32);
        let sum = checksum::combine(&[ph, checksum::data(b)]);
        self.set_checksum(checksum::finish(sum));
    }

    /// The data after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// A TCP header, without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
}

impl Repr {
    /// The header of a checked segment (options skipped, checksum not verified).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
        })
    }

    /// The length of the header this emits (no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header into `packet`, whose buffer is the header followed by the
    /// payload, and the checksum over both with the pseudo-header of `src` and `dst`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, src: IpAddr, dst: IpAddr) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(HEADER_LEN);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));

    #[rustfmt::skip]
    static SEGMENT: [u8; 28] = [
        // source port 40000, destination port 8000
        0x9c, 0x40, 0x1f, 0x40,
        // sequence number
        0x01, 0x02, 0x03, 0x04,
        // acknowledgment number
        0x0a, 0x0b, 0x0c, 0x0d,
        // data offset 6, flags PSH|ACK, window 1024
        0x60, 0x18, 0x04, 0x00,
        // checksum, urgent pointer
        0x00, 0x00, 0x00, 0x00,
        // options: MSS 1460
        0x02, 0x04, 0x05, 0xb4,
        // payload
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn repr() -> Repr {
        Repr {
            src_port: 40000,
            dst_port: 8000,
            seq_number: 0x0102_0304,
            ack_number: 0x0a0b_0c0d,
            flags: TcpFlags::PSH | TcpFlags::ACK,
            window_len: 1024,
            urgent_at: 0,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 8000));
        assert_eq!((p.seq_number(), p.ack_number()), (0x0102_0304, 0x0a0b_0c0d));
        assert_eq!(p.header_len(), 24);
        assert!(p.flags().contains(TcpFlags::ACK) && !p.flags().contains(TcpFlags::SYN));
        assert_eq!((p.window_len(), p.urgent_at()), (1024, 0));
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_src_port(40000);
        p.set_dst_port(8000);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0x0a0b_0c0d);
        p.set_header_len(24);
        p.set_flags(TcpFlags(0x18));
        p.set_window_len(1024);
        p.options_mut_for_test().copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, SEGMENT);
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
        fn options_mut_for_test(&mut self) -> &mut [u8] {
            let end = self.header_len();
            &mut self.buffer.as_mut()[HEADER_LEN..end]
        }
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&SEGMENT[..]).unwrap()).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = [0u8; 24];
        bytes[20..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        repr().emit(&mut Packet::new_unchecked(&mut bytes[..]), SRC, DST);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), repr());
        assert_eq!(p.header_len(), 20);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11))));
        // The same checksum computed by hand over pseudo-header and segment.
        let mut all = vec![192, 0, 2, 1, 203, 0, 113, 10, 0, 6, 0, 24];
        all.extend_from_slice(&bytes);
        assert_eq!(checksum::data(&all), 0xffff);
    }

    #[test]
    fn bad_lengths() {
        assert_eq!(Packet::new_checked(&SEGMENT[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&SEGMENT[..23]).unwrap_err(), Error::Truncated);
        let mut b = SEGMENT;
        b[12] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }
}
