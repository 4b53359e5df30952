//! Finds DPDK with pkg-config, compiles the C shim and generates the bindings.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    let dpdk = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => panic!(
            "vipgate's dpdk feature needs DPDK 22.11 or later found by pkg-config (Debian: \
             apt-get install libdpdk-dev pkg-config clang): {e}"
        ),
    };
    // pkg-config's cflags carry `-include rte_config.h` and `-march=...`: the shim and
    // bindgen must see the headers exactly as DPDK was built.
    let extra: Vec<String> = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src").warnings(true).opt_level(2);
    for path in &dpdk.include_paths {
        shim.include(path);
    }
    // In order: `-include rte_config.h` is two words.
    for flag in extra.iter().filter(|f| !f.starts_with("-I")) {
        shim.flag(flag);
    }
    shim.compile("vipgate_dpdk_shim");

    let mut builder = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_args(extra.iter())
        .allowlist_function("rte_eal_(init|cleanup|process_type)")
        .allowlist_function("rte_eth_(dev_count_avail|dev_info_get|dev_configure|rx_queue_setup|tx_queue_setup|dev_start|dev_stop|dev_close|dev_socket_id|link_get_nowait|promiscuous_enable|xstats_get|xstats_get_names|stats_get|macaddr_get|find_next_owned_by|dev_get_name_by_port|dev_adjust_nb_rx_tx_desc)")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count)")
        .allowlist_function("rte_ring_(create|free|lookup)")
        .allowlist_function("rte_(strerror|socket_id|thread_register|thread_unregister|lcore_id)")
        .allowlist_function("vg_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_(conf|dev_info|link|xstat|xstat_name|stats|rxconf|txconf)")
        .allowlist_var("RTE_ETH_(RSS|MQ|LINK)_.*")
        .allowlist_var("RTE_PKTMBUF_HEADROOM|RTE_MBUF_DEFAULT_BUF_SIZE|RTE_MAX_ETHPORTS|RTE_ETH_XSTATS_NAME_SIZE|SOCKET_ID_ANY|RTE_MAX_NUMA_NODES")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in &dpdk.include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let bindings =
        builder.generate().expect("bindgen over the DPDK headers (needs libclang: apt-get install clang)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs");
}
