//! The operator socket's request parser on arbitrary lines: a request or an error answer,
//! never a panic; and the client's argument parser on arbitrary words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipgate_control::ctl;

fuzz_target!(|data: &[u8]| {
    match ctl::parse_request(data) {
        Ok(body) => assert!(body.is_object()),
        Err(answer) => assert_eq!(answer["ok"], false),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        let bits = data.first().copied().unwrap_or(0);
        let flags =
            ctl::CtlFlags { allow_removals: bits & 1 != 0, dry_run: bits & 2 != 0, force: bits & 4 != 0 };
        let scope = ctl::CtlScope {
            vip: (bits & 8 != 0).then(|| text.to_string()),
            udp_window: (bits & 16 != 0).then(|| text.to_string()),
        };
        if let Ok(req) = ctl::request_of(&words, flags, &scope) {
            assert!(req["cmd"].is_string());
            assert!(!(req["allow_removals"] == true && req["dry_run"] == true));
        }
    }
});
