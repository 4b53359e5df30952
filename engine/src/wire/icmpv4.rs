//! ICMP for IPv4 (RFC 792; RFC 1191 for "fragmentation needed").
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Echo: Identifier / Dest. unreachable (4): unused | MTU      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Echo: data / Errors: the original IP header + at least 8     |
//! |   bytes of its payload                                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Error messages carry the beginning of the datagram that caused them; [`quoted`] reads
//! its flow. After [`Packet::new_checked`] no accessor panics.

use super::{be, checksum, enum_with_unknown, ip, ipv4, Error, Field, Result};

enum_with_unknown! {
    /// The ICMP message type.
    pub enum Message(u8) {
        /// Echo reply.
        EchoReply = 0,
        /// Destination unreachable.
        DstUnreachable = 3,
        /// Redirect.
        Redirect = 5,
        /// Echo request.
        EchoRequest = 8,
        /// Time exceeded.
        TimeExceeded = 11,
        /// Parameter problem.
        ParamProblem = 12,
    }
}

/// The "destination unreachable" code for "fragmentation needed and DF set".
pub const CODE_FRAG_NEEDED: u8 = 4;

mod field {
    use super::Field;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const REST: Field = 4..8;
    pub(super) const ECHO_IDENT: Field = 4..6;
    pub(super) const ECHO_SEQNO: Field = 6..8;
    pub(super) const MTU: Field = 6..8;
}

/// The length of the ICMP header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::REST.end;

/// A view of an ICMP message (the whole IP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header is whole.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The message type.
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The four bytes after the checksum.
    pub fn rest_of_header(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::REST.start)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// Next-hop MTU of "fragmentation needed" (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::MTU.start)
    }

    /// Everything after the header: echo data, or the quoted datagram of an error.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the four bytes after the checksum.
    pub fn set_rest_of_header(&mut self, value: u32) {
        be::put_u32(self.buffer.as_mut(), field::REST.start, value);
    }

    /// Computes the checksum over the whole buffer and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(checksum::finish(sum));
    }

    /// Everything after the header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data to echo.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echoed data.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Why; [`CODE_FRAG_NEEDED`] for "fragmentation needed".
        code: u8,
        /// The next-hop MTU (code 4), else 0.
        next_hop_mtu: u16,
        /// The beginning of the datagram that could not be delivered.
        original: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// 0: TTL exceeded in transit; 1: reassembly time exceeded.
        code: u8,
        /// The beginning of the datagram.
        original: &'a [u8],
    },
    /// Any other message, kept as it is.
    Other {
        /// The type.
        msg_type: Message,
        /// The code.
        code: u8,
        /// The four bytes after the checksum.
        rest_of_header: u32,
        /// What follows.
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// The message of a checked packet (checksum not verified: see
    /// [`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &'a Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        let data = &packet.buffer.as_ref()[HEADER_LEN..];
        Ok(match packet.msg_type() {
            Message::EchoRequest => {
                Repr::EchoRequest { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data }
            }
            Message::EchoReply => {
                Repr::EchoReply { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data }
            }
            Message::DstUnreachable => Repr::DstUnreachable {
                code: packet.msg_code(),
                next_hop_mtu: if packet.msg_code() == CODE_FRAG_NEEDED { packet.next_hop_mtu() } else { 0 },
                original: data,
            },
            Message::TimeExceeded => Repr::TimeExceeded { code: packet.msg_code(), original: data },
            msg_type => Repr::Other {
                msg_type,
                code: packet.msg_code(),
                rest_of_header: packet.rest_of_header(),
                data,
            },
        })
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::EchoRequest { data, .. }
            | Repr::EchoReply { data, .. }
            | Repr::Other { data, .. }
            | Repr::DstUnreachable { original: data, .. }
            | Repr::TimeExceeded { original: data, .. } => data,
        }
    }

    /// The length of the whole message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message, data included, and its checksum into `packet`, whose buffer is
    /// exactly [`buffer_len`](Repr::buffer_len) bytes long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let (msg_type, code, rest) = match *self {
            Repr::EchoRequest { ident, seq_no, .. } => {
                (Message::EchoRequest, 0, u32::from(ident) << 16 | u32::from(seq_no))
            }
            Repr::EchoReply { ident, seq_no, .. } => {
                (Message::EchoReply, 0, u32::from(ident) << 16 | u32::from(seq_no))
            }
            Repr::DstUnreachable { code, next_hop_mtu, .. } => {
                (Message::DstUnreachable, code, u32::from(next_hop_mtu))
            }
            Repr::TimeExceeded { code, .. } => (Message::TimeExceeded, code, 0),
            Repr::Other { msg_type, code, rest_of_header, .. } => (msg_type, code, rest_of_header),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        let data = self.data();
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }
}

/// The flow of the datagram quoted in an ICMP error's data (the original IPv4 header and
/// the first bytes of its payload). The quote may stop short of the original's length.
pub fn quoted(data: &[u8]) -> Result<ip::Quoted> {
    let original = ipv4::Packet::new_checked_prefix(data)?;
    let protocol = original.protocol();
    Ok(ip::Quoted {
        src_addr: original.src_addr().into(),
        dst_addr: original.dst_addr().into(),
        protocol,
        ports: ip::quoted_ports(protocol, original.payload(), original.frag_offset() == 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use std::net::Ipv4Addr;

    #[rustfmt::skip]
    static ECHO: [u8; 12] = [
        // type 8 (echo request), code 0, checksum
        0x08, 0x00, 0x6e, 0x31,
        // identifier 0x1234, sequence 1
        0x12, 0x34, 0x00, 0x01,
        // data
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    #[rustfmt::skip]
    static FRAG_NEEDED: [u8; 36] = [
        // type 3, code 4 (fragmentation needed), checksum
        0x03, 0x04, 0x00, 0x00,
        // unused, next-hop MTU 1480
        0x00, 0x00, 0x05, 0xc8,
        // quoted IPv4 header: 203.0.113.10 -> 192.0.2.1, TCP, total length 1500
        0x45, 0x00, 0x05, 0xdc, 0x00, 0x00, 0x40, 0x00,
        0x3f, 0x06, 0x00, 0x00, 0xcb, 0x00, 0x71, 0x0a,
        0xc0, 0x00, 0x02, 0x01,
        // the first 8 bytes of its TCP header: 8000 -> 40000
        0x1f, 0x40, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (Message::EchoRequest, 0));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert_eq!(p.data(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(p.verify_checksum());
        let p = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code(), p.next_hop_mtu()), (Message::DstUnreachable, 4, 1480));
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Message::EchoRequest);
        p.set_msg_code(0);
        p.set_rest_of_header(0x1234_0001);
        p.data_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        p.fill_checksum();
        assert_eq!(bytes, ECHO);
    }

    #[test]
    fn parse() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: &[0xaa, 0xbb, 0xcc, 0xdd] }
        );
        let p = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::DstUnreachable { code: 4, next_hop_mtu: 1480, original: &FRAG_NEEDED[8..] }
        );
    }

    #[test]
    fn emit() {
        let repr = Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: &[0xaa, 0xbb, 0xcc, 0xdd] };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, ECHO);

        let repr = Repr::DstUnreachable { code: 4, next_hop_mtu: 1480, original: &FRAG_NEEDED[8..] };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes[..2], FRAG_NEEDED[..2]);
        assert_eq!(bytes[4..], FRAG_NEEDED[4..]);
        assert!(Packet::new_checked(&bytes[..]).unwrap().verify_checksum());
    }

    #[test]
    fn quoted_flow() {
        let p = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        let q = quoted(p.data()).unwrap();
        assert_eq!(q.src_addr, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(q.dst_addr, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!((q.protocol, q.ports), (IpProtocol::Tcp, Some((8000, 40000))));
        // A quote that stops inside the ports has none; one inside the header is an error.
        assert_eq!(quoted(&p.data()[..22]).unwrap().ports, None);
        assert_eq!(quoted(&p.data()[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&ECHO[..7]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn unknown_types_are_kept() {
        let mut bytes = ECHO;
        bytes[0] = 42;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Repr::Other {
                msg_type: Message::Unknown(42),
                code: 0,
                rest_of_header: 0x1234_0001,
                data: &[0xaa, 0xbb, 0xcc, 0xdd]
            }
        );
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[4..], bytes[4..]);
    }
}
