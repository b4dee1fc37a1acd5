//! Fuzz target `session`: the handshake and session state machines of two simulated peers,
//! driven by a list of operations decoded from the input. See `src/session.rs` for the
//! operations and the invariants checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // Generate the two RSA keys before the first input (not counted against it).
        let _ = noctua_fuzz::session::keys();
    },
    |data: &[u8]| noctua_fuzz::session::run(data)
);
