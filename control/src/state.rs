//! The state file: the operator's overrides (drains, weights, the appliance's drain), kept
//! across restarts.
//!
//! A drain that a crash forgets sends new flows back to the backend the operator took out;
//! so every change of the overrides is written here, and synced, before it is applied and
//! acknowledged, and `vipgate run` restores it at start. One file may serve several
//! appliances on one host (the default path is shared): it holds one entry per config
//! file, keyed by the config's absolute path, and every write takes an exclusive lock on
//! `STATE.lock`, reads the file, replaces its own entry and renames a complete new file
//! over the old one. A reader therefore sees the old file or the new one, never half.
//!
//! The entry also records the running appliance's operator socket, so that `vipgate ctl
//! --config FILE` finds it after the file's `[control] socket` has changed.
//!
//! A file that cannot be read or parsed is an error that names it: the start stops rather
//! than forget a drain silently (`vipgate run --discard-state` starts without it).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format's version; a file of another version is refused, not guessed at.
const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    /// By the config file's absolute path.
    appliances: BTreeMap<String, Entry>,
}

/// One appliance's saved state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The operator socket of the appliance that wrote the entry last.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Its process id.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Backends drained by the operator (`192.0.2.11`, `192.0.2.11:8080`).
    #[serde(default)]
    pub drained: Vec<String>,
    /// Backends whose weight the operator set.
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// Whether the operator drained the whole appliance (its routes withdrawn).
    #[serde(default)]
    pub appliance_drained: bool,
}

/// The state file of one appliance.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    key: String,
}

/// The key of `config` in a state file: its absolute path, symbolic links resolved where
/// the file exists.
pub fn key_of(config: &Path) -> String {
    let abs = std::fs::canonicalize(config).unwrap_or_else(|_| {
        std::env::current_dir().map_or_else(|_| config.to_path_buf(), |d| d.join(config))
    });
    abs.display().to_string()
}

impl StateFile {
    /// The state of the appliance running `config`, kept at `path`.
    pub fn new(path: &Path, config: &Path) -> StateFile {
        StateFile { path: path.to_path_buf(), key: key_of(config) }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This appliance's entry: `None` when the file or the entry does not exist; an
    /// error naming the file when it cannot be read or is not a state file.
    pub fn load(&self) -> Result<Option<Entry>, String> {
        Ok(read(&self.path)?.appliances.remove(&self.key))
    }

    /// Replaces this appliance's entry (`None` removes it), durably, before returning.
    pub fn save(&self, entry: Option<&Entry>) -> Result<(), String> {
        let what = |e: std::io::Error| format!("state file {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(what)?;
        }
        let lock_path = lock_path(&self.path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("state file lock {}: {e}", lock_path.display()))?;
        // SAFETY: flock on a descriptor this function owns for the call's whole length; the
        // lock goes with the descriptor when `lock` is dropped.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(what(std::io::Error::last_os_error()));
        }
        let mut file = read(&self.path)?;
        match entry {
            Some(e) => {
                file.appliances.insert(self.key.clone(), e.clone());
            }
            None => {
                file.appliances.remove(&self.key);
            }
        }
        file.version = VERSION;
        let text = serde_json::to_string_pretty(&file).map_err(|e| format!("state file: {e}"))?;
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(what)
    }
}

impl StateFile {
    /// Starts without the saved state: removes this appliance's entry, or, when the file
    /// cannot be read, moves it aside (to `STATE.discarded-SECONDS`) so that later
    /// writes can go on. Returns what it did, for the log.
    pub fn discard(&self) -> Result<String, String> {
        match read(&self.path) {
            Ok(f) if !f.appliances.contains_key(&self.key) => {
                Ok(format!("state file {}: nothing saved for this config", self.path.display()))
            }
            Ok(_) => {
                self.save(None)?;
                Ok(format!("state file {}: this config's saved overrides discarded", self.path.display()))
            }
            Err(e) => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut aside = self.path.as_os_str().to_owned();
                aside.push(format!(".discarded-{secs}"));
                std::fs::rename(&self.path, &aside)
                    .map_err(|r| format!("{e}; and it cannot be moved aside: {r}"))?;
                Ok(format!("{e}; moved aside to {}", Path::new(&aside).display()))
            }
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn read(path: &Path) -> Result<File, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(format!("state file {}: cannot read it: {e}", path.display())),
    };
    let file: File = serde_json::from_str(&text)
        .map_err(|e| format!("state file {}: not a vipgate state file: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "state file {}: version {} (this vipgate reads version {VERSION})",
            path.display(),
            file.version
        ));
    }
    Ok(file)
}

/// The socket that the appliance running `config` recorded in the state file at `path`.
pub fn recorded_socket(path: &Path, config: &Path) -> Option<PathBuf> {
    read(path).ok()?.appliances.remove(&key_of(config))?.socket
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vipgate-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn entries_of_two_appliances_live_side_by_side_and_survive_a_reread() {
        let d = dir("two");
        let path = d.join("state.json");
        let a = StateFile::new(&path, &d.join("a.toml"));
        let b = StateFile::new(&path, &d.join("b.toml"));
        assert_eq!(a.load(), Ok(None), "no file yet");
        let ea = Entry { drained: vec!["192.0.2.11".into()], ..Entry::default() };
        let eb = Entry { weights: [("192.0.2.21".to_string(), 30)].into(), ..Entry::default() };
        a.save(Some(&ea)).unwrap();
        b.save(Some(&eb)).unwrap();
        assert_eq!(a.load(), Ok(Some(ea)));
        assert_eq!(b.load(), Ok(Some(eb.clone())));
        a.save(None).unwrap();
        assert_eq!(a.load(), Ok(None));
        assert_eq!(b.load(), Ok(Some(eb)), "removing one entry keeps the other");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_an_error_that_names_it() {
        let d = dir("corrupt");
        let path = d.join("state.json");
        let s = StateFile::new(&path, &d.join("a.toml"));
        std::fs::write(&path, "{\"version\":1,\"appliances\":{").unwrap();
        let e = s.load().unwrap_err();
        assert!(e.contains(&path.display().to_string()) && e.contains("not a vipgate state file"), "{e}");
        assert!(s.save(Some(&Entry::default())).is_err(), "a corrupt file is not overwritten blindly");
        std::fs::write(&path, "{\"version\":7,\"appliances\":{}}").unwrap();
        assert!(s.load().unwrap_err().contains("version 7"));
        let _ = std::fs::remove_dir_all(d);
    }
}
