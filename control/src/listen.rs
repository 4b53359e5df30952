//! What the operator socket and the metrics endpoint share so that their clients cannot
//! take the appliance's operator channels down: a cap on connections open at once, a
//! deadline on each request, and an accept loop that rides out a shortage of descriptors.
//!
//! - A connection over the cap is accepted and closed at once, with a one-line answer
//!   when the socket takes it without waiting, and counted.
//! - A request must arrive whole within its deadline ([`DeadlineReader`]): a client that
//!   sends one byte every two seconds, or nothing, is closed, and its thread and
//!   descriptor are free again.
//! - When `accept` fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
//!   ENOMEM), the loop waits before trying again instead of spinning, and says so in the
//!   log at most every 10 s; the connections already open finish, which frees some. No
//!   error ends the loop.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the accept loop waits after running out of descriptors.
const SHORTAGE_PAUSE: Duration = Duration::from_millis(100);

/// Connections open at once, up to a cap.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<AtomicUsize>,
    cap: usize,
}

/// A connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate for `cap` connections.
    pub fn new(cap: usize) -> Gate {
        Gate { open: Arc::new(AtomicUsize::new(0)), cap }
    }

    /// A place, or `None` when `cap` connections are open.
    pub fn enter(&self) -> Option<Ticket> {
        let mut n = self.open.load(Ordering::Acquire);
        loop {
            if n >= self.cap {
                return None;
            }
            match self.open.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Ticket(Arc::clone(&self.open))),
                Err(now) => n = now,
            }
        }
    }
}

/// Whether an error is a shortage of descriptors or memory on this host.
pub fn is_shortage(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Accepts connections for as long as the process runs: each one under the cap goes to
/// `serve` on a thread of its own (named `name`), each one over it to `refuse` (and
/// `refused` counts it). `accept` failing never ends the loop (the operator's channel must
/// not go away for a burst of errors): it waits, 100 ms after a shortage of descriptors
/// or memory, and up to a second as other errors repeat, and says so in the log at most
/// every 10 s.
pub fn accept_loop<S: Send + 'static>(
    name: &'static str,
    mut accept: impl FnMut() -> io::Result<S>,
    gate: &Gate,
    refused: &'static AtomicU64,
    serve: impl Fn(S) + Send + Sync + Clone + 'static,
    refuse: impl Fn(S),
) {
    let mut last_said: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let stream = match accept() {
            Ok(s) => {
                failures = 0;
                s
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted =>
            {
                continue
            }
            Err(e) => {
                let pause = if is_shortage(&e) {
                    SHORTAGE_PAUSE
                } else {
                    failures = failures.saturating_add(1);
                    Duration::from_millis(10 << failures.min(7)).min(Duration::from_secs(1))
                };
                if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    log::error!("{name}: cannot accept a connection ({e}); trying again in {pause:?}");
                    last_said = Some(Instant::now());
                }
                std::thread::sleep(pause);
                continue;
            }
        };
        let Some(ticket) = gate.enter() else {
            refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            continue;
        };
        let serve = serve.clone();
        let spawned = std::thread::Builder::new().name(name.into()).stack_size(256 * 1024).spawn(move || {
            let _ticket = ticket;
            serve(stream);
        });
        if spawned.is_err() {
            refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A reader that gives up at a deadline: before every read it sets the stream's read
/// timeout to what is left, and once nothing is left it fails with `TimedOut`. Unlike a
/// read timeout alone, a client that trickles a byte at a time cannot hold it past the
/// deadline. It reads through a shared reference, so that the same descriptor serves the
/// answers (one descriptor a connection, not two).
pub struct DeadlineReader<'a, S> {
    stream: &'a S,
    deadline: Instant,
    set_timeout: fn(&S, Option<Duration>) -> io::Result<()>,
}

impl<'a, S> DeadlineReader<'a, S> {
    /// Reads `stream` until `deadline`; `set_timeout` is the stream's `set_read_timeout`.
    pub fn new(
        stream: &'a S,
        deadline: Instant,
        set_timeout: fn(&S, Option<Duration>) -> io::Result<()>,
    ) -> Self {
        DeadlineReader { stream, deadline, set_timeout }
    }

    /// Moves the deadline (for the next request on the same connection).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl<'a, S> Read for DeadlineReader<'a, S>
where
    &'a S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the request's deadline passed"));
        }
        (self.set_timeout)(self.stream, Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_gate_holds_its_cap_and_gives_places_back() {
        let g = Gate::new(2);
        let a = g.enter().unwrap();
        let _b = g.enter().unwrap();
        assert!(g.enter().is_none());
        drop(a);
        assert!(g.enter().is_some());
    }

    #[test]
    fn a_trickling_client_meets_the_deadline() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..20 {
                if theirs.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let start = Instant::now();
        let mut r =
            DeadlineReader::new(&ours, start + Duration::from_millis(300), UnixStream::set_read_timeout);
        let mut all = Vec::new();
        let err = r.read_to_end(&mut all).unwrap_err();
        assert!(matches!(err.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
        assert!(!all.is_empty() && all.len() < 20, "{} bytes", all.len());
        drop(ours);
        writer.join().unwrap();
    }
}
