//! Packet buffers with headroom.
//!
//! A [`PacketBuf`] owns a fixed block of memory and marks the packet inside it with a start
//! and an end. Encapsulation prepends headers into the headroom before the start, so a
//! packet is never copied to be tunnelled. Buffers are allocated once, when a port or a
//! pool is created, and reused: nothing here allocates per packet.
//!
//! The memory is either the buffer's own (a heap block) or lent by a port driver: a DPDK
//! mbuf's data room, used in place. A lent buffer gives its memory back to the driver when
//! it is dropped, or hands it on (to a NIC's TX queue) with [`PacketBuf::take_foreign`].

use core::ffi::c_void;
use core::ptr::NonNull;

/// The room kept in front of a received packet, for encapsulation headers.
pub const HEADROOM: usize = 128;

/// The default size of a buffer's data area (headroom included): enough for a 1500-byte
/// MTU frame with VLAN tag plus encapsulation, or a 9000-byte jumbo frame with
/// [`PacketBuf::with_capacity`].
pub const DEFAULT_CAPACITY: usize = 2048;

/// Gives lent memory back to its owner; called at most once per lending, from any thread.
pub type Release = unsafe fn(NonNull<c_void>);

/// Lent memory: the owner's handle for it and how to give it back.
#[derive(Clone, Copy)]
struct Lent {
    handle: NonNull<c_void>,
    release: Release,
}

/// A packet in a buffer with headroom.
pub struct PacketBuf {
    data: NonNull<u8>,
    capacity: usize,
    start: usize,
    end: usize,
    lent: Option<Lent>,
}

// SAFETY: a buffer is the only user of its memory (its own heap block, or memory lent to it
// alone), and lent memory is given back through a `Release` that any thread may call
// (`from_foreign`'s contract).
unsafe impl Send for PacketBuf {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for PacketBuf {}

/// Heap buffers start on a cache line, as a DPDK mbuf's data room does, so that a frame at
/// [`HEADROOM`] has its first 64 bytes (every IPv4 header the pipeline reads) in one line.
const HEAP_ALIGN: usize = 64;

fn heap_layout(capacity: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(capacity, HEAP_ALIGN).expect("a buffer's size fits a layout")
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        match self.lent {
            // SAFETY: the handle was lent to this buffer and has not been given back.
            Some(lent) => unsafe { (lent.release)(lent.handle) },
            // SAFETY: heap memory of `capacity` bytes comes from `heap`, with this layout.
            None if self.capacity > 0 => unsafe {
                std::alloc::dealloc(self.data.as_ptr(), heap_layout(self.capacity))
            },
            None => {}
        }
    }
}

impl Clone for PacketBuf {
    /// A heap copy of the whole data area, with the same start and end.
    fn clone(&self) -> PacketBuf {
        let mut copy = PacketBuf::heap(self.capacity);
        copy.whole_mut().copy_from_slice(self.whole());
        copy.start = self.start;
        copy.end = self.end;
        copy
    }
}

impl PartialEq for PacketBuf {
    /// The same packet bytes behind the same headroom.
    fn eq(&self, other: &PacketBuf) -> bool {
        self.start == other.start && self.as_slice() == other.as_slice()
    }
}

impl Eq for PacketBuf {}

impl core::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("headroom", &self.start)
            .field("len", &self.len())
            .field("lent", &self.lent.is_some())
            .finish()
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        PacketBuf::new()
    }
}

impl PacketBuf {
    /// An empty buffer of [`DEFAULT_CAPACITY`] bytes with [`HEADROOM`] bytes of headroom.
    pub fn new() -> PacketBuf {
        PacketBuf::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty buffer of `capacity` bytes (at least `HEADROOM + 64`) with [`HEADROOM`]
    /// bytes of headroom.
    pub fn with_capacity(capacity: usize) -> PacketBuf {
        PacketBuf::heap(capacity.max(HEADROOM + 64))
    }

    /// A buffer with no memory at all: what a driver leaves in a slot whose packet it took.
    /// Nothing fits in it; it costs no allocation.
    pub fn empty() -> PacketBuf {
        PacketBuf::heap(0)
    }

    fn heap(capacity: usize) -> PacketBuf {
        let data = if capacity == 0 {
            NonNull::dangling()
        } else {
            let layout = heap_layout(capacity);
            // SAFETY: the layout's size is not zero.
            let p = unsafe { std::alloc::alloc_zeroed(layout) };
            NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
        };
        let start = HEADROOM.min(capacity);
        PacketBuf { data, capacity, start, end: start, lent: None }
    }

    /// A buffer over memory lent by a port driver: `capacity` bytes at `data`, the packet
    /// at `start..end`. Dropping the buffer calls `release(handle)`;
    /// [`take_foreign`](Self::take_foreign) hands the memory on instead.
    ///
    /// # Safety
    /// `data` must be valid for reads and writes of `capacity` bytes, and used by nothing
    /// else, until `release(handle)` is called or the memory is taken back with
    /// `take_foreign`; `start <= end <= capacity`; `release` may be called from any thread.
    #[inline]
    pub unsafe fn from_foreign(
        data: NonNull<u8>,
        capacity: usize,
        start: usize,
        end: usize,
        handle: NonNull<c_void>,
        release: Release,
    ) -> PacketBuf {
        debug_assert!(start <= end && end <= capacity);
        PacketBuf { data, capacity, start, end, lent: Some(Lent { handle, release }) }
    }

    /// Whether the memory is lent by a driver.
    #[inline]
    pub fn is_foreign(&self) -> bool {
        self.lent.is_some()
    }

    /// The handle lent memory came with, which stays lent.
    #[inline]
    pub fn foreign_handle(&self) -> Option<NonNull<c_void>> {
        self.lent.map(|l| l.handle)
    }

    /// Gives lent memory back to the caller without releasing it: returns the handle it
    /// came with and the packet's start and length, and leaves this buffer
    /// [`empty`](Self::empty). A heap buffer returns `None` and stays as it is.
    #[inline]
    pub fn take_foreign(&mut self) -> Option<(NonNull<c_void>, usize, usize)> {
        let lent = self.lent.take()?;
        let taken = (lent.handle, self.start, self.len());
        self.data = NonNull::dangling();
        self.capacity = 0;
        self.start = 0;
        self.end = 0;
        Some(taken)
    }

    #[inline]
    fn whole(&self) -> &[u8] {
        // SAFETY: `data` is valid for `capacity` bytes while the buffer lives.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), self.capacity) }
    }

    #[inline]
    fn whole_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `whole`, and the buffer is its memory's only user.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), self.capacity) }
    }

    /// A buffer holding a copy of `frame` after [`HEADROOM`] bytes (for tests and captures).
    pub fn from_frame(frame: &[u8]) -> PacketBuf {
        let mut buf = PacketBuf::with_capacity(HEADROOM + frame.len().max(64) + 64);
        buf.set_frame(frame).expect("sized for the frame");
        buf
    }

    /// Replaces the packet with a copy of `frame`, after [`HEADROOM`] bytes. Fails, keeping
    /// the buffer as it was, when the frame does not fit.
    pub fn set_frame(&mut self, frame: &[u8]) -> Result<(), TooLong> {
        if HEADROOM + frame.len() > self.capacity {
            return Err(TooLong);
        }
        self.start = HEADROOM;
        self.end = HEADROOM + frame.len();
        let (start, end) = (self.start, self.end);
        self.whole_mut()[start..end].copy_from_slice(frame);
        Ok(())
    }

    /// Empties the buffer and restores the full headroom.
    pub fn clear(&mut self) {
        self.start = HEADROOM.min(self.capacity);
        self.end = self.start;
    }

    /// The packet's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `start <= end <= capacity` always holds, and the memory is valid.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr().add(self.start), self.end - self.start) }
    }

    /// The packet's bytes, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the buffer is its memory's only user.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr().add(self.start), self.end - self.start) }
    }

    /// The packet's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the buffer holds no packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Asks the CPU for the cache lines of the packet's first 68 bytes (the headers the
    /// pipeline reads: Ethernet, IPv6 and a TCP header's flags) and of the 34 bytes in front
    /// of it, where a tunnel's headers go, wherever the lines fall: a hint, for frames that
    /// a NIC's DMA left in memory rather than in a cache.
    #[inline(always)]
    pub fn prefetch_headers(&self) {
        let p = self.data.as_ptr().wrapping_add(self.start);
        crate::prefetch(p.wrapping_sub(34));
        crate::prefetch(p);
        crate::prefetch(p.wrapping_add(67));
    }

    /// Bytes free in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.capacity - self.end
    }

    /// The whole data area's size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Grows the packet by `n` bytes at the front and returns the whole packet, or `None`
    /// (changing nothing) when the headroom is short.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(self.as_mut_slice())
    }

    /// Drops `n` bytes from the front (at most the packet's length).
    #[inline]
    pub fn adj(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// Cuts the packet to `len` bytes (no-op when it is shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    /// Keeps bytes `from..from + len` of the packet and grows `header` bytes in front of
    /// them: one step for taking a frame's L2 header and padding off and putting a tunnel's
    /// headers on. Returns the `N` bytes that end where the kept bytes begin, to be written:
    /// the new header is their last `header` bytes, the rest lies in the headroom, outside
    /// the packet (so that headers of several sizes are written with one copy of `N`
    /// bytes). `None`, changing nothing, when the packet is shorter, `header` is more than
    /// `N`, or the room in front of the kept bytes is short of `N`.
    #[inline]
    pub fn reframe<const N: usize>(
        &mut self,
        from: usize,
        len: usize,
        header: usize,
    ) -> Option<&mut [u8; N]> {
        let at = self.start + from;
        if from.saturating_add(len) > self.len() || header > N || at < N {
            return None;
        }
        self.end = at + len;
        self.start = at - header;
        self.whole_mut().get_mut(at - N..at)?.try_into().ok()
    }

    /// Grows the packet by `n` bytes at the back and returns the whole packet, or `None`
    /// when the tailroom is short.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        self.end += n;
        Some(self.as_mut_slice())
    }
}

/// A frame longer than the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl core::fmt::Display for TooLong {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("frame longer than the packet buffer")
    }
}

impl std::error::Error for TooLong {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_frames_start_on_a_cache_line() {
        for b in [PacketBuf::new(), PacketBuf::with_capacity(9000), PacketBuf::from_frame(&[1; 60])] {
            assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
        }
        let copy = PacketBuf::from_frame(&[7; 60]).clone();
        assert_eq!((copy.as_slice().as_ptr() as usize % 64, copy.as_slice()), (0, &[7u8; 60][..]));
    }

    #[test]
    fn prepend_adj_truncate() {
        let mut b = PacketBuf::from_frame(&[1, 2, 3, 4]);
        assert_eq!(b.headroom(), HEADROOM);
        b.prepend(2).unwrap()[..2].copy_from_slice(&[9, 8]);
        assert_eq!(b.as_slice(), &[9, 8, 1, 2, 3, 4]);
        b.adj(3);
        assert_eq!(b.as_slice(), &[2, 3, 4]);
        b.truncate(2);
        assert_eq!(b.as_slice(), &[2, 3]);
        assert!(b.prepend(HEADROOM + 10).is_none());
        assert_eq!(b.as_slice(), &[2, 3]);
        b.adj(100);
        assert!(b.is_empty());
        let mut small = PacketBuf::with_capacity(0);
        assert_eq!(small.set_frame(&[0; 100]), Err(TooLong));
        let mut none = PacketBuf::empty();
        assert_eq!(none.set_frame(&[0]), Err(TooLong));
        assert!(none.prepend(1).is_none() && none.is_empty() && none.take_foreign().is_none());
    }

    #[test]
    fn reframe_cuts_and_grows_in_one_step() {
        let mut b = PacketBuf::from_frame(&[1, 2, 3, 4, 5, 6]);
        assert!(b.reframe::<4>(2, 5, 1).is_none(), "past the end");
        assert!(b.reframe::<{ HEADROOM + 3 }>(2, 3, 1).is_none(), "more than the room in front");
        assert!(b.reframe::<4>(2, 3, 5).is_none(), "a header longer than the block");
        assert_eq!(b.as_slice(), &[1, 2, 3, 4, 5, 6], "unchanged when refused");
        // A 4-byte header written with a 6-byte block: its first two bytes land in the
        // headroom, outside the packet.
        *b.reframe::<6>(2, 3, 4).unwrap() = [7, 7, 9, 9, 9, 9];
        assert_eq!(b.as_slice(), &[9, 9, 9, 9, 3, 4, 5]);
        assert_eq!(b.headroom(), HEADROOM - 2);
    }

    static RELEASED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    unsafe fn release_block(handle: NonNull<c_void>) {
        // SAFETY: the tests lend boxed 256-byte blocks.
        drop(unsafe { Box::from_raw(handle.as_ptr().cast::<[u8; 256]>()) });
        RELEASED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn lend() -> PacketBuf {
        let block = Box::into_raw(Box::new([7u8; 256]));
        let data = NonNull::new(block.cast::<u8>()).unwrap();
        // SAFETY: the block is ours alone until released.
        unsafe { PacketBuf::from_foreign(data, 256, 128, 138, data.cast(), release_block) }
    }

    #[test]
    fn lent_memory_goes_back_once() {
        let before = RELEASED.load(std::sync::atomic::Ordering::SeqCst);
        let mut b = lend();
        assert!(b.is_foreign());
        assert_eq!((b.headroom(), b.len(), b.tailroom()), (128, 10, 118));
        b.prepend(20).unwrap()[0] = 1;
        let copy = b.clone();
        assert!(!copy.is_foreign());
        assert_eq!(copy, b);
        drop(b);
        assert_eq!(RELEASED.load(std::sync::atomic::Ordering::SeqCst), before + 1);

        let mut c = lend();
        let (handle, start, len) = c.take_foreign().unwrap();
        assert_eq!((start, len), (128, 10));
        assert!(!c.is_foreign() && c.capacity() == 0);
        drop(c);
        assert_eq!(RELEASED.load(std::sync::atomic::Ordering::SeqCst), before + 1, "taken, not released");
        // SAFETY: handed back to us by take_foreign.
        unsafe { release_block(handle) };
    }
}
