//! The operator socket's requests, typed: what `vipgate ctl` sends and what the control
//! thread answers ([`crate::answer`] has the answers, [`crate::ctl`] the socket and the
//! client).
//!
//! On the wire a request is one JSON object per line, its command in `"cmd"` and its
//! arguments beside it (`{"cmd":"drain","backend":"192.0.2.11","vip":"udp://203.0.113.10:8000"}`),
//! which is how [`CtlRequest`] serializes. Parsing is by hand rather than derived, so that a
//! bad request is answered in the operator's terms: what is missing, with an example.

use serde::Serialize;
use serde_json::Value;

/// A request of the operator socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum CtlRequest {
    /// Generation, uptime, workers, busy %, overrides.
    Status,
    /// Every counter: totals, per worker, per VIP and backend.
    Stats,
    /// Re-read the config file.
    Reload {
        /// Only say what a reload would change, refuse, or need a restart for.
        dry_run: bool,
        /// Apply it even though it removes VIPs or subnets, or empties a VIP.
        allow_removals: bool,
    },
    /// No new flows for a backend (in every VIP that lists it, or in `vip`).
    Drain {
        /// `ADDRESS` or `ADDRESS:PORT`.
        backend: String,
        /// The VIP, as an operator names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        vip: Option<String>,
        /// Even though a VIP would keep no backend taking new flows.
        force: bool,
    },
    /// Undo drains and weights of a backend.
    Undrain {
        /// `ADDRESS` or `ADDRESS:PORT`.
        backend: String,
        /// The VIP, as an operator names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        vip: Option<String>,
    },
    /// Another weight for a backend.
    Weight {
        /// `ADDRESS` or `ADDRESS:PORT`.
        backend: String,
        /// The weight.
        weight: u32,
        /// The VIP, as an operator names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        vip: Option<String>,
        /// Even though a VIP would keep no backend taking new flows.
        force: bool,
    },
    /// A VIP's Maglev slots per backend.
    Table {
        /// The VIP, as an operator names it.
        vip: String,
    },
    /// Live flows by state.
    Flows {
        /// UDP flows seen within this long (a duration, "5m") count as recent; the UDP
        /// idle timeout when not given.
        #[serde(skip_serializing_if = "Option::is_none")]
        udp_window: Option<String>,
    },
    /// Withdraw the appliance's routes (with `[bgp]`).
    DrainAppliance,
    /// Announce them again.
    UndrainAppliance,
}

/// Every command's name, as `"cmd"` gives it.
pub const COMMANDS: [&str; 10] = [
    "status",
    "stats",
    "reload",
    "drain",
    "undrain",
    "weight",
    "table",
    "flows",
    "drain-appliance",
    "undrain-appliance",
];

impl CtlRequest {
    /// The command's name, as `"cmd"` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            CtlRequest::Status => "status",
            CtlRequest::Stats => "stats",
            CtlRequest::Reload { .. } => "reload",
            CtlRequest::Drain { .. } => "drain",
            CtlRequest::Undrain { .. } => "undrain",
            CtlRequest::Weight { .. } => "weight",
            CtlRequest::Table { .. } => "table",
            CtlRequest::Flows { .. } => "flows",
            CtlRequest::DrainAppliance => "drain-appliance",
            CtlRequest::UndrainAppliance => "undrain-appliance",
        }
    }

    /// Whether it asks for a change of the running tables (a reload other than a dry run,
    /// a drain, an undrain, a weight): what the appliance logs.
    pub fn changes_tables(&self) -> bool {
        match self {
            CtlRequest::Reload { dry_run, .. } => !dry_run,
            CtlRequest::Drain { .. } | CtlRequest::Undrain { .. } | CtlRequest::Weight { .. } => true,
            _ => false,
        }
    }

    /// The request in a JSON object, or what is wrong with it, in the operator's terms
    /// (extra fields are ignored).
    pub fn from_json(request: &Value) -> Result<CtlRequest, String> {
        let cmd = match request.get("cmd") {
            Some(Value::String(c)) => c.as_str(),
            Some(other) => {
                return Err(format!("a request's \"cmd\" must be a string, e.g. \"status\" (got {other})"))
            }
            None => {
                return Err(format!(
                    "a request is a JSON object with \"cmd\": one of {}",
                    COMMANDS.join(", ")
                ))
            }
        };
        let string = |key: &str, example: &str| string_field(request, cmd, key, example);
        let vip = || optional_string(request, "vip", "203.0.113.10:8000/udp");
        Ok(match cmd {
            "status" => CtlRequest::Status,
            "stats" => CtlRequest::Stats,
            "reload" => CtlRequest::Reload {
                dry_run: flag(request, "dry_run")?,
                allow_removals: flag(request, "allow_removals")?,
            },
            "drain" => CtlRequest::Drain {
                backend: string("backend", "192.0.2.11")?,
                vip: vip()?,
                force: flag(request, "force")?,
            },
            "undrain" => CtlRequest::Undrain { backend: string("backend", "192.0.2.11")?, vip: vip()? },
            "weight" => {
                let backend = string("backend", "192.0.2.11")?;
                let weight = match request.get("weight") {
                    Some(Value::Number(n)) => n.as_u64().and_then(|w| u32::try_from(w).ok()),
                    _ => None,
                };
                let Some(weight) = weight else {
                    return Err("weight needs \"weight\": a whole number, e.g. \"weight\":50".into());
                };
                CtlRequest::Weight { backend, weight, vip: vip()?, force: flag(request, "force")? }
            }
            "table" => CtlRequest::Table { vip: string("vip", "203.0.113.10:8000/udp")? },
            "flows" => CtlRequest::Flows { udp_window: optional_string(request, "udp_window", "5m")? },
            "drain-appliance" => CtlRequest::DrainAppliance,
            "undrain-appliance" => CtlRequest::UndrainAppliance,
            other => return Err(format!("unknown command \"{other}\": one of {}", COMMANDS.join(", "))),
        })
    }

    /// The request as the socket takes it.
    pub fn to_json(&self) -> Value {
        // A derived Serialize of an enum of strings, bools and integers cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The string field `key` of `request`, which `cmd` needs.
fn string_field(request: &Value, cmd: &str, key: &str, example: &str) -> Result<String, String> {
    optional_string(request, key, example)?
        .ok_or_else(|| format!("{cmd} needs \"{key}\", e.g. \"{key}\":\"{example}\""))
}

/// The string field `key` of `request`, if given.
fn optional_string(request: &Value, key: &str, example: &str) -> Result<Option<String>, String> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key} must be a string, e.g. \"{example}\" (got {other})")),
    }
}

/// The boolean field `key` of `request` (false when missing).
fn flag(request: &Value, key: &str) -> Result<bool, String> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("{key} must be true or false (got {other})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_request_goes_through_json_and_back() {
        let all = [
            CtlRequest::Status,
            CtlRequest::Stats,
            CtlRequest::Reload { dry_run: true, allow_removals: false },
            CtlRequest::Drain {
                backend: "192.0.2.11".into(),
                vip: Some("udp://203.0.113.10:8000".into()),
                force: true,
            },
            CtlRequest::Undrain { backend: "192.0.2.11:8080".into(), vip: None },
            CtlRequest::Weight { backend: "192.0.2.11".into(), weight: 7, vip: None, force: false },
            CtlRequest::Table { vip: "203.0.113.10:8000/udp".into() },
            CtlRequest::Flows { udp_window: Some("5m".into()) },
            CtlRequest::DrainAppliance,
            CtlRequest::UndrainAppliance,
        ];
        for (r, name) in all.iter().zip(COMMANDS) {
            assert_eq!(r.name(), name);
            assert_eq!(r.to_json()["cmd"], name);
            assert_eq!(CtlRequest::from_json(&r.to_json()).as_ref(), Ok(r));
        }
        assert_eq!(
            CtlRequest::Drain { backend: "192.0.2.11".into(), vip: None, force: false }.to_json(),
            json!({ "cmd": "drain", "backend": "192.0.2.11", "force": false })
        );
    }

    #[test]
    fn a_bad_request_is_told_what_is_wrong() {
        let err = |v: Value| CtlRequest::from_json(&v).unwrap_err();
        assert!(err(json!({})).contains("\"cmd\": one of status, stats"));
        assert!(err(json!({ "cmd": 5 })).contains("\"cmd\" must be a string"));
        assert!(err(json!({ "cmd": "halt" })).starts_with("unknown command \"halt\""));
        assert_eq!(
            err(json!({ "cmd": "drain" })),
            "drain needs \"backend\", e.g. \"backend\":\"192.0.2.11\""
        );
        assert!(err(json!({ "cmd": "drain", "backend": 5 })).starts_with("backend must be a string"));
        assert!(
            err(json!({ "cmd": "reload", "dry_run": "yes" })).starts_with("dry_run must be true or false")
        );
        assert!(
            err(json!({ "cmd": "weight", "backend": "192.0.2.11", "weight": -1 })).contains("a whole number")
        );
        assert!(err(json!({ "cmd": "weight", "backend": "192.0.2.11", "weight": 1u64 << 32 }))
            .contains("whole number"));
        assert!(err(json!({ "cmd": "flows", "udp_window": 5 })).starts_with("udp_window must be a string"));
        // Extra fields are ignored.
        assert_eq!(CtlRequest::from_json(&json!({ "cmd": "stats", "verbose": true })), Ok(CtlRequest::Stats));
    }
}
