//! The AF_XDP driver: a Linux interface shared with the kernel.
//!
//! [`open`] attaches vipgate's XDP filter to the interface (`FILTER_OBJECT` of
//! `vipgate-afxdp-sys`, built from `bpf/filter.bpf.c`): frames to the VIP subnets and to
//! the addresses vipgate answers for (ARP, neighbour solicitations, ICMP errors about
//! them too) go to the AF_XDP socket of the queue they arrived on; everything else (the
//! host's own address, BGP, SSH, health-check replies) goes on to the kernel. Each worker
//! owns one socket, bound to one queue, with a UMEM of its own: received frames are
//! used in place (the 256 bytes of XDP headroom are the buffer's headroom, where the
//! pipeline writes its tunnel headers) and sent from the same socket.
//!
//! The program is attached through a BPF link, which the kernel removes when the process
//! ends however it ends: a vipgate that was killed leaves no filter behind. A program
//! attached the older way (netlink) and named `vipgate_filter` is taken as a stale one of
//! ours and replaced; any other program on the interface is left alone and named in the
//! error.
//!
//! No allocation and no system call per packet: frames go round between a free list, the
//! fill ring, the RX ring, the TX ring and the completion ring, a burst at a time, and the
//! kernel is woken only when the rings say it asks to be (`XDP_USE_NEED_WAKEUP`).

use core::ffi::{c_void, CStr};
use core::ptr::NonNull;
use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use vipgate_afxdp_sys as sys;

use super::{Port, XdpMode, XskMode, MAX_BURST};
use crate::buf::PacketBuf;

/// Bytes a UMEM frame has: a page, the packet at [`FRAME_HEADROOM`].
pub const FRAME_SIZE: usize = 4096;
/// Where the kernel writes a received packet in its frame (XDP's own headroom): the room
/// the pipeline prepends tunnel headers into.
pub const FRAME_HEADROOM: usize = sys::XDP_PACKET_HEADROOM as usize;
/// Descriptors of each ring (fill, completion, RX, TX).
pub const RING_SIZE: u32 = 1024;
/// Frames of each socket's UMEM: the fill and TX rings full, the packets a worker holds,
/// and some to spare (16 MiB a socket).
pub const FRAMES: usize = 4096;
/// The program's name, by which a stale one is recognised.
pub const PROGRAM: &str = "vipgate_filter";

/// How to open an AF_XDP port.
#[derive(Debug, Clone)]
pub struct AfxdpOptions {
    /// The port's name (for logs).
    pub name: String,
    /// The interface (`eth0`).
    pub interface: String,
    /// Workers: one socket each, while the interface has queues for them.
    pub workers: usize,
    /// Queues to bind, at most one per worker; `None` for one per worker (as many as the
    /// interface has).
    pub queues: Option<usize>,
    /// Zero-copy or copy.
    pub mode: XskMode,
    /// Native or generic XDP.
    pub xdp_mode: XdpMode,
    /// The prefixes whose traffic the sockets take: the VIP subnets, and the addresses
    /// vipgate answers for (as /32 and /128).
    pub prefixes: Vec<(IpAddr, u8)>,
}

/// Why an AF_XDP port did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfxdpError {
    /// Loading and attaching XDP programs needs root (CAP_NET_ADMIN, CAP_BPF).
    NotRoot,
    /// No such interface.
    NoInterface(String),
    /// The interface already runs an XDP program that is not vipgate's.
    Occupied {
        /// The interface.
        interface: String,
        /// The program's id.
        id: u32,
        /// Its name.
        name: String,
    },
    /// Options that cannot be met.
    Options(String),
    /// The kernel or a library refused.
    System(String),
}

impl core::fmt::Display for AfxdpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AfxdpError::NotRoot => f.write_str(
                "the afxdp driver needs root (CAP_NET_ADMIN and CAP_BPF, to attach its XDP program): run vipgate as root",
            ),
            AfxdpError::NoInterface(i) => write!(f, "interface \"{i}\" not found (ip link shows the interfaces)"),
            AfxdpError::Occupied { interface, id, name } => write!(
                f,
                "interface \"{interface}\" runs XDP program {id} (\"{name}\"), which is not vipgate's: \
                 detach it (ip link set dev {interface} xdp off) or give vipgate another interface"
            ),
            AfxdpError::Options(e) => f.write_str(e),
            AfxdpError::System(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for AfxdpError {}

fn errno_text(code: i32) -> String {
    std::io::Error::from_raw_os_error(code.abs()).to_string()
}

/// libbpf and libxdp return `-errno`; EPERM means no privileges.
fn refused(what: &str, code: i32) -> AfxdpError {
    if code.abs() == libc::EPERM {
        AfxdpError::NotRoot
    } else {
        AfxdpError::System(format!("{what}: {}", errno_text(code)))
    }
}

/// The interface's receive queues, from sysfs.
pub fn interface_queues(interface: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1)
        .max(1)
}

/// The interface's MAC address, from sysfs.
pub fn interface_mac(interface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).ok()?;
    let bytes: Vec<u8> = text.trim().split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    bytes.try_into().ok()
}

/// The addresses the kernel has on the interface.
pub fn interface_addresses(interface: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = core::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut at = list;
    while !at.is_null() {
        // SAFETY: a node of the list getifaddrs made; its name is NUL-terminated and its
        // address, when not null, is a sockaddr of the family it says.
        unsafe {
            let ifa = &*at;
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if name == interface && !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            at = ifa.ifa_next;
        }
    }
    // SAFETY: the list getifaddrs made.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// The XDP program attached to `ifindex` (by netlink or by a link), if any: its id and name.
fn attached_program(ifindex: i32) -> Option<(u32, String)> {
    let mut id = 0u32;
    // SAFETY: a valid out pointer; flags 0 ask for whichever mode is attached.
    if unsafe { sys::bpf_xdp_query_id(ifindex, 0, &mut id) } != 0 || id == 0 {
        return None;
    }
    // SAFETY: an id the kernel just gave; the fd is closed below.
    let fd = unsafe { sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Some((id, String::from("?")));
    }
    let mut info = sys::bpf_prog_info::default();
    let mut len = core::mem::size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: `info` has `len` bytes; `fd` is ours.
    let ok = unsafe { sys::bpf_obj_get_info_by_fd(fd, (&raw mut info).cast(), &mut len) } == 0;
    // SAFETY: ours to close.
    unsafe { libc::close(fd) };
    let name = if ok {
        let bytes: Vec<u8> = info.name.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        String::from("?")
    };
    Some((id, name))
}

/// The loaded filter: the BPF object, its maps and the link that attaches it. Dropping it
/// detaches the program.
struct Filter {
    object: NonNull<sys::bpf_object>,
    xsks: i32,
    vips4: i32,
    vips6: i32,
    counts: i32,
    link: i32,
}

// SAFETY: the object is only closed (on drop); the map fds are plain descriptors that any
// thread may use.
unsafe impl Send for Filter {}
// SAFETY: as above; map updates are system calls.
unsafe impl Sync for Filter {}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the link fd is ours (closing it detaches the program); the object was
        // opened by `load` and is closed once.
        unsafe {
            if self.link >= 0 {
                libc::close(self.link);
            }
            sys::bpf_object__close(self.object.as_ptr());
        }
    }
}

impl Filter {
    /// Opens and loads [`sys::FILTER_OBJECT`].
    fn load() -> Result<Filter, AfxdpError> {
        let name = CString::new("vipgate_filter").unwrap_or_default();
        // libbpf checks that every byte it does not know is zero, padding included: the
        // options start zeroed and are filled field by field, in place.
        // SAFETY: a C struct of integers and pointers, for which all zeroes is valid.
        let mut opts: sys::bpf_object_open_opts = unsafe { core::mem::zeroed() };
        opts.sz = core::mem::size_of::<sys::bpf_object_open_opts>();
        opts.object_name = name.as_ptr();
        // SAFETY: the object bytes are static; libbpf copies what it keeps.
        let object = unsafe {
            sys::bpf_object__open_mem(sys::FILTER_OBJECT.as_ptr().cast(), sys::FILTER_OBJECT.len(), &opts)
        };
        // SAFETY: libbpf's way of telling an error pointer.
        let err = unsafe { sys::libbpf_get_error(object.cast()) };
        let object = match NonNull::new(object) {
            Some(o) if err == 0 => o,
            _ => return Err(refused("the XDP filter's object", err as i32)),
        };
        let mut filter = Filter { object, xsks: -1, vips4: -1, vips6: -1, counts: -1, link: -1 };
        // SAFETY: an object just opened.
        let loaded = unsafe { sys::bpf_object__load(object.as_ptr()) };
        if loaded != 0 {
            return Err(refused("loading the XDP filter", loaded));
        }
        let map = |name: &str| -> Result<i32, AfxdpError> {
            let c = CString::new(name).unwrap_or_default();
            // SAFETY: a loaded object; the map is owned by it.
            let fd = unsafe {
                let m = sys::bpf_object__find_map_by_name(object.as_ptr(), c.as_ptr());
                if m.is_null() {
                    -1
                } else {
                    sys::bpf_map__fd(m)
                }
            };
            if fd < 0 {
                Err(AfxdpError::System(format!("the XDP filter has no map {name}")))
            } else {
                Ok(fd)
            }
        };
        filter.xsks = map("vg_xsks")?;
        filter.vips4 = map("vg_vips4")?;
        filter.vips6 = map("vg_vips6")?;
        filter.counts = map("vg_counts")?;
        Ok(filter)
    }

    fn program_fd(&self) -> Result<i32, AfxdpError> {
        let c = CString::new(PROGRAM).unwrap_or_default();
        // SAFETY: a loaded object; the program is owned by it.
        let fd = unsafe {
            let p = sys::bpf_object__find_program_by_name(self.object.as_ptr(), c.as_ptr());
            if p.is_null() {
                -1
            } else {
                sys::bpf_program__fd(p)
            }
        };
        if fd < 0 {
            return Err(AfxdpError::System(format!("the XDP filter has no program {PROGRAM}")));
        }
        Ok(fd)
    }

    /// Attaches the program to `ifindex` in `mode` through a link.
    fn attach(&mut self, ifindex: i32, mode: XdpMode) -> Result<(), i32> {
        let prog = self.program_fd().map_err(|_| -libc::ENOENT)?;
        // Zeroed whole, padding included, as libbpf checks (see `load`).
        // SAFETY: a C struct of integers and unions of them, for which all zeroes is valid.
        let mut opts: sys::bpf_link_create_opts = unsafe { core::mem::zeroed() };
        opts.sz = core::mem::size_of::<sys::bpf_link_create_opts>();
        opts.flags = match mode {
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
        };
        // SAFETY: a loaded program's fd and an interface index.
        let link = unsafe { sys::bpf_link_create(prog, ifindex, sys::bpf_attach_type_BPF_XDP, &opts) };
        if link < 0 {
            return Err(link);
        }
        self.link = link;
        Ok(())
    }

    fn map_key(prefix: IpAddr, len: u8) -> Vec<u8> {
        let mut key = u32::from(len).to_ne_bytes().to_vec();
        match prefix {
            IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
        }
        key
    }

    fn map_of(&self, prefix: IpAddr) -> i32 {
        match prefix {
            IpAddr::V4(_) => self.vips4,
            IpAddr::V6(_) => self.vips6,
        }
    }

    fn add(&self, prefix: IpAddr, len: u8) -> Result<(), String> {
        let key = Filter::map_key(prefix, len);
        let value = 1u8;
        // SAFETY: the key and value have the map's sizes (8 or 20, and 1).
        let r = unsafe {
            sys::bpf_map_update_elem(
                self.map_of(prefix),
                key.as_ptr().cast(),
                (&raw const value).cast(),
                u64::from(sys::BPF_ANY),
            )
        };
        if r != 0 {
            return Err(format!("{prefix}/{len} into the XDP filter: {}", errno_text(r)));
        }
        Ok(())
    }

    fn remove(&self, prefix: IpAddr, len: u8) -> Result<(), String> {
        let key = Filter::map_key(prefix, len);
        // SAFETY: the key has the map's key size.
        let r = unsafe { sys::bpf_map_delete_elem(self.map_of(prefix), key.as_ptr().cast()) };
        if r != 0 && r != -libc::ENOENT {
            return Err(format!("{prefix}/{len} out of the XDP filter: {}", errno_text(r)));
        }
        Ok(())
    }

    /// The filter's counts over every CPU: frames taken, frames passed.
    fn counts(&self) -> (u64, u64) {
        // SAFETY: sysconf has no preconditions.
        let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }).unwrap_or(1).max(1);
        let mut out = [0u64; 2];
        for (key, total) in out.iter_mut().enumerate() {
            let mut values = vec![0u64; cpus];
            let key = key as u32;
            // SAFETY: a per-CPU map of u64 fills one value per possible CPU.
            let r = unsafe {
                sys::bpf_map_lookup_elem(self.counts, (&raw const key).cast(), values.as_mut_ptr().cast())
            };
            if r == 0 {
                *total = values.iter().sum();
            }
        }
        (out[0], out[1])
    }
}

/// The statistics of an AF_XDP socket (`XDP_STATISTICS`), summed over the port's sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames dropped for other reasons than a full RX ring (no frame in the fill ring
    /// with room, a frame too long).
    pub rx_dropped: u64,
    /// RX descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame came.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
    /// Wake-ups the kernel asked for and got (a system call each, a burst at most).
    pub wakeups: u64,
}

/// The memory of a UMEM: [`FRAMES`] frames of [`FRAME_SIZE`] bytes, page-aligned, and the
/// handles its frames are lent to packet buffers with.
struct Umem {
    area: NonNull<u8>,
    /// One per frame: what a buffer over that frame gives back when it is dropped.
    slots: Box<[Slot]>,
    /// Frames given back by dropped buffers (from any thread), to take into the free list.
    recycled: ArrayQueue<u32>,
}

/// A frame's handle: its UMEM and its number.
struct Slot {
    umem: *const Umem,
    frame: u32,
}

fn umem_layout() -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(FRAMES * FRAME_SIZE, 4096).expect("a UMEM's layout")
}

impl Umem {
    /// A zeroed UMEM, boxed so that its slots can point at it.
    fn new() -> Box<Umem> {
        let layout = umem_layout();
        // SAFETY: the layout's size is not zero.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let area = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let mut umem = Box::new(Umem { area, slots: Box::new([]), recycled: ArrayQueue::new(FRAMES) });
        let at: *const Umem = &*umem;
        umem.slots = (0..FRAMES as u32).map(|frame| Slot { umem: at, frame }).collect();
        umem
    }

    /// The frame a handle stands for, if it is one of this UMEM's.
    #[inline]
    fn frame_of(&self, handle: NonNull<c_void>) -> Option<u32> {
        let base = self.slots.as_ptr() as usize;
        let at = handle.as_ptr() as usize;
        let offset = at.wrapping_sub(base);
        (offset < self.slots.len() * core::mem::size_of::<Slot>())
            .then(|| (offset / core::mem::size_of::<Slot>()) as u32)
    }

    /// A packet buffer over `frame`, the packet at `start..start + len`.
    #[inline]
    fn lend(&self, frame: u32, start: usize, len: usize) -> PacketBuf {
        let start = start.min(FRAME_SIZE);
        let end = (start + len).min(FRAME_SIZE);
        // SAFETY: the frame's FRAME_SIZE bytes lie in the area; the frame is this queue's
        // alone until it comes back (by `take_foreign`, or `release_frame` on drop); the
        // handle is its slot, which lives as long as the UMEM.
        unsafe {
            PacketBuf::from_foreign(
                NonNull::new_unchecked(self.area.as_ptr().add(frame as usize * FRAME_SIZE)),
                FRAME_SIZE,
                start,
                end,
                NonNull::new_unchecked((&raw const self.slots[frame as usize]).cast_mut().cast()),
                release_frame,
            )
        }
    }
}

unsafe fn release_frame(handle: NonNull<c_void>) {
    // SAFETY: the handle is a slot of a UMEM that lives while any of its frames is lent
    // (see `Socket`'s drop); the recycle queue holds every frame, so the push succeeds.
    unsafe {
        let slot = &*handle.as_ptr().cast::<Slot>();
        let _ = (*slot.umem).recycled.push(slot.frame);
    }
}

/// The four rings of a socket and its UMEM, where libxdp keeps pointers to them.
#[derive(Default)]
struct Rings {
    fill: sys::xsk_ring_prod,
    comp: sys::xsk_ring_cons,
    rx: sys::xsk_ring_cons,
    tx: sys::xsk_ring_prod,
}

/// One AF_XDP socket with its UMEM.
struct Socket {
    xsk: *mut sys::xsk_socket,
    umem_handle: *mut sys::xsk_umem,
    rings: Box<UnsafeCell<Rings>>,
    fd: i32,
    /// Zero-copy, or copy.
    zero_copy: bool,
    /// The frames. Their memory outlives the kernel's use of it (the socket is deleted
    /// first) and every buffer lent one of them: it is freed on drop only when the queue
    /// said, as it closed, that none is lent ([`Socket::lent`]); else it is kept for the
    /// life of the process.
    umem: Option<Box<Umem>>,
    /// Frames lent to buffers when the queue closed (`usize::MAX` while it runs).
    lent: AtomicUsize,
    /// Wake-ups the kernel asked for (fill and TX rings) and got: a system call each.
    wakeups: AtomicU64,
}

// SAFETY: the rings are used by the one queue that owns the socket (the device reads only
// statistics, through the fd); libxdp's objects are freed once, on drop.
unsafe impl Send for Socket {}
// SAFETY: as above: shared references use the fd alone.
unsafe impl Sync for Socket {}

impl Socket {
    /// A socket on `queue` over `umem`; on failure the UMEM comes back with the error.
    fn open(
        interface: &CStr,
        queue: u32,
        umem: Box<Umem>,
        copy: bool,
        zero_copy: bool,
    ) -> Result<Socket, (i32, Box<Umem>)> {
        let rings: Box<UnsafeCell<Rings>> = Box::default();
        let r = rings.get();
        let ucfg = sys::xsk_umem_config {
            fill_size: RING_SIZE,
            comp_size: RING_SIZE,
            frame_size: FRAME_SIZE as u32,
            frame_headroom: 0,
            flags: 0,
        };
        let mut umem_handle = core::ptr::null_mut();
        // SAFETY: the area is FRAMES * FRAME_SIZE bytes, page-aligned, and lives longer than
        // the UMEM handle (see the drop); the rings are boxed.
        let e = unsafe {
            sys::xsk_umem__create(
                &mut umem_handle,
                umem.area.as_ptr().cast(),
                (FRAMES * FRAME_SIZE) as u64,
                &raw mut (*r).fill,
                &raw mut (*r).comp,
                &ucfg,
            )
        };
        if e != 0 {
            return Err((e, umem));
        }
        let mut scfg = sys::xsk_socket_config {
            rx_size: RING_SIZE,
            tx_size: RING_SIZE,
            bind_flags: (sys::XDP_USE_NEED_WAKEUP
                | if zero_copy { sys::XDP_ZEROCOPY } else { 0 }
                | if copy { sys::XDP_COPY } else { 0 }) as u16,
            ..Default::default()
        };
        scfg.__bindgen_anon_1.libxdp_flags = sys::XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        let mut xsk = core::ptr::null_mut();
        // SAFETY: a UMEM just made, boxed rings, a NUL-terminated name.
        let e = unsafe {
            sys::xsk_socket__create(
                &mut xsk,
                interface.as_ptr(),
                queue,
                umem_handle,
                &raw mut (*r).rx,
                &raw mut (*r).tx,
                &scfg,
            )
        };
        if e != 0 {
            // SAFETY: the UMEM handle just made, with no socket.
            unsafe { sys::xsk_umem__delete(umem_handle) };
            return Err((e, umem));
        }
        // SAFETY: a socket just made.
        let fd = unsafe { sys::xsk_socket__fd(xsk) };
        Ok(Socket {
            xsk,
            umem_handle,
            rings,
            fd,
            zero_copy,
            umem: Some(umem),
            lent: AtomicUsize::new(usize::MAX),
            wakeups: AtomicU64::new(0),
        })
    }

    fn stats(&self) -> SocketStats {
        let mut s = sys::xdp_statistics::default();
        let mut len = core::mem::size_of::<sys::xdp_statistics>() as libc::socklen_t;
        // SAFETY: the socket's fd; `s` has `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                sys::SOL_XDP as i32,
                sys::XDP_STATISTICS as i32,
                (&raw mut s).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return SocketStats::default();
        }
        SocketStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
            wakeups: self.wakeups.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: made by `open`, freed once; the socket before its UMEM.
        unsafe {
            sys::xsk_socket__delete(self.xsk);
            sys::xsk_umem__delete(self.umem_handle);
        }
        let Some(umem) = self.umem.take() else { return };
        if self.lent.load(Ordering::Acquire) == 0 {
            // SAFETY: allocated by `Umem::new` with this layout; the kernel no longer uses
            // it and no buffer holds a frame of it.
            unsafe { std::alloc::dealloc(umem.area.as_ptr(), umem_layout()) };
        } else {
            // A buffer may still give a frame back through its slot.
            core::mem::forget(umem);
        }
    }
}

/// An AF_XDP port: the filter on the interface and the sockets' statistics. Dropping it
/// detaches the filter.
pub struct AfxdpDevice {
    /// The interface.
    pub interface: String,
    /// Queues with a socket.
    pub queues: usize,
    /// Whether the sockets run zero-copy.
    pub zero_copy: bool,
    /// `native` or `generic`.
    pub xdp_mode: &'static str,
    filter: Filter,
    sockets: Vec<Arc<Socket>>,
    prefixes: Mutex<BTreeSet<(IpAddr, u8)>>,
}

impl core::fmt::Debug for AfxdpDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AfxdpDevice").field("interface", &self.interface).finish_non_exhaustive()
    }
}

impl AfxdpDevice {
    /// Makes the filter take exactly `prefixes`: the new ones are added first, then the
    /// ones no longer wanted removed, so that a prefix in both is never out of the map.
    pub fn set_prefixes(&self, prefixes: &[(IpAddr, u8)]) -> Result<(), String> {
        let mut now = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: BTreeSet<(IpAddr, u8)> = prefixes.iter().map(|&(a, l)| (masked(a, l), l)).collect();
        for &(a, l) in wanted.difference(&now) {
            self.filter.add(a, l)?;
        }
        for &(a, l) in now.difference(&wanted) {
            self.filter.remove(a, l)?;
        }
        *now = wanted;
        Ok(())
    }

    /// The prefixes the filter takes.
    pub fn prefixes(&self) -> Vec<(IpAddr, u8)> {
        self.prefixes.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }

    /// The sockets' statistics, summed.
    pub fn stats(&self) -> SocketStats {
        let mut t = SocketStats::default();
        for s in &self.sockets {
            let s = s.stats();
            t.rx_dropped += s.rx_dropped;
            t.rx_invalid_descs += s.rx_invalid_descs;
            t.tx_invalid_descs += s.tx_invalid_descs;
            t.rx_ring_full += s.rx_ring_full;
            t.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
            t.tx_ring_empty_descs += s.tx_ring_empty_descs;
            t.wakeups += s.wakeups;
        }
        t
    }

    /// Frames the filter gave the sockets, and frames it passed to the kernel.
    pub fn filter_counts(&self) -> (u64, u64) {
        self.filter.counts()
    }
}

/// `addr` with the bits past `len` cleared.
fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            IpAddr::from((u32::from(a) & keep).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            IpAddr::from((u128::from(a) & keep).to_be_bytes())
        }
    }
}

/// Opens `options.interface`: attaches the filter and binds a socket per queue. Returns
/// the device and one port per worker (a worker beyond the interface's queues gets a port
/// that never receives, and the log says so).
pub fn open(options: &AfxdpOptions) -> Result<(AfxdpDevice, Vec<Box<dyn Port>>), AfxdpError> {
    let name = CString::new(options.interface.as_str())
        .map_err(|_| AfxdpError::NoInterface(options.interface.clone()))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { sys::if_nametoindex(name.as_ptr()) } as i32;
    if ifindex == 0 {
        return Err(AfxdpError::NoInterface(options.interface.clone()));
    }
    let available = interface_queues(&options.interface);
    let workers = options.workers.max(1);
    let queues = match options.queues {
        Some(q) if q > available => {
            return Err(AfxdpError::Options(format!(
                "queues = {q}, but interface \"{}\" has {available} (ethtool -l shows them, -L sets them)",
                options.interface
            )))
        }
        Some(q) if q > workers => {
            return Err(AfxdpError::Options(format!(
                "queues = {q} for {workers} worker(s): a worker polls one queue (set [engine] workers = {q})"
            )))
        }
        Some(q) => q,
        None => workers.min(available),
    };
    if options.mode == XskMode::ZeroCopy && options.xdp_mode == XdpMode::Generic {
        return Err(AfxdpError::Options(
            "mode = \"zero-copy\" needs xdp_mode = \"native\" (generic XDP copies every frame)".into(),
        ));
    }

    // A program left by a vipgate that did not detach it is replaced; another is not ours.
    if let Some((id, prog)) = attached_program(ifindex) {
        if prog != PROGRAM {
            return Err(AfxdpError::Occupied { interface: options.interface.clone(), id, name: prog });
        }
        // It was attached in one mode or the other (netlink detaches by mode).
        for flags in [sys::XDP_FLAGS_SKB_MODE, sys::XDP_FLAGS_DRV_MODE] {
            // SAFETY: an interface index; no options.
            unsafe { sys::bpf_xdp_detach(ifindex, flags, core::ptr::null()) };
        }
        if attached_program(ifindex).is_some() {
            return Err(AfxdpError::System(format!(
                "interface \"{}\" runs vipgate's XDP program ({id}) through a link of a process that \
                 still holds it: is another vipgate running on {}?",
                options.interface, options.interface
            )));
        }
        log::warn!(
            "port \"{}\": replaced the stale vipgate XDP program {id} left on {}",
            options.name,
            options.interface
        );
    }

    let mut filter = Filter::load()?;
    let xdp_mode = match (options.xdp_mode, filter.attach(ifindex, options.xdp_mode)) {
        (XdpMode::Native, Ok(())) => "native",
        (XdpMode::Generic, Ok(())) => "generic",
        (XdpMode::Native, Err(e)) if options.mode != XskMode::ZeroCopy => {
            log::warn!(
                "port \"{}\": {} has no native XDP ({}); the filter runs in generic mode, copying every frame",
                options.name,
                options.interface,
                errno_text(e)
            );
            filter
                .attach(ifindex, XdpMode::Generic)
                .map_err(|e| refused(&format!("attaching the XDP filter to {}", options.interface), e))?;
            "generic"
        }
        (_, Err(e)) if e.abs() == libc::EBUSY || e.abs() == libc::EEXIST => {
            let (id, prog) = attached_program(ifindex).unwrap_or((0, String::from("?")));
            return Err(AfxdpError::Occupied { interface: options.interface.clone(), id, name: prog });
        }
        (_, Err(e)) => {
            return Err(refused(&format!("attaching the XDP filter to {}", options.interface), e));
        }
    };
    let device_prefixes = Mutex::new(BTreeSet::new());
    let mut device = AfxdpDevice {
        interface: options.interface.clone(),
        queues,
        zero_copy: false,
        xdp_mode,
        filter,
        sockets: Vec::new(),
        prefixes: device_prefixes,
    };
    device.set_prefixes(&options.prefixes).map_err(AfxdpError::System)?;

    let mut ports: Vec<Box<dyn Port>> = Vec::with_capacity(workers);
    for q in 0..queues {
        let mut umem = Umem::new();
        let attempts: &[(bool, bool)] = match (options.mode, xdp_mode) {
            (XskMode::Copy, _) | (XskMode::Auto, "generic") => &[(true, false)],
            (XskMode::ZeroCopy, _) => &[(false, true)],
            (XskMode::Auto, _) => &[(false, true), (true, false)],
        };
        let mut socket = Err(0);
        for &(copy, zero_copy) in attempts {
            match Socket::open(&name, q as u32, umem, copy, zero_copy) {
                Ok(s) => {
                    socket = Ok(s);
                    break;
                }
                Err((e, back)) => {
                    socket = Err(e);
                    umem = back;
                }
            }
        }
        let socket = socket
            .map_err(|e| refused(&format!("an AF_XDP socket on {} queue {q}", options.interface), e))?;
        if q == 0 {
            device.zero_copy = socket.zero_copy;
        }
        // SAFETY: a socket just made and the filter's XSKMAP.
        let r = unsafe { sys::xsk_socket__update_xskmap(socket.xsk, device.filter.xsks) };
        if r != 0 {
            return Err(refused("the socket into the XDP filter's map", r));
        }
        let socket = Arc::new(socket);
        device.sockets.push(Arc::clone(&socket));
        ports.push(Box::new(AfxdpQueue::new(socket)));
    }
    if workers > queues {
        log::warn!(
            "port \"{}\": {} has {available} queue(s) and {queues} in use for {workers} workers: \
             workers {queues}.. receive nothing (ethtool -L {} combined {workers}, or [engine] workers = {queues})",
            options.name,
            options.interface,
            options.interface
        );
        for _ in queues..workers {
            ports.push(Box::new(Idle));
        }
    }
    log::info!(
        "port \"{}\": AF_XDP on {} (ifindex {ifindex}), {queues} queue(s), {} mode, {} XDP, {} prefixes taken",
        options.name,
        options.interface,
        if device.zero_copy { "zero-copy" } else { "copy" },
        xdp_mode,
        device.prefixes().len()
    );
    Ok((device, ports))
}

/// The port of a worker the interface has no queue for.
#[derive(Debug)]
struct Idle;

impl Port for Idle {
    fn rx_burst(&mut self, _: &mut [PacketBuf]) -> usize {
        0
    }

    fn tx_burst(&mut self, _: &mut [PacketBuf]) -> usize {
        0
    }
}

/// One worker's socket.
pub struct AfxdpQueue {
    socket: Arc<Socket>,
    /// Frames of ours in no ring and lent to no buffer.
    free: Vec<u32>,
    /// Frames on the fill, RX, TX and completion rings.
    in_kernel: usize,
    addrs: [u64; MAX_BURST],
    lens: [u32; MAX_BURST],
    /// Per packet of a TX burst: whether it was copied into a frame of ours.
    copied: [bool; MAX_BURST],
}

impl core::fmt::Debug for AfxdpQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AfxdpQueue")
            .field("free", &self.free.len())
            .field("in_kernel", &self.in_kernel)
            .finish()
    }
}

impl AfxdpQueue {
    fn new(socket: Arc<Socket>) -> AfxdpQueue {
        let mut q = AfxdpQueue {
            socket,
            free: (0..FRAMES as u32).rev().collect(),
            in_kernel: 0,
            addrs: [0; MAX_BURST],
            lens: [0; MAX_BURST],
            copied: [false; MAX_BURST],
        };
        q.refill();
        q
    }

    #[inline]
    fn rings(&mut self) -> &mut Rings {
        // SAFETY: this queue alone uses the rings (`Socket`'s contract), and `&mut self`
        // makes this the only reference now.
        unsafe { &mut *self.socket.rings.get() }
    }

    #[inline]
    fn umem(&self) -> &Umem {
        // The socket's UMEM is taken out only when the socket is dropped.
        self.socket.umem.as_deref().expect("the socket's UMEM")
    }

    /// Takes back the frames of sent packets and of dropped buffers, and keeps the fill
    /// ring full.
    #[inline]
    fn refill(&mut self) {
        let mut done = [0u64; MAX_BURST];
        loop {
            // SAFETY: the completion ring of this queue's socket; room for MAX_BURST.
            let n = unsafe { sys::vg_complete(&mut self.rings().comp, done.as_mut_ptr(), MAX_BURST as u32) }
                as usize;
            self.in_kernel -= n.min(self.in_kernel);
            self.free.extend(done[..n].iter().map(|&a| (a as usize / FRAME_SIZE) as u32));
            if n < MAX_BURST {
                break;
            }
        }
        while let Some(f) = self.umem().recycled.pop() {
            self.free.push(f);
        }
        loop {
            let n = self.free.len().min(MAX_BURST);
            if n == 0 {
                break;
            }
            let from = self.free.len() - n;
            for (i, &f) in self.free[from..].iter().enumerate() {
                done[i] = (f as usize * FRAME_SIZE) as u64;
            }
            // SAFETY: the fill ring of this queue's socket; `n` addresses of free frames.
            let put = unsafe { sys::vg_fill(&mut self.rings().fill, done.as_ptr(), n as u32) } as usize;
            // The frames put are the last `put` of those offered.
            let keep = self.free.len() - put;
            if put > 0 {
                // The first `put` addresses offered went in: they were free[from..from + put].
                self.free.drain(from..from + put);
                self.in_kernel += put;
            }
            debug_assert_eq!(self.free.len(), keep);
            if put < n {
                break;
            }
        }
        // SAFETY: the fill ring of this queue's socket.
        if unsafe { sys::vg_needs_wakeup(&self.rings().fill) } != 0 {
            self.socket.wakeups.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the socket's fd; a zero-length, non-blocking receive wakes the RX side.
            unsafe {
                libc::recvfrom(
                    self.socket.fd,
                    core::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                )
            };
        }
    }

    /// Puts `new` in `slot`; a frame of ours that the old buffer held goes back to the free
    /// list at once.
    #[inline]
    fn replace(&mut self, slot: &mut PacketBuf, new: PacketBuf) {
        if let Some(frame) = slot.foreign_handle().and_then(|h| self.umem().frame_of(h)) {
            let _ = slot.take_foreign();
            self.free.push(frame);
        }
        *slot = new;
    }
}

impl Port for AfxdpQueue {
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        self.refill();
        let max = bufs.len().min(MAX_BURST) as u32;
        let (addrs, lens) = (self.addrs.as_mut_ptr(), self.lens.as_mut_ptr());
        // SAFETY: the RX ring of this queue's socket; room for `max` in both arrays.
        let n = unsafe { sys::vg_rx(&mut self.rings().rx, addrs, lens, max) } as usize;
        self.in_kernel -= n.min(self.in_kernel);
        for (i, slot) in bufs[..n].iter_mut().enumerate() {
            let (addr, len) = (self.addrs[i] as usize, self.lens[i] as usize);
            let buf = self.umem().lend((addr / FRAME_SIZE) as u32, addr % FRAME_SIZE, len);
            self.replace(slot, buf);
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        super::in_bursts(bufs, |some| self.tx_some(some))
    }
}

impl AfxdpQueue {
    /// Sends up to [`MAX_BURST`] of `bufs`; returns how many the TX ring took.
    fn tx_some(&mut self, bufs: &mut [PacketBuf]) -> usize {
        // SAFETY: the TX ring of this queue's socket.
        let room = unsafe { sys::vg_prod_free(&mut self.rings().tx) } as usize;
        let want = bufs.len().min(MAX_BURST).min(room);
        let mut n = 0;
        while n < want {
            let b = &bufs[n];
            let len = b.len();
            if let Some(frame) = b.foreign_handle().and_then(|h| self.umem().frame_of(h)) {
                self.addrs[n] = (frame as usize * FRAME_SIZE + b.headroom()) as u64;
                self.copied[n] = false;
            } else {
                // A buffer of the pipeline's own, or lent by no frame of ours: copied.
                if len > FRAME_SIZE - FRAME_HEADROOM {
                    break;
                }
                let Some(frame) = self.free.pop() else {
                    self.refill();
                    break;
                };
                let at = frame as usize * FRAME_SIZE + FRAME_HEADROOM;
                // SAFETY: a free frame of ours: `len` bytes fit after its headroom.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        b.as_slice().as_ptr(),
                        self.umem().area.as_ptr().add(at),
                        len,
                    );
                }
                self.addrs[n] = at as u64;
                self.copied[n] = true;
            }
            self.lens[n] = len as u32;
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        let (addrs, lens) = (self.addrs.as_ptr(), self.lens.as_ptr());
        // SAFETY: the TX ring of this queue's socket; `n` descriptors of frames of ours.
        let sent = unsafe { sys::vg_tx(&mut self.rings().tx, addrs, lens, n as u32) } as usize;
        // The kernel has the frames sent now, until the completion ring gives them back.
        super::hand_over(&mut bufs[..sent], &self.copied[..sent]);
        for i in sent..n {
            if self.copied[i] {
                self.free.push((self.addrs[i] as usize / FRAME_SIZE) as u32);
            }
        }
        self.in_kernel += sent;
        // SAFETY: the TX ring of this queue's socket.
        if sent > 0 && unsafe { sys::vg_needs_wakeup(&self.rings().tx) } != 0 {
            self.socket.wakeups.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the socket's fd; a zero-length, non-blocking send starts the TX.
            unsafe {
                libc::sendto(self.socket.fd, core::ptr::null(), 0, libc::MSG_DONTWAIT, core::ptr::null(), 0)
            };
        }
        sent
    }
}

impl Drop for AfxdpQueue {
    fn drop(&mut self) {
        // Frames in no ring, on no list, are lent to buffers that still live: the socket
        // keeps their memory if any is (see `Socket::umem`).
        let umem = self.umem();
        let home = self.free.len() + umem.recycled.len() + self.in_kernel;
        self.socket.lent.store(FRAMES.saturating_sub(home), Ordering::Release);
    }
}
