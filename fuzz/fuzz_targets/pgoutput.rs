//! Any bytes handed to the pgoutput decoder give a message or an error, never a panic, and
//! never read past the input — read as a message outside a stream block (protocol 1 and 2's
//! control messages) and as one inside a block (protocol 2, xid-prefixed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    match philotes_pgoutput::decode(&bytes) {
        // Formatting walks every field the decoder produced.
        Ok(msg) => drop(format!("{msg:?}")),
        // An error always says what was wrong.
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let streamed = philotes_pgoutput::decode_streamed(&bytes);
    match &streamed {
        Ok(msg) => drop(format!("{msg:?}")),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // The cheap peek agrees with the full decode.
    if let Ok((xid, _)) = streamed {
        assert!(philotes_pgoutput::is_streamed_change(data));
        assert_eq!(philotes_pgoutput::streamed_xid(&bytes).ok(), Some(xid));
    }
});
