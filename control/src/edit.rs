//! `vipgate set-backend`: changes a backend's weight or state in the config file itself,
//! keeping its comments and layout, so that what an operator did at runtime survives a
//! restart.
//!
//! The new text is validated as a whole (as `vipgate check` would) before it replaces the
//! file, through a temporary file and a rename: a change that would make the config
//! invalid is refused, and the file is never left half-written.

use std::net::IpAddr;
use std::path::Path;

use toml_edit::{DocumentMut, Item, Value};

use crate::config::Config;
use crate::ctl::{protocol_named, VipSpec};
use crate::overrides::BackendSelector;

/// What to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendChange {
    /// The new weight.
    pub weight: Option<u32>,
    /// The new state: active, draining or down.
    pub state: Option<String>,
}

fn backend_id(table: &dyn toml_edit::TableLike) -> Option<(IpAddr, Option<u16>)> {
    let addr = table.get("address")?.as_str()?.parse().ok()?;
    let port = table.get("port").and_then(Item::as_integer).and_then(|p| u16::try_from(p).ok());
    Some((addr, port))
}

/// Applies `change` to every backend `sel` names, in every VIP (or only in the VIPs `vip`
/// names), in the text of a config; returns the new text and how many backends changed.
pub fn set_backend(
    text: &str,
    sel: &BackendSelector,
    vip: Option<&VipSpec>,
    change: &BackendChange,
) -> Result<(String, usize), String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("not TOML: {e}"))?;
    if let Some(s) = &change.state {
        if !["active", "draining", "down"].contains(&s.as_str()) {
            return Err(format!("state \"{s}\" is not one of active, draining, down"));
        }
    }
    let mut changed = 0;
    let Some(vips) = doc.get_mut("vip").and_then(Item::as_array_of_tables_mut) else {
        return Err("the config has no [[vip]]".to_string());
    };
    for table in vips.iter_mut() {
        if let Some(spec) = vip {
            let addr = table.get("address").and_then(Item::as_str).and_then(|a| a.parse::<IpAddr>().ok());
            let port = table.get("port").and_then(Item::as_integer).and_then(|p| u16::try_from(p).ok());
            let protocol = table.get("protocol").and_then(Item::as_str).and_then(|p| protocol_named(p).ok());
            match (addr, protocol) {
                (Some(a), Some(p)) if spec.matches(a, p, port) => {}
                _ => continue,
            }
        }
        let Some(backends) = table.get_mut("backends").and_then(Item::as_array_mut) else { continue };
        for b in backends.iter_mut() {
            let Value::InlineTable(t) = b else { continue };
            let Some((addr, port)) = backend_id(t) else { continue };
            if addr != sel.addr || (sel.port.is_some() && sel.port != port) {
                continue;
            }
            if let Some(w) = change.weight {
                t.insert("weight", i64::from(w).into());
            }
            if let Some(s) = &change.state {
                if s == "active" {
                    t.remove("state");
                } else {
                    t.insert("state", s.as_str().into());
                }
            }
            t.fmt();
            changed += 1;
        }
    }
    if changed == 0 {
        return Err(format!(
            "no backend {sel} in any [[vip]]{}",
            vip.map_or(String::new(), |v| match &v.name {
                Some(n) => format!(" named {n}"),
                None => format!(" at {}", v.addr),
            })
        ));
    }
    Ok((doc.to_string(), changed))
}

/// Changes the config file at `path`: validated in full, then written through a temporary
/// file and a rename. Returns how many backends changed.
pub fn set_backend_in_file(
    path: &Path,
    sel: &BackendSelector,
    vip: Option<&VipSpec>,
    change: &BackendChange,
) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (new, n) = set_backend(&text, sel, vip, change).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::parse(path, &new)
        .map_err(|e| format!("{e}\n{}: not changed: the result would not be valid", path.display()))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".vipgate-tmp.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp_name);
    std::fs::write(&tmp, &new).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# the site
[[vip]]
address = "203.0.113.10"
protocol = "udp"
encap = "ipip"
backends = [
  { address = "192.0.2.11", weight = 100 },  # old site
  { address = "198.51.100.21", weight = 0, state = "draining" },
]

[[vip]]
address = "203.0.113.20"
protocol = "tcp"
encap = "ipip"
backends = [{ address = "198.51.100.21", port = 8080, weight = 5 }]
"#;

    #[test]
    fn changes_every_match_and_keeps_comments() {
        let sel = BackendSelector::parse("198.51.100.21").unwrap();
        let change = BackendChange { weight: Some(100), state: Some("active".into()) };
        let (new, n) = set_backend(TEXT, &sel, None, &change).unwrap();
        assert_eq!(n, 2);
        assert!(new.contains("# the site") && new.contains("# old site"), "{new}");
        assert!(new.contains(r#"{ address = "198.51.100.21", weight = 100 }"#), "{new}");
        assert!(new.contains(r#"{ address = "198.51.100.21", port = 8080, weight = 100 }"#), "{new}");
        let sel = BackendSelector::parse("198.51.100.21:8080").unwrap();
        let change = BackendChange { weight: None, state: Some("draining".into()) };
        let (new, n) = set_backend(TEXT, &sel, None, &change).unwrap();
        assert_eq!(n, 1);
        assert!(
            new.contains(r#"{ address = "198.51.100.21", port = 8080, weight = 5, state = "draining" }"#),
            "{new}"
        );
    }

    #[test]
    fn refuses_unknown_backends_and_states() {
        let sel = BackendSelector::parse("192.0.2.99").unwrap();
        assert!(set_backend(TEXT, &sel, None, &BackendChange::default())
            .unwrap_err()
            .contains("no backend 192.0.2.99"));
        let sel = BackendSelector::parse("192.0.2.11").unwrap();
        let bad = BackendChange { weight: None, state: Some("asleep".into()) };
        assert!(set_backend(TEXT, &sel, None, &bad).unwrap_err().contains("not one of"));
        let other_vip = VipSpec::parse("203.0.113.20").unwrap();
        assert!(set_backend(TEXT, &sel, Some(&other_vip), &BackendChange::default()).is_err());
        // By name: only that VIP.
        let sel = BackendSelector::parse("198.51.100.21").unwrap();
        let change = BackendChange { weight: Some(7), state: None };
        let named = VipSpec::parse("udp://203.0.113.10").unwrap();
        let (new, n) = set_backend(TEXT, &sel, Some(&named), &change).unwrap();
        assert_eq!(n, 1);
        assert!(new.contains(r#"{ address = "198.51.100.21", weight = 7, state = "draining" }"#), "{new}");
        assert!(new.contains(r#"{ address = "198.51.100.21", port = 8080, weight = 5 }"#), "{new}");
        let none = VipSpec::parse("tcp://203.0.113.10").unwrap();
        assert!(set_backend(TEXT, &sel, Some(&none), &change)
            .unwrap_err()
            .contains("named tcp://203.0.113.10"));
    }
}
