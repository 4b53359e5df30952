//! The DPDK driver: a NIC (or a DPDK virtual device) polled from user space.
//!
//! [`open`] starts DPDK's EAL with the port's `args`, takes the first Ethernet device it
//! finds, makes one mbuf pool on the device's NUMA socket and one RX and one TX queue per
//! worker with RSS on the 5-tuple, so that the NIC sends a flow to one worker always.
//! A device without RSS (or with fewer queues than workers) runs one RX queue spread over
//! the workers in software by the same flow hash as the memory driver ([`rss_hash`]):
//! whichever worker finds its share empty polls the device and hands every packet to the
//! worker of its flow. The startup log says which of the two a port runs.
//!
//! mbufs are used in place: a received mbuf becomes a [`PacketBuf`] over its data room
//! (DPDK's 128 bytes of headroom are the buffer's headroom), the pipeline prepends its
//! tunnel headers there, and the same mbuf goes to TX. What TX refuses stays with the
//! worker, is counted `tx_full` and freed in bulk at the next receive. A packet the
//! pipeline made itself (an outer fragment) is copied into a fresh mbuf.
//!
//! Worker threads are registered with EAL on their first receive, so that mbuf pools
//! keep a per-thread cache for them.

use core::ffi::{c_char, c_void, CStr};
use core::ptr::NonNull;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use vipgate_dpdk_sys as sys;

use super::Port;
use crate::buf::{PacketBuf, HEADROOM};
use crate::port::MAX_BURST;
use crate::rss::rss_hash;

/// Descriptors per RX and per TX ring asked of the device (it may round them).
pub const RING_DESCRIPTORS: u16 = 1024;
/// mbufs each thread keeps cached from the pool.
const POOL_CACHE: u32 = 256;
/// Packets each worker's software-RSS share holds.
const SHARE_DEPTH: usize = 1024;

/// How to open a DPDK port.
#[derive(Debug, Clone)]
pub struct DpdkOptions {
    /// The port's name (for logs and the pool's name).
    pub name: String,
    /// EAL's arguments, e.g. `["--no-huge", "-m", "512", "--no-pci", "--vdev", "net_null0"]`
    /// or `["-a", "0000:3b:00.0"]`.
    pub args: Vec<String>,
    /// Workers, hence queues wanted.
    pub workers: usize,
    /// One RX queue spread in software even where the device has RSS.
    pub single_queue: bool,
    /// mbufs in the pool; `None` sizes it from the queues ([`DpdkOptions::mbufs_needed`]).
    pub mbufs: Option<u32>,
}

impl DpdkOptions {
    /// The mbufs a port of `queues` queues needs: full RX and TX rings, a burst in flight
    /// on each side, each thread's cache and, spread in software, each worker's share.
    pub fn mbufs_needed(queues: usize, software_rss: bool) -> u32 {
        let per_queue = 2 * u32::from(RING_DESCRIPTORS)
            + 2 * MAX_BURST as u32
            + POOL_CACHE
            + if software_rss { SHARE_DEPTH as u32 } else { 0 };
        // A pool is best one less than a power of two (DPDK's ring sizes).
        let n = (per_queue * queues.max(1) as u32 + 1024).next_power_of_two();
        n - 1
    }
}

/// Why a DPDK port did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkError {
    /// DPDK needs root here (hugepages, device memory, its runtime directory).
    NotRoot,
    /// No free hugepages, and `--no-huge` not asked for.
    NoHugepages,
    /// EAL did not start.
    Eal(String),
    /// EAL started but found no Ethernet device.
    NoDevice(String),
    /// The pool could not be made, or the device's queues could not take their mbufs.
    TooFewMbufs(String),
    /// The device refused its configuration.
    Device(String),
}

const HUGEPAGES_HELP: &str = "see hugepages.md; scripts/setup-hugepages.sh reserves and mounts them";

impl core::fmt::Display for DpdkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DpdkError::NotRoot => f.write_str(
                "the dpdk driver needs root (hugepages, device memory, /var/run/dpdk): run vipgate as root",
            ),
            DpdkError::NoHugepages => write!(
                f,
                "no free hugepages: reserve some ({HUGEPAGES_HELP}), or add \"--no-huge\" to the port's args for a test"
            ),
            DpdkError::Eal(e) => write!(f, "DPDK's EAL did not start: {e}"),
            DpdkError::NoDevice(args) => write!(
                f,
                "device not found: DPDK found no Ethernet device with args {args}; name one with \
                 \"-a PCI_ADDRESS\" (bound with scripts/bind-nic.sh) or \"--vdev\""
            ),
            DpdkError::TooFewMbufs(e) => write!(f, "too few mbufs: {e} ({HUGEPAGES_HELP}; with --no-huge, raise -m)"),
            DpdkError::Device(e) => write!(f, "the device refused its setup: {e}"),
        }
    }
}

impl std::error::Error for DpdkError {}

fn rte_error(code: i32) -> String {
    let code = code.abs();
    // SAFETY: rte_strerror returns a static or thread-local string.
    let text = unsafe { CStr::from_ptr(sys::rte_strerror(code)) }.to_string_lossy().into_owned();
    format!("{text} (errno {code})")
}

fn last_error() -> String {
    // SAFETY: reads DPDK's thread-local errno.
    rte_error(unsafe { sys::vg_errno() })
}

/// Free hugepages of every size, from sysfs.
pub fn free_hugepages() -> u64 {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else { return 0 };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("free_hugepages")).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum()
}

/// EAL starts once per process: how that went.
static EAL: Mutex<Option<Result<(), DpdkError>>> = Mutex::new(None);

fn start_eal(args: &[String]) -> Result<(), DpdkError> {
    let mut started = EAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = started.as_ref() {
        return r.clone();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DpdkError::NotRoot);
    }
    if !args.iter().any(|a| a == "--no-huge") && free_hugepages() == 0 {
        return Err(DpdkError::NoHugepages);
    }
    let argv: Vec<CString> = std::iter::once("vipgate")
        .chain(args.iter().map(String::as_str))
        .map(|a| CString::new(a).map_err(|_| DpdkError::Eal(format!("argument {a:?} holds a NUL byte"))))
        .collect::<Result<_, _>>()?;
    // EAL may keep pointers into argv: it lives as long as the process.
    let argv: &'static mut [*mut c_char] =
        Vec::leak(argv.into_iter().map(|a| a.into_raw()).collect::<Vec<_>>());
    // EAL pins the thread that starts it to its main lcore; the control thread is not a
    // worker, so it gets its own affinity back.
    let affinity = thread_affinity();
    // SAFETY: argv holds argc valid C strings that outlive the call.
    let ret = unsafe { sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    if let Some(set) = affinity {
        // SAFETY: a cpu set read from this thread a moment ago.
        unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) };
    }
    let result = if ret < 0 { Err(DpdkError::Eal(last_error())) } else { Ok(()) };
    *started = Some(result.clone());
    result
}

fn thread_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        (libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

/// The device as the control thread sees it: its link, its counters, how it runs.
#[derive(Debug)]
pub struct DpdkDevice {
    port: u16,
    /// The device's name (a PCI address or a vdev name).
    pub name: String,
    /// Its driver.
    pub driver: String,
    /// Queues in use (RX; TX is one per worker, or shared).
    pub queues: usize,
    /// Whether flows are spread over the workers in software.
    pub software_rss: bool,
    /// Packets the software spread could not hand to a full share (freed).
    pub share_full: Arc<AtomicU64>,
    /// Frames received in more than one mbuf (longer than a buffer's 2 048 bytes): freed,
    /// never forwarded in part.
    pub chained: Arc<AtomicU64>,
    pool: Pool,
    stopped: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Pool(NonNull<sys::rte_mempool>);
// SAFETY: DPDK mempools are safe to use from several threads (lock-free rings).
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

/// A link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Up or down.
    pub up: bool,
    /// Speed in Mb/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

impl DpdkDevice {
    /// The link as the device reports it now (without waiting).
    pub fn link(&self) -> Link {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: a valid port and a link struct to fill.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.port, &mut link) };
        if ret != 0 {
            return Link { up: false, speed_mbps: 0, full_duplex: false };
        }
        Link {
            up: u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP,
            speed_mbps: if link.link_speed == u32::MAX { 0 } else { link.link_speed },
            full_duplex: link.link_duplex() != 0,
        }
    }

    /// The device's extended statistics, by name (its own counters: packets, bytes,
    /// misses, errors ...).
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a null array asks for the count.
        let n = unsafe { sys::rte_eth_xstats_get_names(self.port, core::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let mut names = vec![sys::rte_eth_xstat_name::default(); n as usize];
        let mut values = vec![sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: arrays of n entries.
        let (got_names, got_values) = unsafe {
            (
                sys::rte_eth_xstats_get_names(self.port, names.as_mut_ptr(), n as u32),
                sys::rte_eth_xstats_get(self.port, values.as_mut_ptr(), n as u32),
            )
        };
        if got_names != n || got_values != n {
            return Vec::new();
        }
        values
            .iter()
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: DPDK writes NUL-terminated names into the fixed arrays.
                let name = unsafe { CStr::from_ptr(name.name.as_ptr()) }.to_string_lossy().into_owned();
                Some((name, v.value))
            })
            .collect()
    }

    /// mbufs free in the pool now.
    pub fn mbufs_free(&self) -> u32 {
        // SAFETY: a live pool.
        unsafe { sys::vg_mempool_avail(self.pool.0.as_ptr()) }
    }

    /// Stops and closes the device (a capture device writes out what it holds). Call it
    /// once the workers have stopped; a second call does nothing.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: the workers no longer poll the port.
        unsafe {
            sys::rte_eth_dev_stop(self.port);
            sys::rte_eth_dev_close(self.port);
        }
    }
}

/// Opens the first device EAL finds with one queue per worker.
pub fn open(options: &DpdkOptions) -> Result<(DpdkDevice, Vec<DpdkQueue>), DpdkError> {
    start_eal(&options.args)?;
    // SAFETY: EAL is up.
    let count = unsafe { sys::rte_eth_dev_count_avail() };
    if count == 0 {
        return Err(DpdkError::NoDevice(format!("{:?}", options.args)));
    }
    let port = first_port().ok_or_else(|| DpdkError::NoDevice(format!("{:?}", options.args)))?;
    if count > 1 {
        log::warn!("port \"{}\": DPDK found {count} devices; vipgate uses the first", options.name);
    }
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: a valid port id and a struct to fill.
    let ret = unsafe { sys::rte_eth_dev_info_get(port, &mut info) };
    if ret != 0 {
        return Err(DpdkError::Device(format!("device info: {}", rte_error(ret))));
    }
    let name = port_name(port);
    let driver = if info.driver_name.is_null() {
        String::from("?")
    } else {
        // SAFETY: a static string of the driver's.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    };
    let workers = options.workers.max(1);
    // SAFETY: no precondition.
    let wanted_hf = unsafe { sys::vg_rss_hf() };
    let rss_hf = wanted_hf & info.flow_type_rss_offloads;
    let hardware_rss = workers == 1
        || (!options.single_queue
            && usize::from(info.max_rx_queues) >= workers
            && usize::from(info.max_tx_queues) >= workers
            && rss_hf != 0);
    let rx_queues = if hardware_rss { workers } else { 1 };
    let tx_queues = workers.min(usize::from(info.max_tx_queues).max(1));
    if hardware_rss && workers > 1 {
        log::info!("port \"{}\" ({name}, {driver}): {workers} queues, RSS on IP/TCP/UDP", options.name);
    } else if !hardware_rss {
        log::info!(
            "port \"{}\" ({name}, {driver}): the device has no RSS for {workers} queues (max {} RX, {} TX, \
             RSS types {:#x}): one RX queue, flows spread over the {workers} workers in software{}",
            options.name,
            info.max_rx_queues,
            info.max_tx_queues,
            info.flow_type_rss_offloads,
            if tx_queues < workers { format!(", {tx_queues} TX queue(s) shared") } else { String::new() }
        );
    }

    // SAFETY: a valid port id.
    let socket = unsafe { sys::rte_eth_dev_socket_id(port) };
    let socket = if socket < 0 { sys::SOCKET_ID_ANY } else { socket };
    let mbufs = options.mbufs.unwrap_or_else(|| DpdkOptions::mbufs_needed(workers, !hardware_rss));
    let pool = make_pool(&options.name, port, mbufs, socket)?;

    let mut conf = sys::rte_eth_conf::default();
    if hardware_rss && workers > 1 {
        conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    }
    // SAFETY: a valid port and configuration.
    let ret = unsafe { sys::rte_eth_dev_configure(port, rx_queues as u16, tx_queues as u16, &conf) };
    if ret != 0 {
        return Err(DpdkError::Device(format!(
            "configure {rx_queues} RX / {tx_queues} TX queues: {}",
            rte_error(ret)
        )));
    }
    let (mut rx_desc, mut tx_desc) = (RING_DESCRIPTORS, RING_DESCRIPTORS);
    // SAFETY: a configured port.
    unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_desc, &mut tx_desc) };
    for q in 0..rx_queues as u16 {
        // SAFETY: a configured port, a live pool.
        let ret = unsafe {
            sys::rte_eth_rx_queue_setup(port, q, rx_desc, socket as u32, core::ptr::null(), pool.0.as_ptr())
        };
        if ret == -libc::ENOMEM {
            return Err(DpdkError::TooFewMbufs(format!(
                "RX queue {q} could not fill its {rx_desc} descriptors"
            )));
        } else if ret != 0 {
            return Err(DpdkError::Device(format!("RX queue {q}: {}", rte_error(ret))));
        }
    }
    for q in 0..tx_queues as u16 {
        // SAFETY: a configured port.
        let ret = unsafe { sys::rte_eth_tx_queue_setup(port, q, tx_desc, socket as u32, core::ptr::null()) };
        if ret != 0 {
            return Err(DpdkError::Device(format!("TX queue {q}: {}", rte_error(ret))));
        }
    }
    // SAFETY: a configured port. Promiscuous: the port answers for the config's MAC, which
    // need not be the device's own; the pipeline drops frames to other MACs, counted.
    unsafe {
        let ret = sys::rte_eth_dev_start(port);
        if ret != 0 {
            return Err(DpdkError::Device(format!("start: {}", rte_error(ret))));
        }
        if sys::rte_eth_promiscuous_enable(port) != 0 {
            log::warn!(
                "port \"{}\": promiscuous mode refused; only frames to the device's own MAC arrive",
                options.name
            );
        }
    }
    let share_full = Arc::new(AtomicU64::new(0));
    let chained = Arc::new(AtomicU64::new(0));
    let spread = (!hardware_rss).then(|| {
        Arc::new(Spread {
            shares: (0..workers).map(|_| ArrayQueue::new(SHARE_DEPTH)).collect(),
            polling: AtomicBool::new(false),
            full: Arc::clone(&share_full),
        })
    });
    let tx_shared = (tx_queues < workers).then(|| Arc::new(AtomicBool::new(false)));
    let queues = (0..workers)
        .map(|w| DpdkQueue {
            port,
            rx_queue: if hardware_rss { w as u16 } else { 0 },
            tx_queue: (w % tx_queues) as u16,
            worker: w,
            pool,
            spread: spread.clone(),
            tx_lock: tx_shared.clone(),
            chained: Arc::clone(&chained),
            registered: false,
            mbufs: [core::ptr::null_mut(); MAX_BURST],
            out: [core::ptr::null_mut(); MAX_BURST],
            copied: [false; MAX_BURST],
            to_free: [core::ptr::null_mut(); 2 * MAX_BURST],
            pending_free: 0,
        })
        .collect();
    let device = DpdkDevice {
        port,
        name,
        driver,
        queues: rx_queues,
        software_rss: !hardware_rss,
        share_full,
        chained: Arc::clone(&chained),
        pool,
        stopped: AtomicBool::new(false),
    };
    log::info!(
        "port \"{}\": {} on {} ({}), socket {socket}, {mbufs} mbufs, {} free hugepages",
        options.name,
        // SAFETY: a static string.
        unsafe { CStr::from_ptr(sys::vg_version()) }.to_string_lossy(),
        device.name,
        device.driver,
        free_hugepages()
    );
    Ok((device, queues))
}

fn first_port() -> Option<u16> {
    // SAFETY: EAL is up; owner 0 means "not owned".
    let p = unsafe { sys::rte_eth_find_next_owned_by(0, 0) };
    u16::try_from(p).ok().filter(|&p| u32::from(p) < sys::RTE_MAX_ETHPORTS)
}

fn port_name(port: u16) -> String {
    let mut name = [0 as c_char; 64];
    // SAFETY: a buffer of RTE_ETH_NAME_MAX_LEN (64) bytes.
    if unsafe { sys::rte_eth_dev_get_name_by_port(port, name.as_mut_ptr()) } != 0 {
        return format!("port {port}");
    }
    // SAFETY: NUL-terminated by DPDK.
    unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned()
}

fn make_pool(name: &str, port: u16, mbufs: u32, socket: i32) -> Result<Pool, DpdkError> {
    let pool_name = CString::new(format!("vg{port}_{}", name.chars().take(16).collect::<String>()))
        .map_err(|_| DpdkError::Device("port name holds a NUL byte".into()))?;
    let data_room = (HEADROOM + crate::buf::DEFAULT_CAPACITY) as u16;
    // SAFETY: a valid name; EAL is up.
    let pool =
        unsafe { sys::rte_pktmbuf_pool_create(pool_name.as_ptr(), mbufs, POOL_CACHE, 0, data_room, socket) };
    NonNull::new(pool).map(Pool).ok_or_else(|| {
        DpdkError::TooFewMbufs(format!(
            "a pool of {mbufs} mbufs of {data_room} bytes ({} MiB) on socket {socket}: {}",
            (u64::from(mbufs) * (u64::from(data_room) + 192)) >> 20,
            last_error()
        ))
    })
}

/// Flows spread in software over the workers of a one-queue device.
#[derive(Debug)]
struct Spread {
    /// Per worker: packets of its flows, waiting.
    shares: Vec<ArrayQueue<PacketBuf>>,
    /// Held by the worker polling the device now.
    polling: AtomicBool,
    full: Arc<AtomicU64>,
}

/// One worker's queue of a DPDK port.
pub struct DpdkQueue {
    port: u16,
    rx_queue: u16,
    tx_queue: u16,
    worker: usize,
    pool: Pool,
    spread: Option<Arc<Spread>>,
    tx_lock: Option<Arc<AtomicBool>>,
    chained: Arc<AtomicU64>,
    registered: bool,
    mbufs: [*mut sys::rte_mbuf; MAX_BURST],
    out: [*mut sys::rte_mbuf; MAX_BURST],
    copied: [bool; MAX_BURST],
    to_free: [*mut sys::rte_mbuf; 2 * MAX_BURST],
    pending_free: usize,
}

// SAFETY: the mbuf pointers in the arrays are scratch space of one call, or mbufs this queue
// alone holds; DPDK's queues may be polled from any one thread at a time.
unsafe impl Send for DpdkQueue {}

impl core::fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DpdkQueue")
            .field("port", &self.port)
            .field("rx_queue", &self.rx_queue)
            .field("tx_queue", &self.tx_queue)
            .field("software_rss", &self.spread.is_some())
            .finish()
    }
}

unsafe fn release_mbuf(handle: NonNull<c_void>) {
    // SAFETY: the handle is an mbuf lent to a PacketBuf by `wrap`.
    unsafe { sys::vg_pktmbuf_free(handle.as_ptr().cast()) }
}

/// A received mbuf as a packet buffer over its data room.
///
/// # Safety
/// `m` is a single-segment mbuf this thread owns.
#[inline]
unsafe fn wrap(m: *mut sys::rte_mbuf) -> PacketBuf {
    // SAFETY: per the contract; the data room is `buf_len` bytes at `buf_addr`.
    unsafe {
        let mb = &*m;
        let start = usize::from(mb.data_off);
        let end = (start + usize::from(mb.data_len)).min(usize::from(mb.buf_len));
        PacketBuf::from_foreign(
            NonNull::new_unchecked(mb.buf_addr.cast::<u8>()),
            usize::from(mb.buf_len),
            start.min(end),
            end,
            NonNull::new_unchecked(m.cast()),
            release_mbuf,
        )
    }
}

impl DpdkQueue {
    fn register(&mut self) {
        self.registered = true;
        // SAFETY: called on the worker's own thread.
        if unsafe { sys::rte_thread_register() } != 0 {
            log::warn!(
                "dpdk worker {}: not registered with EAL ({}); mbufs go without cache",
                self.worker,
                last_error()
            );
        }
    }

    /// Frees what was collected, in bulk.
    #[inline]
    fn free_pending(&mut self) {
        if self.pending_free > 0 {
            // SAFETY: mbufs this queue owns.
            unsafe { sys::vg_pktmbuf_free_bulk(self.to_free.as_mut_ptr(), self.pending_free as u32) };
            self.pending_free = 0;
        }
    }

    /// Puts `new` in `slot`, keeping the old buffer's mbuf to free in bulk.
    #[inline]
    fn replace(&mut self, slot: &mut PacketBuf, new: PacketBuf) {
        if let Some((h, _, _)) = slot.take_foreign() {
            if self.pending_free == self.to_free.len() {
                self.free_pending();
            }
            self.to_free[self.pending_free] = h.as_ptr().cast();
            self.pending_free += 1;
        }
        *slot = new;
    }

    /// Polls the device for up to `max` packets into `self.mbufs[..n]` and returns `n`.
    /// A frame that came in several mbufs is freed and counted, never forwarded in part.
    fn poll_device(&mut self, max: usize) -> usize {
        // SAFETY: this thread polls this RX queue alone (own queue, or the spread's lock).
        let got = unsafe {
            usize::from(sys::vg_rx_burst(self.port, self.rx_queue, self.mbufs.as_mut_ptr(), max as u16))
        };
        let mut n = 0;
        for i in 0..got {
            let m = self.mbufs[i];
            // SAFETY: a fresh mbuf from the device.
            if unsafe { (*m).nb_segs } != 1 {
                // SAFETY: ours; this frees the whole chain.
                unsafe { sys::vg_pktmbuf_free(m) };
                self.chained.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.mbufs[n] = m;
            n += 1;
        }
        n
    }

    fn rx_spread(&mut self, spread: &Spread, bufs: &mut [PacketBuf]) -> usize {
        let share = &spread.shares[self.worker];
        if share.is_empty() && !spread.polling.swap(true, Ordering::Acquire) {
            let n = self.poll_device(MAX_BURST);
            let workers = spread.shares.len() as u32;
            for i in 0..n {
                // SAFETY: a fresh mbuf from the device.
                let buf = unsafe { wrap(self.mbufs[i]) };
                let to = (rss_hash(buf.as_slice()) % workers) as usize;
                if spread.shares[to].push(buf).is_err() {
                    // Dropped (its mbuf freed) and counted: that worker is too far behind.
                    spread.full.fetch_add(1, Ordering::Relaxed);
                }
            }
            spread.polling.store(false, Ordering::Release);
        }
        let mut n = 0;
        while n < bufs.len() {
            let Some(buf) = share.pop() else { break };
            self.replace(&mut bufs[n], buf);
            n += 1;
        }
        n
    }
}

impl DpdkQueue {
    /// The bench's stand-in for a device's receive: takes `bufs.len()` (at most a burst)
    /// mbufs from the port's pool in bulk and has `write` put a frame in each, as a NIC
    /// writes into the mbufs it was given. Returns how many it took (0 when the pool is
    /// dry). What `bufs` held before is freed, as after [`Port::rx_burst`].
    pub fn rx_generated(&mut self, bufs: &mut [PacketBuf], mut write: impl FnMut(&mut PacketBuf)) -> usize {
        if !self.registered {
            self.register();
        }
        let n = bufs.len().min(MAX_BURST);
        // SAFETY: room for n pointers; a live pool.
        if unsafe { sys::vg_pktmbuf_alloc_bulk(self.pool.0.as_ptr(), self.mbufs.as_mut_ptr(), n as u32) } != 0
        {
            return 0;
        }
        for (i, slot) in bufs[..n].iter_mut().enumerate() {
            // SAFETY: a fresh mbuf from the pool.
            let buf = unsafe { wrap(self.mbufs[i]) };
            self.replace(slot, buf);
            write(slot);
        }
        self.free_pending();
        n
    }
}

impl Port for DpdkQueue {
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        if !self.registered {
            self.register();
        }
        // The spread is lent out for the call, not cloned: no reference count per burst.
        let n = if let Some(spread) = self.spread.take() {
            let n = self.rx_spread(&spread, bufs);
            self.spread = Some(spread);
            n
        } else {
            let n = self.poll_device(bufs.len().min(MAX_BURST));
            for (i, slot) in bufs[..n].iter_mut().enumerate() {
                // SAFETY: a fresh mbuf from the device.
                let buf = unsafe { wrap(self.mbufs[i]) };
                self.replace(slot, buf);
            }
            n
        };
        self.free_pending();
        n
    }

    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        super::in_bursts(bufs, |some| self.tx_some(some))
    }
}

impl DpdkQueue {
    /// Sends up to [`MAX_BURST`] of `bufs`; returns how many the device took.
    fn tx_some(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let want = bufs.len().min(MAX_BURST);
        let mut n = 0;
        while n < want {
            let b = &bufs[n];
            let len = b.len();
            let m: *mut sys::rte_mbuf = if let Some(h) = b.foreign_handle() {
                self.copied[n] = false;
                h.as_ptr().cast()
            } else {
                // A buffer of the pipeline's own: copied into a fresh mbuf.
                // SAFETY: a live pool.
                let m = unsafe { sys::vg_pktmbuf_alloc(self.pool.0.as_ptr()) };
                if m.is_null() {
                    break;
                }
                // SAFETY: a fresh mbuf; its data room holds a full buffer.
                unsafe {
                    let mb = &mut *m;
                    if usize::from(mb.data_off) + len > usize::from(mb.buf_len) {
                        sys::vg_pktmbuf_free(m);
                        break;
                    }
                    let dst = mb.buf_addr.cast::<u8>().add(usize::from(mb.data_off));
                    core::ptr::copy_nonoverlapping(b.as_slice().as_ptr(), dst, len);
                }
                self.copied[n] = true;
                m
            };
            // SAFETY: an mbuf this queue holds; the packet now starts at the buffer's start.
            unsafe {
                let mb = &mut *m;
                if !self.copied[n] {
                    mb.data_off = b.headroom() as u16;
                }
                mb.data_len = len as u16;
                mb.pkt_len = len as u32;
                mb.nb_segs = 1;
                mb.next = core::ptr::null_mut();
            }
            self.out[n] = m;
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        let sent = {
            if let Some(lock) = &self.tx_lock {
                while lock.swap(true, Ordering::Acquire) {
                    core::hint::spin_loop();
                }
            }
            // SAFETY: n prepared mbufs; this thread sends on this TX queue alone (its own, or
            // under the lock).
            let sent = usize::from(unsafe {
                sys::vg_tx_burst(self.port, self.tx_queue, self.out.as_mut_ptr(), n as u16)
            });
            if let Some(lock) = &self.tx_lock {
                lock.store(false, Ordering::Release);
            }
            sent
        };
        // The device owns the mbufs sent now.
        super::hand_over(&mut bufs[..sent], &self.copied[..sent]);
        for i in sent..n {
            if self.copied[i] {
                if self.pending_free == self.to_free.len() {
                    self.free_pending();
                }
                self.to_free[self.pending_free] = self.out[i];
                self.pending_free += 1;
            }
        }
        self.free_pending();
        sent
    }
}
