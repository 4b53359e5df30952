//! The capture reader (pcap and pcapng, of every link type it takes, framed as received by
//! a port) on arbitrary files: records or an error, never a panic; every record within the
//! reader's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipgate_engine::port::pcap;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = pcap::Reader::new(data) else { return };
    let mut reader = reader.receiving_as([0x02, 0, 0, 0, 0, 0x01]);
    while let Ok(Some(record)) = reader.next() {
        assert!(record.data.len() <= pcap::MAX_RECORD);
        assert!(record.orig_len as usize >= record.data.len());
    }
});
