//! The operator socket's request parser on arbitrary lines: a request (the same after a
//! trip through the wire format) or an error answer, never a panic; and the client's
//! argument parser on arbitrary words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipgate_control::ctl;

fuzz_target!(|data: &[u8]| {
    match ctl::parse_request(data) {
        // A request says the same after a trip through the wire format.
        Ok(request) => {
            assert_eq!(ctl::CtlRequest::from_json(&request.to_json()), Ok(request));
        }
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
            assert_eq!(req.name(), words[0]);
            assert!(!matches!(req, ctl::CtlRequest::Reload { dry_run: true, allow_removals: true }));
            assert_eq!(ctl::CtlRequest::from_json(&req.to_json()), Ok(req));
        }
    }
});
