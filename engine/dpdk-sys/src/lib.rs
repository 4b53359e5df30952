//! The thin FFI from vipgate to the system's DPDK.
//!
//! [`bindgen`](https://docs.rs/bindgen) reads DPDK's headers (found with pkg-config) with an
//! allowlist of what vipgate uses: EAL, ethdev, mbuf, mempool, ring. DPDK's per-packet
//! functions are `static inline` in its headers and have no symbols; a small C shim
//! (`src/shim.c`, functions named `vg_*`) wraps them. Everything here is `unsafe` and
//! as DPDK documents it; the safe driver is `vipgate_engine::port::dpdk`.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, missing_docs)]
#![allow(clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// Fields of `struct rte_mbuf` whose C offsets [`vg_mbuf_offset`] reports.
pub mod mbuf_field {
    /// `buf_addr`
    pub const BUF_ADDR: i32 = 0;
    /// `data_off`
    pub const DATA_OFF: i32 = 1;
    /// `nb_segs`
    pub const NB_SEGS: i32 = 2;
    /// `pkt_len`
    pub const PKT_LEN: i32 = 3;
    /// `data_len`
    pub const DATA_LEN: i32 = 4;
    /// `buf_len`
    pub const BUF_LEN: i32 = 5;
    /// `sizeof(struct rte_mbuf)`
    pub const SIZE: i32 = 6;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn rust_sees_the_mbuf_as_c_lays_it_out() {
        // SAFETY: a pure function of its argument.
        let c = |f| unsafe { vg_mbuf_offset(f) };
        assert_eq!(c(mbuf_field::BUF_ADDR), offset_of!(rte_mbuf, buf_addr));
        assert_eq!(c(mbuf_field::DATA_OFF), offset_of!(rte_mbuf, data_off));
        assert_eq!(c(mbuf_field::NB_SEGS), offset_of!(rte_mbuf, nb_segs));
        assert_eq!(c(mbuf_field::PKT_LEN), offset_of!(rte_mbuf, pkt_len));
        assert_eq!(c(mbuf_field::DATA_LEN), offset_of!(rte_mbuf, data_len));
        assert_eq!(c(mbuf_field::BUF_LEN), offset_of!(rte_mbuf, buf_len));
        assert_eq!(c(mbuf_field::SIZE), size_of::<rte_mbuf>());
    }

    #[test]
    fn the_linked_library_is_22_11_or_later() {
        // SAFETY: rte_version returns a static string.
        let v = unsafe { core::ffi::CStr::from_ptr(vg_version()) }.to_string_lossy().into_owned();
        let numbers: Vec<u32> = v
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(2)
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(numbers >= vec![22, 11], "{v}");
    }
}
