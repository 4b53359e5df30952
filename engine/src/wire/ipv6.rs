//! IPv6 (RFC 8200), and the walk over its extension headers to the upper layer.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                         Source Address                        +
//! |                          (16 bytes)                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                      Destination Address                      +
//! |                          (16 bytes)                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Packet::upper_layer`] walks the hop-by-hop (first only), routing, fragment,
//! destination-options and AH headers (RFC 8200, §4; RFC 4302) to the first header that is
//! none of them, at most [`MAX_EXTENSION_HEADERS`] deep, and reports the fragment header
//! if there was one:
//!
//! ```text
//!  Fragment header (RFC 8200, §4.5):
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Identification                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  Other extension headers:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Header  |  Hdr Ext Len  |   (Hdr Ext Len + 1) × 8 bytes |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+    in all (AH: + 2) × 4)       .
//! ```
//!
//! The buffer may be longer than the packet (Ethernet padding); [`Packet::payload`] ends
//! at 40 + Payload Length. After [`Packet::new_checked`] no accessor panics.

use std::net::Ipv6Addr;

use super::{be, Error, Field, IpProtocol, Result};

mod field {
    use super::Field;
    pub(super) const VER_TC_FLOW: Field = 0..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC_ADDR: Field = 8..24;
    pub(super) const DST_ADDR: Field = 24..40;
}

/// The length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The length of a fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// How many extension headers [`Packet::upper_layer`] walks before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The protocol after the last extension header walked.
    pub protocol: IpProtocol,
    /// Its offset from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header, if the packet had one.
    pub fragment: Option<FragmentRepr>,
}

/// The meaning of a fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentRepr {
    /// The header after this one.
    pub next_header: IpProtocol,
    /// Offset of this fragment's data in the original packet, in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more_frags: bool,
    /// Identification of the original packet.
    pub ident: u32,
}

impl FragmentRepr {
    /// Parses the 8 bytes of a fragment header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<FragmentRepr> {
        if bytes.len() < FRAGMENT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let off_flags = be::u16_at(bytes, 2);
        Ok(FragmentRepr {
            next_header: IpProtocol::from(bytes[0]),
            offset: off_flags & 0xfff8,
            more_frags: off_flags & 1 != 0,
            ident: be::u32_at(bytes, 4),
        })
    }

    /// The length of a fragment header.
    pub const fn buffer_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    /// Writes the fragment header into the first 8 bytes of `bytes`.
    pub fn emit(&self, bytes: &mut [u8]) {
        bytes[0] = self.next_header.into();
        bytes[1] = 0;
        be::put_u16(bytes, 2, (self.offset & 0xfff8) | u16::from(self.more_frags));
        be::put_u32(bytes, 4, self.ident);
    }

    /// Whether this is a fragment of a larger packet (an "atomic fragment", offset 0
    /// without M, is not: RFC 8200, §4.5).
    pub fn is_fragment(&self) -> bool {
        self.offset != 0 || self.more_frags
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a whole packet: version 6, 40 + Payload Length ≤ buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// A view of a packet's beginning, as quoted by ICMPv6 errors: the fixed header must be
    /// whole, the payload may stop short of Payload Length.
    pub fn new_checked_prefix(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    fn check_header(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Checks version and lengths (see [`Packet::new_checked`]).
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if self.buffer.as_ref().len() < self.total_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// The version field (6).
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload Length: everything after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The length of the packet: 40 + Payload Length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The header after the fixed one.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Everything after the fixed header, up to Payload Length (or to the end of the
    /// buffer for a prefix view).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN..self.total_len().min(b.len())]
    }

    /// Walks the extension headers to the upper layer (see the module doc).
    ///
    /// Errors: an extension header that runs past the packet is [`Error::Truncated`]; a
    /// hop-by-hop header anywhere but first, or a second fragment header, is
    /// [`Error::Malformed`]; more than
    /// [`MAX_EXTENSION_HEADERS`] is [`Error::Unsupported`].
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let b = self.buffer.as_ref();
        let end = self.total_len().min(b.len());
        let mut protocol = self.next_header();
        let mut offset = HEADER_LEN;
        let mut fragment = None;
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let len = match protocol {
                IpProtocol::HopByHop if offset != HEADER_LEN => return Err(Error::Malformed),
                IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                    if offset + 2 > end {
                        return Err(Error::Truncated);
                    }
                    (usize::from(b[offset + 1]) + 1) * 8
                }
                IpProtocol::Ah => {
                    if offset + 2 > end {
                        return Err(Error::Truncated);
                    }
                    (usize::from(b[offset + 1]) + 2) * 4
                }
                // RFC 8200, §4.1: each extension header at most once (destination options
                // twice); a second fragment header would make the packet two things at once.
                IpProtocol::Ipv6Frag if fragment.is_some() => return Err(Error::Malformed),
                IpProtocol::Ipv6Frag => {
                    let frag = FragmentRepr::parse(&b[offset..end])?;
                    fragment = Some(frag);
                    FRAGMENT_HEADER_LEN
                }
                _ => {
                    return Ok(UpperLayer { protocol, offset, fragment });
                }
            };
            if offset + len > end {
                return Err(Error::Truncated);
            }
            protocol = IpProtocol::from(b[offset]);
            offset += len;
        }
        Err(Error::Unsupported)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        be::put_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, v);
    }

    /// Sets Payload Length.
    pub fn set_payload_len(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Swaps the source and destination addresses (a reply's header from a request's).
    pub fn swap_addrs(&mut self) {
        let (src, dst) = (self.src_addr(), self.dst_addr());
        self.set_src_addr(dst);
        self.set_dst_addr(src);
    }

    /// The payload, mutably (see [`Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len().min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The header after the fixed one.
    pub next_header: IpProtocol,
    /// Payload Length in bytes (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// The fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_header()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// The length of the fixed header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header into `packet`, whose buffer holds at least
    /// [`HEADER_LEN`] bytes. `payload_len` must fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PACKET: [u8; 76] = [
        // version 6, traffic class 0x12, flow label 0x34567
        0x61, 0x23, 0x45, 0x67,
        // payload length 36, next header: hop-by-hop, hop limit 64
        0x00, 0x24, 0x00, 0x40,
        // source 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // destination 2001:db8:ffff::10
        0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        // hop-by-hop: next routing, length 0 (8 bytes), PadN
        0x2b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // routing: next fragment, length 0, type 4 (SRH), segments left 0
        0x2c, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
        // fragment: next destination options, offset 0, M set, ident 0xdeadbeef
        0x3c, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
        // destination options: next UDP, length 0, PadN
        0x11, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // UDP header (4 bytes of it)
        0x30, 0x39, 0x1f, 0x40,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8:ffff::10".parse().unwrap(),
            next_header: IpProtocol::HopByHop,
            payload_len: 36,
            hop_limit: 64,
            traffic_class: 0x12,
            flow_label: 0x34567,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0x12, 0x34567));
        assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (36, IpProtocol::HopByHop, 64));
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8:ffff::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 36);
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::Udp);
        assert_eq!(upper.offset, 72);
        assert_eq!(
            upper.fragment,
            Some(FragmentRepr {
                next_header: IpProtocol::Ipv6Opts,
                offset: 0,
                more_frags: true,
                ident: 0xdead_beef
            })
        );
        assert!(upper.fragment.unwrap().is_fragment());
    }

    #[test]
    fn construct() {
        let mut bytes = PACKET;
        bytes[..40].fill(0);
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_version_tc_flow(0x12, 0x34567);
        p.set_payload_len(36);
        p.set_next_header(IpProtocol::HopByHop);
        p.set_hop_limit(64);
        p.set_src_addr("2001:db8::1".parse().unwrap());
        p.set_dst_addr("2001:db8:ffff::10".parse().unwrap());
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&PACKET[..]).unwrap()).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = PACKET;
        bytes[..40].fill(0);
        repr().emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET);
        let frag = FragmentRepr::parse(&PACKET[56..]).unwrap();
        let mut out = [0u8; 8];
        frag.emit(&mut out);
        assert_eq!(out, PACKET[56..64]);
    }

    #[test]
    fn bad_extension_chains() {
        assert_eq!(Packet::new_checked(&PACKET[..75]).unwrap_err(), Error::Truncated);
        // A payload length that ends inside the destination options header.
        let mut b = PACKET;
        b[5] = 26;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), Error::Truncated);
        // Hop-by-hop after the routing header.
        let mut b = PACKET;
        b[40] = 0x00;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), Error::Malformed);
        // A long chain of destination options headers.
        let mut b = vec![0x60, 0, 0, 0, 0, 80, 60, 64];
        b.extend_from_slice(&[0; 32]);
        for _ in 0..10 {
            b.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), Error::Unsupported);
        // Two fragment headers.
        let mut b = PACKET;
        b[56] = 0x2c;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), Error::Malformed);
        // Version 4 in an IPv6 view.
        let mut b = PACKET;
        b[0] = 0x41;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }
}
