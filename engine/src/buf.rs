//! Packet buffers with headroom.
//!
//! A [`PacketBuf`] owns a fixed block of memory and marks the packet inside it with a start
//! and an end. Encapsulation prepends headers into the headroom before the start, so a
//! packet is never copied to be tunnelled. Buffers are allocated once, when a port or a
//! pool is created, and reused: nothing here allocates per packet.

/// The room kept in front of a received packet, for encapsulation headers.
pub const HEADROOM: usize = 128;

/// The default size of a buffer's data area (headroom included): enough for a 1500-byte
/// MTU frame with VLAN tag plus encapsulation, or a 9000-byte jumbo frame with
/// [`PacketBuf::with_capacity`].
pub const DEFAULT_CAPACITY: usize = 2048;

/// A packet in a buffer with headroom.
#[derive(Clone, PartialEq, Eq)]
pub struct PacketBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl core::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketBuf").field("headroom", &self.start).field("len", &self.len()).finish()
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
        let capacity = capacity.max(HEADROOM + 64);
        PacketBuf { data: vec![0u8; capacity].into_boxed_slice(), start: HEADROOM, end: HEADROOM }
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
        if HEADROOM + frame.len() > self.data.len() {
            return Err(TooLong);
        }
        self.start = HEADROOM;
        self.end = HEADROOM + frame.len();
        self.data[self.start..self.end].copy_from_slice(frame);
        Ok(())
    }

    /// Empties the buffer and restores the full headroom.
    pub fn clear(&mut self) {
        self.start = HEADROOM;
        self.end = HEADROOM;
    }

    /// The packet's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The packet's bytes, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
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

    /// Bytes free in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.data.len() - self.end
    }

    /// The whole data area's size.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Grows the packet by `n` bytes at the front and returns the whole packet, or `None`
    /// (changing nothing) when the headroom is short.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(&mut self.data[self.start..self.end])
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

    /// Grows the packet by `n` bytes at the back and returns the whole packet, or `None`
    /// when the tailroom is short.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        self.end += n;
        Some(&mut self.data[self.start..self.end])
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
    }
}
