//! Finds libxdp and libbpf with pkg-config, compiles the C shim, generates the bindings,
//! and builds the XDP filter (`bpf/filter.bpf.c`) with clang for the BPF target.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const NEEDS: &str = "Debian: apt-get install libxdp-dev libbpf-dev pkg-config clang";

fn main() {
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=bpf/filter.bpf.c");
    let mut include_paths = Vec::new();
    for lib in ["libxdp", "libbpf"] {
        match pkg_config::Config::new().probe(lib) {
            Ok(found) => include_paths.extend(found.include_paths),
            Err(e) => panic!("vipgate's afxdp feature needs {lib} found by pkg-config ({NEEDS}): {e}"),
        }
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src").warnings(true).opt_level(2);
    for path in &include_paths {
        shim.include(path);
    }
    shim.compile("vipgate_afxdp_shim");

    let mut builder = bindgen::Builder::default()
        .header("src/wrapper.h")
        .allowlist_function("xsk_(umem__create|umem__delete|umem__fd|socket__create|socket__delete|socket__fd|socket__update_xskmap)")
        .allowlist_function("bpf_object__(open_mem|load|close|find_program_by_name|find_map_by_name)")
        .allowlist_function("bpf_(program__fd|map__fd|map_update_elem|map_delete_elem|map_get_next_key|map_lookup_elem)")
        .allowlist_function("bpf_(link_create|xdp_query_id|xdp_detach|prog_get_fd_by_id|obj_get_info_by_fd)")
        .allowlist_function("libbpf_(get_error|set_print|strerror)")
        .allowlist_function("if_nametoindex")
        .allowlist_function("vg_.*")
        .allowlist_type("xsk_(ring_prod|ring_cons|umem_config|socket_config)")
        .allowlist_type("xdp_(desc|statistics|mmap_offsets)")
        .allowlist_type("bpf_(prog_info|link_create_opts)")
        .allowlist_var("XDP_(FLAGS_.*|ZEROCOPY|COPY|USE_NEED_WAKEUP|STATISTICS|PACKET_HEADROOM)")
        .allowlist_var("XSK_(RING_.*|UMEM__.*|LIBXDP_FLAGS__INHIBIT_PROG_LOAD|LIBBPF_FLAGS__INHIBIT_PROG_LOAD)")
        .allowlist_var("SOL_XDP|BPF_XDP|BPF_ANY")
        .allowlist_type("bpf_attach_type")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in &include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let bindings =
        builder.generate().unwrap_or_else(|e| panic!("bindgen over libxdp's headers ({NEEDS}): {e}"));
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs");

    // The XDP filter, for the BPF target. Its kernel headers (asm/types.h) are the
    // host's, in the multiarch directory of Debian.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let object = out.join("filter.bpf.o");
    let status = Command::new(env::var("CLANG").unwrap_or_else(|_| "clang".into()))
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c", "bpf/filter.bpf.c", "-o"])
        .arg(&object)
        .arg(format!("-I{multiarch}"))
        .status()
        .unwrap_or_else(|e| panic!("clang for the XDP filter ({NEEDS}): {e}"));
    assert!(status.success(), "clang could not build bpf/filter.bpf.c");
}
