//! The Internet checksum.
//!
//! - [`data`]: the one's-complement sum of RFC 1071, §4.1, over any bytes;
//! - [`combine`] and [`finish`]: adding partial sums and taking the complement;
//! - [`update`] and [`update_u32`]: the incremental update of RFC 1624, eqn. 3,
//!   `HC' = ~(~HC + ~m + m')`, which (unlike RFC 1141's form) never yields `0x0000`
//!   where the full computation yields `0xffff`;
//! - [`pseudo_header_v4`] and [`pseudo_header_v6`]: the pseudo-header sums of RFC 793 /
//!   RFC 768 and RFC 8200, §8.1, for TCP, UDP and ICMPv6.
//!
//! Sums are kept folded to 16 bits in host order of the big-endian words, so a sum of a
//! header can be stored in a `u16` field with `to_be_bytes`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::IpProtocol;

/// Folds a wide one's-complement accumulator to 16 bits.
#[inline]
fn fold(mut acc: u64) -> u16 {
    // 2^16 = 1 (mod 2^16 - 1): carries fold back into the low bits (RFC 1071, §2(C)).
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The one's-complement sum of `bytes` taken as big-endian 16-bit words, an odd last byte
/// padded with a zero (RFC 1071). Not complemented: see [`finish`].
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        // Two 32-bit big-endian words per step: the sum of 32-bit words folds to the same
        // 16-bit sum as the sum of 16-bit words, and a u64 cannot overflow before
        // 2^32 additions.
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// The one's-complement sum of partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum to put in a header: the complement of the sum.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1624, eqn. 3: the checksum `old_checksum` of a message after one 16-bit word of it
/// changed from `old` to `new`.
#[inline]
pub fn update(old_checksum: u16, old: u16, new: u16) -> u16 {
    !combine(&[!old_checksum, !old, new])
}

/// [`update`] for a 32-bit field (an IPv4 address) that changed from `old` to `new`.
#[inline]
pub fn update_u32(old_checksum: u16, old: u32, new: u32) -> u16 {
    !combine(&[!old_checksum, !(old >> 16) as u16, !(old as u16), (new >> 16) as u16, new as u16])
}

/// The sum of the IPv4 pseudo-header (RFC 793, §3.1; RFC 768) for an upper-layer packet
/// of `length` bytes.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    fold(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(u8::from(protocol))
            + u64::from(length),
    )
}

/// The sum of the IPv6 pseudo-header (RFC 8200, §8.1) for an upper-layer packet of
/// `length` bytes.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: IpProtocol, length: u32) -> u16 {
    let mut acc = u64::from(data(&src.octets())) + u64::from(data(&dst.octets()));
    acc += u64::from(length >> 16) + u64::from(length & 0xffff);
    acc += u64::from(u8::from(protocol));
    fold(acc)
}

/// The pseudo-header sum for either family. An IPv4 address paired with an IPv6 one is
/// taken as IPv4-mapped (RFC 4291, §2.5.5.2) in an IPv6 pseudo-header.
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: IpProtocol, length: u32) -> u16 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, protocol, length as u16),
        (s, d) => pseudo_header_v6(to_v6(s), to_v6(d), protocol, length),
    }
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition, word by word, as an oracle.
    fn naive(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            sum += word;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071, §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        assert_eq!(data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn ipv4_header_from_wikipedia() {
        #[rustfmt::skip]
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
            0x00, 0x00, // checksum zeroed
            0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(data(&header)), 0xb861);
    }

    #[test]
    fn matches_naive_on_every_length() {
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            assert_eq!(data(&bytes[..len]), naive(&bytes[..len]), "len {len}");
        }
        assert_eq!(data(&[0xff; 4096]), 0xffff);
    }

    #[test]
    fn incremental_matches_full() {
        let mut bytes: Vec<u8> = (0..40u32).map(|i| (i * 91 + 5) as u8).collect();
        bytes[10] = 0;
        bytes[11] = 0;
        let ck = finish(data(&bytes));
        // Change the word at 8 (a TTL/protocol pair) and the address at 12.
        let old_word = u16::from_be_bytes([bytes[8], bytes[9]]);
        bytes[8] = bytes[8].wrapping_sub(1);
        let new_word = u16::from_be_bytes([bytes[8], bytes[9]]);
        let ck = update(ck, old_word, new_word);
        assert_eq!(ck, finish(data(&bytes)));
        let old_addr = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        bytes[12..16].copy_from_slice(&[203, 0, 113, 10]);
        let ck = update_u32(ck, old_addr, 0xcb00_710a);
        assert_eq!(ck, finish(data(&bytes)));
    }

    #[test]
    fn pseudo_headers_match_their_bytes() {
        let (s, d) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(203, 0, 113, 10));
        let bytes = [192, 0, 2, 1, 203, 0, 113, 10, 0, 17, 0x01, 0x2c];
        assert_eq!(pseudo_header_v4(s, d, IpProtocol::Udp, 300), data(&bytes));

        let (s6, d6): (Ipv6Addr, Ipv6Addr) =
            ("2001:db8::1".parse().unwrap(), "2001:db8:ffff::10".parse().unwrap());
        let mut bytes6 = Vec::new();
        bytes6.extend_from_slice(&s6.octets());
        bytes6.extend_from_slice(&d6.octets());
        bytes6.extend_from_slice(&70_000u32.to_be_bytes());
        bytes6.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(pseudo_header_v6(s6, d6, IpProtocol::Tcp, 70_000), data(&bytes6));
    }
}
