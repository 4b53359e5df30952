//! Zero-copy views of the headers vipgate reads and writes, and their `Repr`s.
//!
//! Every header has two faces:
//! - a view, `Packet<T: AsRef<[u8]>>` (or `Frame`), over a borrowed buffer, with a private
//!   `field` module of byte ranges. [`new_checked`](ipv4::Packet::new_checked) validates
//!   lengths once; **after a successful `new_checked` no accessor can panic**, whatever the
//!   bytes contain. `new_unchecked` skips the check and is for buffers the caller has
//!   sized itself (emitting).
//! - a `Repr`, a plain struct with the header's meaning, with `parse` (from a checked
//!   view), `emit` (into a view) and `buffer_len`.
//!
//! Parsing never fails on a value it does not know: protocol numbers and types are enums
//! with an `Unknown` variant, so a new ethertype simply does not match a VIP. Parsing
//! fails only on lengths that do not fit ([`Error::Truncated`]), on fields that
//! contradict the format ([`Error::Malformed`]), or on a format we choose not to handle
//! ([`Error::Unsupported`], e.g. stacked VLAN tags).
//!
//! Nothing in this module allocates. [`frame`] writes whole frames from `Repr`s.

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod gre;
pub mod gue;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use ethernet::{EtherType, EthernetAddress};
pub use ip::IpProtocol;

/// Why a header could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// A field contradicts the format (a bad version, a header length below the minimum,
    /// a length field smaller than the header it covers).
    Malformed,
    /// A well-formed header of a kind vipgate does not handle (stacked VLAN tags, GUE
    /// variant 1, ARP for other than Ethernet/IPv4).
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated header",
            Error::Malformed => "malformed header",
            Error::Unsupported => "unsupported header",
        })
    }
}

impl std::error::Error for Error {}

/// The result of parsing a header.
pub type Result<T> = core::result::Result<T, Error>;

/// Declares an enum over a wire integer whose unknown values stay values.
macro_rules! enum_with_unknown {
    (
        $( #[$enum_attr:meta] )*
        pub enum $name:ident($ty:ty) {
            $(
              $( #[$variant_attr:meta] )*
              $variant:ident = $value:expr
            ),+ $(,)?
        }
    ) => {
        $( #[$enum_attr] )*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $(
              $( #[$variant_attr] )*
              $variant
            ),*,
            /// A value without a name here.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant ),*,
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value ),*,
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;

/// Big-endian field access on byte slices whose length the caller has checked.
pub(crate) mod be {
    #[inline]
    pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    #[inline]
    pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    #[inline]
    pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// A byte range of a header.
pub(crate) type Field = core::ops::Range<usize>;
/// The bytes from an offset to the end of a header.
pub(crate) type Rest = core::ops::RangeFrom<usize>;
