//! The thin FFI from vipgate to AF_XDP sockets and XDP programs.
//!
//! [`bindgen`](https://docs.rs/bindgen) reads libxdp's `xdp/xsk.h` (the AF_XDP sockets,
//! their UMEM and rings) and libbpf's headers (loading and attaching the XDP program, its
//! maps) with an allowlist of what vipgate uses. The rings' per-packet functions are
//! `static inline` in `xsk.h`; a small C shim (`src/shim.c`, functions named `vg_*`) wraps
//! them, a burst a call. [`FILTER_OBJECT`] is vipgate's XDP program, built from
//! `bpf/filter.bpf.c` by clang when this crate is. Everything here is `unsafe` and as
//! libxdp and libbpf document it; the safe driver is `vipgate_engine::port::afxdp`.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, missing_docs)]
#![allow(clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// vipgate's XDP filter, an ELF object for libbpf: the program `vipgate_filter` and its
/// maps `vg_xsks` (queue → socket), `vg_vips4` and `vg_vips6` (the prefixes whose traffic
/// the sockets take) and `vg_counts` (taken, passed; per CPU).
pub static FILTER_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/filter.bpf.o"));
