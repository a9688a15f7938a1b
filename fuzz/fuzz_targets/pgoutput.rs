//! Any bytes handed to the pgoutput decoder give a message or an error, never a panic, and
//! never read past the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    match philotes_pgoutput::decode(&bytes) {
        Ok(msg) => {
            // Formatting walks every field the decoder produced.
            let _ = format!("{msg:?}");
        }
        Err(e) => {
            // An error always says what was wrong.
            assert!(!e.to_string().is_empty());
        }
    }
});
