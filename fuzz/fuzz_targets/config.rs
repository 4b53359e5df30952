//! The config parser and validator on arbitrary text: errors, never a panic; what it
//! accepts builds a snapshot or says why not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipgate_control::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(std::path::Path::new("fuzz.toml"), text) {
        Ok(config) => {
            let _ = vipgate_control::build::snapshot(&config, 1);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                if let Some((line, col)) = e.at {
                    assert!(line >= 1 && col >= 1, "{e}");
                    assert!(line <= text.matches('\n').count() + 1, "{e}");
                }
            }
        }
    }
});
