//! `vipgate replay`: the real pipeline over a capture, offline.
//!
//! Packets are read in capture order, a burst at a time, and spread over `workers`
//! pipelines by flow ([`Spreader`]), as the runtime spreads them; each worker has its own
//! flow table. The capture's timestamps are the pipeline's clock. What
//! the engine emits (forwarded and answered) goes to the output capture in input order,
//! outer fragments right after their first fragment; dropped packets, as received, to the
//! drops capture. The counters come back summed over workers.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use vipgate_engine::buf::{PacketBuf, HEADROOM};
use vipgate_engine::counters::Counters;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};
use vipgate_engine::port::pcap;
use vipgate_engine::spread::Spreader;
use vipgate_engine::table::Snapshot;

/// Packets handed to the pipeline at once.
const BURST: usize = 32;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input capture.
    #[error("{path}: {source}")]
    Input {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: pcap::PcapError,
    },
    /// An output capture.
    #[error("{path}: {source}")]
    Output {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: pcap::PcapError,
    },
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Records read.
    pub packets: u64,
    /// Records captured short of their length on the wire (the capture's snap length): the
    /// engine sees only the bytes captured.
    pub truncated: u64,
    /// Records of a Linux cooked capture that the capturing host sent, or saw for other
    /// hosts: not what a port receives, so not given to the engine (nor counted in
    /// `packets`).
    pub not_received: u64,
    /// Records written to the output.
    pub written: u64,
    /// Records written to the drops capture.
    pub dropped_written: u64,
    /// The counters, summed over workers.
    pub counters: Counters,
    /// Packets per worker.
    pub per_worker: Vec<u64>,
}

fn out_err(path: &Path) -> impl FnOnce(pcap::PcapError) -> ReplayError + '_ {
    move |source| ReplayError::Output { path: path.to_path_buf(), source }
}

/// How errors name the input `path`.
fn input_name(path: &Path) -> PathBuf {
    if path == Path::new("-") {
        PathBuf::from("standard input")
    } else {
        path.to_path_buf()
    }
}

/// The input capture: the file at `path`, or standard input for `-` (a capture piped
/// from `tcpdump -w -`); a capture without Ethernet headers is framed as received by a port
/// of MAC address `mac`.
fn open_in(path: &Path, mac: [u8; 6]) -> Result<pcap::Reader<BufReader<Box<dyn Read>>>, ReplayError> {
    let input = |source| ReplayError::Input { path: input_name(path), source };
    let f: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(|e| input(e.into()))?)
    };
    Ok(pcap::Reader::new(BufReader::new(f)).map_err(input)?.receiving_as(mac))
}

fn open_out(path: &Path) -> Result<pcap::Writer<BufWriter<File>>, ReplayError> {
    let output = |source| ReplayError::Output { path: path.to_path_buf(), source };
    let f = File::create(path).map_err(|e| output(e.into()))?;
    pcap::Writer::new(BufWriter::new(f)).map_err(output)
}

/// Replays `input` through `workers` pipelines with `snapshot`.
pub fn replay(
    snapshot: &Snapshot,
    options: PipelineOptions,
    workers: usize,
    input: &Path,
    output: &Path,
    drops: Option<&Path>,
) -> Result<ReplaySummary, ReplayError> {
    let workers = workers.max(1);
    let mut reader = open_in(input, snapshot.interface().mac.0)?;
    let mut out = open_out(output)?;
    let mut drop_out = drops.map(open_out).transpose()?;
    let in_err = |source| ReplayError::Input { path: input_name(input), source };

    let mut pipelines: Vec<Pipeline> = (0..workers).map(|_| Pipeline::new(options)).collect();
    let mut summary = ReplaySummary { per_worker: vec![0; workers], ..Default::default() };
    // Buffers big enough for any record, so no capture is cut.
    let capacity = HEADROOM + pcap::MAX_RECORD + 64;
    let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::with_capacity(capacity)).collect();
    let mut originals: Vec<Vec<u8>> = vec![Vec::new(); BURST];
    let mut times = [0u64; BURST];
    let mut verdicts = [Verdict::Forward; BURST];
    let mut spreader = Spreader::new(workers, BURST, capacity);
    let mut extra: Vec<Vec<Vec<u8>>> = vec![Vec::new(); BURST];

    loop {
        let mut n = 0;
        while n < BURST {
            let Some(rec) = reader.next().map_err(in_err)? else { break };
            bufs[n].set_frame(rec.data).expect("buffers hold the largest record");
            originals[n].clear();
            if drop_out.is_some() {
                originals[n].extend_from_slice(rec.data);
            }
            times[n] = rec.time_ns;
            summary.truncated += u64::from(rec.data.len() < rec.orig_len as usize);
            n += 1;
        }
        if n == 0 {
            break;
        }
        summary.packets += n as u64;
        for e in extra[..n].iter_mut() {
            e.clear();
        }
        // The burst's clock: its last packet's capture time (captures are in order).
        let now = times[..n].iter().copied().max().unwrap_or(0);
        spreader.process(&mut pipelines, snapshot, now, &mut bufs[..n], &mut verdicts[..n], |i, f| {
            extra[i].push(f.to_vec())
        });
        for (total, k) in summary.per_worker.iter_mut().zip(spreader.lane_sizes()) {
            *total += k as u64;
        }
        for i in 0..n {
            match verdicts[i] {
                Verdict::Forward | Verdict::Reply | Verdict::TooBigReply => {
                    out.write(times[i], bufs[i].as_slice()).map_err(out_err(output))?;
                    summary.written += 1;
                    for f in &extra[i] {
                        out.write(times[i], f).map_err(out_err(output))?;
                        summary.written += 1;
                    }
                }
                Verdict::Drop(_) => {
                    if let (Some(d), Some(path)) = (drop_out.as_mut(), drops) {
                        d.write(times[i], &originals[i]).map_err(out_err(path))?;
                        summary.dropped_written += 1;
                    }
                }
            }
        }
        if n < BURST {
            break;
        }
    }
    out.finish().map_err(out_err(output))?;
    if let (Some(d), Some(path)) = (drop_out, drops) {
        d.finish().map_err(out_err(path))?;
    }
    summary.not_received = reader.not_received();
    for p in &pipelines {
        summary.counters.add(p.counters());
    }
    Ok(summary)
}

/// The summary as one JSON object.
pub fn to_json(summary: &ReplaySummary, workers: usize) -> String {
    let mut s = String::from("{");
    s.push_str(&format!(
        "\"packets\":{},\"truncated\":{},\"not_received\":{},\"written\":{},\"dropped_written\":{},",
        summary.packets, summary.truncated, summary.not_received, summary.written, summary.dropped_written
    ));
    s.push_str(&format!("\"workers\":{workers},\"per_worker\":["));
    s.push_str(&summary.per_worker.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
    s.push_str("],\"counters\":{");
    let fields: Vec<String> =
        summary.counters.named().into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    s.push_str(&fields.join(","));
    s.push_str("}}");
    s
}
