//! ICMP for IPv6 (RFC 4443), with Neighbor Discovery's solicitation and advertisement
//! (RFC 4861, §4.3–4.4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Echo: Identifier, Sequence / Packet too big: MTU / ND: flags  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Errors: as much of the original packet as fits in 1280 bytes  |
//! | ND: Target Address (16 bytes), then options (8-byte units)     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The checksum covers the IPv6 pseudo-header (RFC 8200, §8.1), so checking and filling it
//! need the addresses. After [`Packet::new_checked`] no accessor panics.

use std::net::{IpAddr, Ipv6Addr};

use super::{be, checksum, enum_with_unknown, ip, ipv6, Error, EthernetAddress, Field, IpProtocol, Result};

enum_with_unknown! {
    /// The ICMPv6 message type.
    pub enum Message(u8) {
        /// Destination unreachable.
        DstUnreachable = 1,
        /// Packet too big.
        PacketTooBig = 2,
        /// Time exceeded.
        TimeExceeded = 3,
        /// Parameter problem.
        ParamProblem = 4,
        /// Echo request.
        EchoRequest = 128,
        /// Echo reply.
        EchoReply = 129,
        /// Router solicitation.
        RouterSolicit = 133,
        /// Router advertisement.
        RouterAdvert = 134,
        /// Neighbor solicitation.
        NeighborSolicit = 135,
        /// Neighbor advertisement.
        NeighborAdvert = 136,
        /// Redirect.
        Redirect = 137,
    }
}

mod field {
    use super::Field;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const REST: Field = 4..8;
    pub(super) const TARGET: Field = 8..24;
}

/// The length of the ICMPv6 header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::REST.end;

/// The length of a neighbor solicitation or advertisement without options.
pub const ND_LEN: usize = field::TARGET.end;

/// The length of an Ethernet link-layer address option (RFC 4861, §4.6.1).
pub const LLADDR_OPTION_LEN: usize = 8;

const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_TARGET_LLADDR: u8 = 2;

/// Flags of a neighbor advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NdFlags(pub u8);

impl NdFlags {
    /// The sender is a router.
    pub const ROUTER: NdFlags = NdFlags(0x80);
    /// Sent in answer to a solicitation.
    pub const SOLICITED: NdFlags = NdFlags(0x40);
    /// Override an existing cache entry.
    pub const OVERRIDE: NdFlags = NdFlags(0x20);
}

impl core::ops::BitOr for NdFlags {
    type Output = NdFlags;
    fn bitor(self, rhs: NdFlags) -> NdFlags {
        NdFlags(self.0 | rhs.0)
    }
}

/// A view of an ICMPv6 message (the upper-layer payload of an IPv6 packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds the 8-byte header, and for neighbor solicitations and
    /// advertisements the target address.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header (and an ND message's target) is whole.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if matches!(self.msg_type(), Message::NeighborSolicit | Message::NeighborAdvert) && len < ND_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
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

    /// The four bytes after the checksum (echo identifier and sequence, MTU, pointer, ND
    /// flags).
    pub fn rest_of_header(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::REST.start)
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The target address of a neighbor solicitation or advertisement.
    ///
    /// # Panics
    /// On other message types shorter than 24 bytes.
    pub fn target_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::TARGET]);
        Ipv6Addr::from(a)
    }

    /// The link-layer address in the ND option of `kind` (1 source, 2 target), if present.
    /// Options of length 0 are [`Error::Malformed`] (RFC 4861, §4.6).
    fn nd_lladdr(&self, kind: u8) -> Result<Option<EthernetAddress>> {
        let b = self.buffer.as_ref();
        let mut at = ND_LEN;
        while at + 2 <= b.len() {
            let len = usize::from(b[at + 1]) * 8;
            if len == 0 {
                return Err(Error::Malformed);
            }
            if at + len > b.len() {
                return Err(Error::Truncated);
            }
            if b[at] == kind && len == LLADDR_OPTION_LEN {
                return Ok(Some(EthernetAddress::from_bytes(&b[at + 2..at + 8])));
            }
            at += len;
        }
        Ok(None)
    }

    /// Whether the checksum, with the pseudo-header of `src` and `dst`, is right.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)]) == 0xffff
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

    /// Sets the ND target address.
    pub fn set_target_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&value.octets());
    }

    /// Computes the checksum over the whole buffer with the pseudo-header of `src` and
    /// `dst`, and writes it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, b.len() as u32);
        let sum = checksum::combine(&[ph, checksum::data(b)]);
        self.set_checksum(checksum::finish(sum));
    }

    /// Everything after the 8-byte header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An ICMPv6 message.
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
        /// Why.
        code: u8,
        /// The beginning of the packet that could not be delivered.
        original: &'a [u8],
    },
    /// Packet too big.
    PacketTooBig {
        /// The MTU of the next hop.
        mtu: u32,
        /// The beginning of the packet.
        original: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// 0: hop limit exceeded; 1: reassembly time exceeded.
        code: u8,
        /// The beginning of the packet.
        original: &'a [u8],
    },
    /// Neighbor solicitation.
    NeighborSolicit {
        /// Whose link-layer address is wanted.
        target_addr: Ipv6Addr,
        /// The soliciter's link-layer address, from its option.
        source_lladdr: Option<EthernetAddress>,
    },
    /// Neighbor advertisement.
    NeighborAdvert {
        /// Router, solicited, override.
        flags: NdFlags,
        /// Whose link-layer address this is.
        target_addr: Ipv6Addr,
        /// The link-layer address, from its option.
        target_lladdr: Option<EthernetAddress>,
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
        let rest = packet.rest_of_header();
        Ok(match packet.msg_type() {
            Message::EchoRequest => {
                Repr::EchoRequest { ident: (rest >> 16) as u16, seq_no: rest as u16, data }
            }
            Message::EchoReply => Repr::EchoReply { ident: (rest >> 16) as u16, seq_no: rest as u16, data },
            Message::DstUnreachable => Repr::DstUnreachable { code: packet.msg_code(), original: data },
            Message::PacketTooBig => Repr::PacketTooBig { mtu: rest, original: data },
            Message::TimeExceeded => Repr::TimeExceeded { code: packet.msg_code(), original: data },
            Message::NeighborSolicit => Repr::NeighborSolicit {
                target_addr: packet.target_addr(),
                source_lladdr: packet.nd_lladdr(OPT_SOURCE_LLADDR)?,
            },
            Message::NeighborAdvert => Repr::NeighborAdvert {
                flags: NdFlags((rest >> 24) as u8 & 0xe0),
                target_addr: packet.target_addr(),
                target_lladdr: packet.nd_lladdr(OPT_TARGET_LLADDR)?,
            },
            msg_type => Repr::Other { msg_type, code: packet.msg_code(), rest_of_header: rest, data },
        })
    }

    /// The length of the whole message.
    pub fn buffer_len(&self) -> usize {
        match *self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } | Repr::Other { data, .. } => {
                HEADER_LEN + data.len()
            }
            Repr::DstUnreachable { original, .. }
            | Repr::PacketTooBig { original, .. }
            | Repr::TimeExceeded { original, .. } => HEADER_LEN + original.len(),
            Repr::NeighborSolicit { source_lladdr: ll, .. }
            | Repr::NeighborAdvert { target_lladdr: ll, .. } => {
                ND_LEN + if ll.is_some() { LLADDR_OPTION_LEN } else { 0 }
            }
        }
    }

    /// Writes the message and its checksum (pseudo-header of `src` and `dst`) into
    /// `packet`, whose buffer is exactly [`buffer_len`](Repr::buffer_len) bytes long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, src: Ipv6Addr, dst: Ipv6Addr) {
        let echo = |ident: u16, seq_no: u16| u32::from(ident) << 16 | u32::from(seq_no);
        let (msg_type, code, rest, data): (Message, u8, u32, &[u8]) = match *self {
            Repr::EchoRequest { ident, seq_no, data } => (Message::EchoRequest, 0, echo(ident, seq_no), data),
            Repr::EchoReply { ident, seq_no, data } => (Message::EchoReply, 0, echo(ident, seq_no), data),
            Repr::DstUnreachable { code, original } => (Message::DstUnreachable, code, 0, original),
            Repr::PacketTooBig { mtu, original } => (Message::PacketTooBig, 0, mtu, original),
            Repr::TimeExceeded { code, original } => (Message::TimeExceeded, code, 0, original),
            Repr::Other { msg_type, code, rest_of_header, data } => (msg_type, code, rest_of_header, data),
            Repr::NeighborSolicit { .. } => (Message::NeighborSolicit, 0, 0, &[]),
            Repr::NeighborAdvert { flags, .. } => (Message::NeighborAdvert, 0, u32::from(flags.0) << 24, &[]),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        packet.data_mut()[..data.len()].copy_from_slice(data);
        let nd = match *self {
            Repr::NeighborSolicit { target_addr, source_lladdr } => {
                Some((target_addr, OPT_SOURCE_LLADDR, source_lladdr))
            }
            Repr::NeighborAdvert { target_addr, target_lladdr, .. } => {
                Some((target_addr, OPT_TARGET_LLADDR, target_lladdr))
            }
            _ => None,
        };
        if let Some((target, kind, lladdr)) = nd {
            packet.set_target_addr(target);
            if let Some(ll) = lladdr {
                let opt = &mut packet.buffer.as_mut()[ND_LEN..ND_LEN + LLADDR_OPTION_LEN];
                opt[0] = kind;
                opt[1] = 1;
                opt[2..].copy_from_slice(&ll.0);
            }
        }
        packet.fill_checksum(src, dst);
    }
}

/// The flow of the packet quoted in an ICMPv6 error's data (the original IPv6 header, its
/// extension headers and the first bytes of its upper layer). The quote may stop short of
/// the original's length; extension headers cut off by it are [`Error::Truncated`].
pub fn quoted(data: &[u8]) -> Result<ip::Quoted> {
    let original = ipv6::Packet::new_checked_prefix(data)?;
    let upper = original.upper_layer()?;
    let first = upper.fragment.is_none_or(|f| f.offset == 0);
    let l4 = &data[upper.offset.min(data.len())..];
    Ok(ip::Quoted {
        src_addr: IpAddr::V6(original.src_addr()),
        dst_addr: IpAddr::V6(original.dst_addr()),
        protocol: upper.protocol,
        ports: ip::quoted_ports(upper.protocol, l4, first),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }
    fn vip() -> Ipv6Addr {
        "2001:db8:ffff::10".parse().unwrap()
    }

    #[rustfmt::skip]
    static SOLICIT: [u8; 32] = [
        // type 135, code 0, checksum
        0x87, 0x00, 0x00, 0x00,
        // reserved
        0x00, 0x00, 0x00, 0x00,
        // target 2001:db8:ffff::10
        0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        // option: source link-layer address 02:00:00:00:00:fe
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe,
    ];

    fn solicit_repr() -> Repr<'static> {
        Repr::NeighborSolicit {
            target_addr: vip(),
            source_lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 0xfe])),
        }
    }

    fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
        Packet::new_unchecked(&mut bytes[..]).fill_checksum(client(), vip());
        bytes
    }

    #[test]
    fn deconstruct() {
        let bytes = with_checksum(SOLICIT.to_vec());
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (Message::NeighborSolicit, 0));
        assert_eq!(p.target_addr(), vip());
        assert_eq!(p.nd_lladdr(OPT_SOURCE_LLADDR), Ok(Some(EthernetAddress([2, 0, 0, 0, 0, 0xfe]))));
        assert!(p.verify_checksum(client(), vip()));
        assert!(!p.verify_checksum(vip(), "2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 32];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Message::NeighborSolicit);
        p.set_target_addr(vip());
        p.data_mut()[16..].copy_from_slice(&[0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe]);
        assert_eq!(bytes, SOLICIT);
    }

    #[test]
    fn parse() {
        let p = Packet::new_checked(&SOLICIT[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), solicit_repr());
        let echo = [0x80, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, 0xaa];
        let p = Packet::new_checked(&echo[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), Repr::EchoRequest { ident: 0x1234, seq_no: 7, data: &[0xaa] });
        let too_big = [0x02, 0, 0, 0, 0, 0, 0x05, 0xb4, 0x60];
        let p = Packet::new_checked(&too_big[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), Repr::PacketTooBig { mtu: 1460, original: &[0x60] });
    }

    #[test]
    fn emit() {
        let repr = solicit_repr();
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), client(), vip());
        assert_eq!(bytes, with_checksum(SOLICIT.to_vec()));

        let advert = Repr::NeighborAdvert {
            flags: NdFlags::SOLICITED | NdFlags::OVERRIDE,
            target_addr: vip(),
            target_lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 1])),
        };
        let mut bytes = vec![0u8; advert.buffer_len()];
        advert.emit(&mut Packet::new_unchecked(&mut bytes[..]), vip(), client());
        assert_eq!(bytes[0], 136);
        assert_eq!(bytes[4], 0x60);
        assert_eq!(bytes[24..], [0x02, 0x01, 2, 0, 0, 0, 0, 1]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum(vip(), client()));
        assert_eq!(Repr::parse(&p).unwrap(), advert);
    }

    #[test]
    fn bad_options_and_lengths() {
        let mut b = SOLICIT;
        b[25] = 0;
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(), Error::Malformed);
        b[25] = 2;
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&SOLICIT[..23]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&SOLICIT[..7]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn quoted_flow() {
        // A UDP packet from the VIP (port 53) to the client, behind a fragment header.
        let mut orig = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        orig.extend_from_slice(&vip().octets());
        orig.extend_from_slice(&client().octets());
        orig.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
        orig.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 8, 0, 0]);
        let q = quoted(&orig).unwrap();
        assert_eq!((q.src_addr, q.dst_addr), (IpAddr::V6(vip()), IpAddr::V6(client())));
        assert_eq!((q.protocol, q.ports), (IpProtocol::Udp, Some((53, 40000))));
        // A later fragment carries no ports.
        orig[42] = 0x05;
        assert_eq!(quoted(&orig).unwrap().ports, None);
        assert_eq!(quoted(&orig[..45]).unwrap_err(), Error::Truncated);
    }
}
