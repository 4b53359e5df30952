//! IEEE 802.1Q VLAN tags, and the L2 header of a frame with at most one of them.
//!
//! The tag sits where an untagged frame has its EtherType (which then reads 0x8100):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  PCP  |D|        VLAN ID        |     Encapsulated EtherType    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! (PCP is 3 bits, D is the drop-eligible indicator.)
//!
//! vipgate handles one tag. Stacked tags (802.1ad QinQ, or 802.1Q in 802.1Q) parse as
//! [`Error::Unsupported`] in [`parse_l2`]. After [`Packet::new_checked`] no accessor
//! panics.

use super::{be, ethernet, Error, EtherType, Field, Rest, Result};

mod field {
    use super::{Field, Rest};
    pub(super) const TCI: Field = 0..2;
    pub(super) const ETHERTYPE: Field = 2..4;
    pub(super) const PAYLOAD: Rest = 4..;
}

/// The length of a VLAN tag.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of a VLAN tag and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a buffer that holds the whole tag.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the whole tag.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    fn tci(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::TCI.start)
    }

    /// Priority code point (802.1p), 0..=7.
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop-eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier, 0..=4095.
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType of the payload.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be::u16_at(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    /// The bytes after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the priority, drop-eligible bit and VLAN identifier (values are masked to their
    /// widths).
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff);
        be::put_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    /// Sets the EtherType of the payload.
    pub fn set_ethertype(&mut self, value: EtherType) {
        be::put_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value.into());
    }

    /// The bytes after the tag, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop-eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 0..=4095.
    pub vid: u16,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl Repr {
    /// The tag of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr { pcp: packet.pcp(), dei: packet.dei(), vid: packet.vid(), ethertype: packet.ethertype() })
    }

    /// The length of the tag.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag into `packet`, whose buffer holds at least [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(self.pcp, self.dei, self.vid);
        packet.set_ethertype(self.ethertype);
    }
}

/// The layer-2 header of a frame: Ethernet II and at most one VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// The Ethernet header; its `ethertype` is [`EtherType::Vlan`] when tagged.
    pub ethernet: ethernet::Repr,
    /// The VLAN tag, if any.
    pub vlan: Option<Repr>,
    /// The EtherType of the layer-3 payload.
    pub ethertype: EtherType,
    /// Where the layer-3 payload starts in the frame.
    pub payload_offset: usize,
}

/// Parses the Ethernet header and at most one 802.1Q tag of `frame`.
///
/// An 802.1ad outer tag, or a second 802.1Q tag, is [`Error::Unsupported`].
pub fn parse_l2(frame: &[u8]) -> Result<L2> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let ethernet = ethernet::Repr::parse(&eth)?;
    match ethernet.ethertype {
        EtherType::QinQ => Err(Error::Unsupported),
        EtherType::Vlan => {
            let tag = Packet::new_checked(eth.payload())?;
            let vlan = Repr::parse(&tag)?;
            if matches!(vlan.ethertype, EtherType::Vlan | EtherType::QinQ) {
                return Err(Error::Unsupported);
            }
            Ok(L2 {
                ethernet,
                vlan: Some(vlan),
                ethertype: vlan.ethertype,
                payload_offset: ethernet::HEADER_LEN + HEADER_LEN,
            })
        }
        ethertype => Ok(L2 { ethernet, vlan: None, ethertype, payload_offset: ethernet::HEADER_LEN }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EthernetAddress;

    #[rustfmt::skip]
    static TAG: [u8; 6] = [
        // PCP 5, DEI 1, VID 0x123
        0xb1, 0x23,
        // ethertype: IPv6
        0x86, 0xdd,
        // payload
        0x60, 0x00,
    ];

    fn repr() -> Repr {
        Repr { pcp: 5, dei: true, vid: 0x123, ethertype: EtherType::Ipv6 }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&TAG[..]).unwrap();
        assert_eq!((p.pcp(), p.dei(), p.vid()), (5, true, 0x123));
        assert_eq!(p.ethertype(), EtherType::Ipv6);
        assert_eq!(p.payload(), &[0x60, 0x00]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 6];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_tci(5, true, 0x123);
        p.set_ethertype(EtherType::Ipv6);
        p.payload_mut().copy_from_slice(&[0x60, 0x00]);
        assert_eq!(bytes, TAG);
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&Packet::new_checked(&TAG[..]).unwrap()).unwrap(), repr());
        assert_eq!(Packet::new_checked(&TAG[..3]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn emit() {
        let mut bytes = TAG;
        bytes[..4].fill(0);
        repr().emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, TAG);
    }

    fn frame(ethertypes: &[u16]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe]);
        for (i, t) in ethertypes.iter().enumerate() {
            if i > 0 {
                f.extend_from_slice(&[0x00, 0x0a]);
            }
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&[0x45, 0]);
        f
    }

    #[test]
    fn l2_untagged_tagged_and_qinq() {
        let l2 = parse_l2(&frame(&[0x0800])).unwrap();
        assert_eq!((l2.vlan, l2.ethertype, l2.payload_offset), (None, EtherType::Ipv4, 14));
        assert_eq!(l2.ethernet.dst_addr, EthernetAddress([2, 0, 0, 0, 0, 1]));

        let l2 = parse_l2(&frame(&[0x8100, 0x0800])).unwrap();
        assert_eq!(l2.vlan.map(|v| v.vid), Some(10));
        assert_eq!((l2.ethertype, l2.payload_offset), (EtherType::Ipv4, 18));

        assert_eq!(parse_l2(&frame(&[0x88a8, 0x8100, 0x0800])), Err(Error::Unsupported));
        assert_eq!(parse_l2(&frame(&[0x8100, 0x8100, 0x0800])), Err(Error::Unsupported));
        assert_eq!(parse_l2(&frame(&[0x8100])[..15]), Err(Error::Truncated));
    }
}
