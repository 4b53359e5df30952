//! `vipgate`: the command line.

use std::process::ExitCode;

use clap::Parser;
use vipgate_control::cli::{Cli, Command};
use vipgate_control::config::Config;
use vipgate_control::{build, diff, replay};
use vipgate_engine::pipeline::PipelineOptions;

/// Log records to standard error, one line each.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("vipgate: {}: {}", record.level().as_str().to_lowercase(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn log_level(arg: Option<&str>) -> Result<log::LevelFilter, String> {
    let text = match arg {
        Some(a) => a.to_string(),
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.is_empty() => v,
            _ => return Ok(log::LevelFilter::Info),
        },
    };
    text.parse()
        .map_err(|_| format!("log level \"{text}\" is not one of error, warn, info, debug, trace, off"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    match &cli.command {
        Command::Run(args) => {
            match log_level(args.log_level.as_deref()) {
                Ok(l) => log::set_max_level(l),
                Err(e) => {
                    eprintln!("vipgate run: {e}");
                    return ExitCode::from(2);
                }
            }
            let options = vipgate_control::appliance::RunOptions { discard_state: args.discard_state };
            match vipgate_control::appliance::run(&args.config, options) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vipgate run: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Ctl(args) => run_ctl(args),
        Command::Table(args) => run_table(args),
        Command::Bench(args) => run_bench(args),
        Command::SetBackend(args) => run_set_backend(args),
        Command::Check(args) => check(&args.config),
        Command::Replay(args) => run_replay(args),
        Command::Diff { old, new, json } => run_diff(old, new, *json),
        Command::Demo { packets } => match vipgate_control::demo::run(*packets) {
            Ok(report) => {
                print!("{}", vipgate_control::demo::to_text(&report));
                if vipgate_control::demo::verdict(&report).1 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("vipgate demo: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        eprintln!("{}: {} error(s); nothing applied", path.display(), errors.0.len());
        ExitCode::from(1)
    })
}

/// The config at `path` and its snapshot, or the exit code after saying why not.
fn load_snapshot(
    cmd: &str,
    path: &std::path::Path,
) -> Result<(Config, vipgate_engine::table::Snapshot), ExitCode> {
    let config = load(path)?;
    match build::snapshot(&config, 1) {
        Ok(s) => Ok((config, s)),
        Err(e) => {
            eprintln!("vipgate {cmd}: {}: {e}", path.display());
            Err(ExitCode::from(1))
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match build::snapshot(&config, 1) {
        Ok(snap) => {
            let backends: usize = config.vips.iter().map(|v| v.backends.len()).sum();
            println!(
                "{}: ok ({} subnets, {} VIPs, {} backends in {} pools)",
                path.display(),
                config.subnets.len(),
                config.vips.len(),
                backends,
                snap.pools().len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

fn run_replay(args: &vipgate_control::cli::ReplayArgs) -> ExitCode {
    let (config, snap) = match load_snapshot("replay", &args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if args.workers == 0 || args.workers > 1024 {
        eprintln!("vipgate replay: --workers {} is out of range 1..=1024", args.workers);
        return ExitCode::from(1);
    }
    let options =
        PipelineOptions { flow_capacity: config.engine.flow_capacity, ..PipelineOptions::default() };
    match replay::replay(&snap, options, args.workers, &args.input, &args.output, args.drops.as_deref()) {
        Ok(summary) => {
            println!("{}", replay::to_json(&summary, args.workers));
            let other_mac = summary.counters.drop_count(vipgate_engine::counters::DropReason::OtherMac);
            if summary.packets > 0 && other_mac * 2 > summary.packets {
                let mac = config.ports.first().map_or("02:00:00:00:00:01".to_string(), |p| p.mac.to_string());
                eprintln!(
                    "vipgate replay: {other_mac} of {} frames were for another MAC address than the port's \
                     ({mac}); set [[port]] mac to the destination MAC of the capture",
                    summary.packets
                );
            }
            if summary.truncated > 0 {
                eprintln!(
                    "vipgate replay: {} of {} frames were captured short of their length on the wire \
                     (the capture's snap length); the engine saw only what was captured, and a packet \
                     cut inside its headers drops as malformed: capture with tcpdump -s 0",
                    summary.truncated, summary.packets
                );
            }
            if summary.not_received > 0 {
                eprintln!(
                    "vipgate replay: skipped {} that the capture says the capturing host sent, or saw \
                     for other hosts (a port does not receive them); they are counted as \
                     not_received, outside packets",
                    match summary.not_received {
                        1 => "1 packet".to_string(),
                        n => format!("{n} packets"),
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vipgate replay: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_diff(old: &std::path::Path, new: &std::path::Path, json: bool) -> ExitCode {
    let (old_cfg, new_cfg) = match (load(old), load(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let build = |c: &Config, path: &std::path::Path| {
        build::snapshot(c, 1).map_err(|e| {
            eprintln!("vipgate diff: {}: {e}", path.display());
            ExitCode::from(1)
        })
    };
    let (a, b) = match (build(&old_cfg, old), build(&new_cfg, new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let changes = diff::diff(&a, &b);
    if json {
        println!("{}", diff::to_json(&changes));
    } else {
        print!("{}", diff::to_text(&changes));
    }
    ExitCode::SUCCESS
}

fn run_ctl(args: &vipgate_control::cli::CtlArgs) -> ExitCode {
    use vipgate_control::ctl;
    let flags =
        ctl::CtlFlags { allow_removals: args.allow_removals, dry_run: args.dry_run, force: args.force };
    let scope = ctl::CtlScope { vip: args.vip.clone(), udp_window: args.udp_window.clone() };
    let request = match ctl::request_of(&args.command, flags, &scope) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vipgate ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = match (&args.socket, &args.config) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => match ctl::find_socket(c) {
            Ok((socket, note)) => {
                if let Some(n) = note {
                    eprintln!("vipgate ctl: {n}");
                }
                socket
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                eprintln!("vipgate ctl: {}: cannot find the appliance's socket in it", c.display());
                return ExitCode::from(1);
            }
        },
        (None, None) => std::path::PathBuf::from(vipgate_control::config::DEFAULT_SOCKET),
    };
    match ctl::call(&socket, &request.to_json()) {
        Ok(answer) => {
            let ok = answer["ok"].as_bool() == Some(true);
            if args.json {
                println!("{answer}");
            } else if ok {
                print!("{}", ctl::to_text(request.name(), &answer));
            }
            if let Some(w) = answer["warning"].as_str() {
                eprintln!("vipgate ctl: warning: {w}");
            }
            if !ok {
                eprintln!(
                    "vipgate ctl: {}",
                    answer["error"].as_str().unwrap_or("the engine reported an error")
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vipgate ctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_table(args: &vipgate_control::cli::TableArgs) -> ExitCode {
    use vipgate_control::ctl;
    let (_, snap) = match load_snapshot("table", &args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let vips: Vec<usize> = match &args.vip {
        Some(v) => match ctl::find_vip(&snap, v) {
            Ok(i) => vec![i],
            Err(e) => {
                eprintln!("vipgate table: {e}");
                return ExitCode::from(1);
            }
        },
        None => (0..snap.vips().len()).collect(),
    };
    let tables: Vec<_> = vips.iter().map(|&i| ctl::table(&snap, i, args.json)).collect();
    if args.json {
        let out = match &tables[..] {
            [one] if args.vip.is_some() => ctl::answer(one),
            all => serde_json::json!({ "vips": all }),
        };
        println!("{out}");
    } else {
        for t in &tables {
            print!("{}", t.to_text());
        }
    }
    ExitCode::SUCCESS
}

fn run_set_backend(args: &vipgate_control::cli::SetBackendArgs) -> ExitCode {
    use vipgate_control::edit::{set_backend_in_file, BackendChange};
    use vipgate_control::overrides::BackendSelector;
    if args.weight.is_none() && args.state.is_none() {
        eprintln!("vipgate set-backend: give --weight N, --state STATE or both");
        return ExitCode::from(2);
    }
    let sel = match BackendSelector::parse(&args.backend) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vipgate set-backend: {e}");
            return ExitCode::from(2);
        }
    };
    let vip = match args.vip.as_deref().map(vipgate_control::ctl::VipSpec::parse).transpose() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vipgate set-backend: --vip: {e}");
            return ExitCode::from(2);
        }
    };
    let change = BackendChange { weight: args.weight, state: args.state.clone() };
    match set_backend_in_file(&args.config, &sel, vip.as_ref(), &change) {
        Ok(n) => {
            println!("{}: {sel} changed in {n} place(s)", args.config.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vipgate set-backend: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_bench(args: &vipgate_control::cli::BenchArgs) -> ExitCode {
    use std::io::{IsTerminal, Write};
    use vipgate_control::bench::{self, BenchSpec, Workload};
    let fail = |e: String| {
        eprintln!("vipgate bench: {e}");
        ExitCode::from(1)
    };
    let workload = match Workload::parse(&args.workload) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let base = BenchSpec {
        workload,
        flows: args.flows,
        vips: args.vips,
        backends: args.backends,
        workers: args.workers,
        seconds: args.seconds,
        packets: args.packets,
        general_path: args.general_path,
        ipv6: args.ipv6,
        cold_frames: args.cold_frames,
    };
    let specs: Vec<BenchSpec> = match args.sweep.as_deref() {
        None => vec![base],
        Some("flows") => {
            [1_000, 100_000, 1_000_000, 10_000_000].map(|flows| BenchSpec { flows, ..base }).to_vec()
        }
        Some("vips") => [1, 100, 10_000].map(|vips| BenchSpec { vips, ..base }).to_vec(),
        Some("backends") => [2, 100, 1000].map(|backends| BenchSpec { backends, ..base }).to_vec(),
        Some(other) => return fail(format!("--sweep {other}: one of flows, vips, backends")),
    };
    let baseline = match &args.compare {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => Some(v),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        None => None,
    };
    if args.cold_frames && args.driver != "memory" {
        return fail(
            "--cold-frames takes the memory driver (a DPDK device's frames are as cold as it leaves them)"
                .into(),
        );
    }
    #[cfg(feature = "dpdk")]
    let mut dpdk_queue = match args.driver.as_str() {
        "memory" => None,
        "dpdk" => {
            use vipgate_engine::port::dpdk;
            let options = dpdk::DpdkOptions {
                name: "bench".into(),
                args: args.eal.split_whitespace().map(String::from).collect(),
                workers: 1,
                single_queue: false,
                mbufs: None,
            };
            match dpdk::open(&options) {
                Ok((device, mut queues)) => Some((device, queues.remove(0))),
                Err(e) => return fail(format!("--driver dpdk: {e}")),
            }
        }
        other => return fail(format!("--driver {other}: memory or dpdk")),
    };
    #[cfg(not(feature = "dpdk"))]
    match args.driver.as_str() {
        "memory" => {}
        "dpdk" => {
            return fail(
                "--driver dpdk: this build has no dpdk driver (cargo build --release --features dpdk)".into(),
            )
        }
        other => return fail(format!("--driver {other}: memory or dpdk")),
    }
    let show_progress = std::io::stderr().is_terminal() && (args.seconds > 3.0 || specs.len() > 1);
    let mut runs = Vec::new();
    if !args.json {
        println!("{}", bench::TABLE_HEADER);
    }
    for (i, spec) in specs.iter().enumerate() {
        let progress = |share: f64| {
            if show_progress {
                let done = (share * 30.0) as usize;
                eprint!(
                    "\r[{}{}] run {}/{} {:3.0}%",
                    "#".repeat(done),
                    " ".repeat(30 - done),
                    i + 1,
                    specs.len(),
                    share * 100.0
                );
                let _ = std::io::stderr().flush();
            }
        };
        #[cfg(feature = "dpdk")]
        let result = match dpdk_queue.as_mut() {
            Some((_, queue)) => bench::run_dpdk(spec, queue, progress),
            None => bench::run(spec, progress),
        };
        #[cfg(not(feature = "dpdk"))]
        let result = bench::run(spec, progress);
        if show_progress {
            eprint!("\r{}\r", " ".repeat(60));
        }
        let results = match result {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let mut run = bench::to_json(spec, &results);
        run["driver"] = serde_json::Value::from(args.driver.as_str());
        if !args.json {
            let b = baseline.as_ref().and_then(|b| bench::find_baseline(b, &run));
            for row in bench::to_rows(&run, b) {
                println!("{row}");
            }
        }
        runs.push(run);
    }
    if args.json {
        println!("{}", serde_json::json!({ "runs": runs }));
    }
    ExitCode::SUCCESS
}
