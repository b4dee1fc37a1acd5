//! Fuzz target `connstr`: the node's connection-string parser, `noctua::connstr`, from the
//! `noctua` library.
//!
//! Invariants: parsing never panics; an accepted string's `Display` parses back to an equal
//! value and displays the same (it is canonical); its secret satisfies the protocol's
//! `Secret::new`; `dial_addrs` and `Debug` work and `Debug` redacts the secret; an error's
//! `Display` is one non-empty line (no control characters, no U+2028/U+2029).

#![no_main]

use libfuzzer_sys::fuzz_target;

use noctua::connstr::{ConnString, Target};

fn one_line(msg: &str) -> bool {
    !msg.is_empty()
        && !msg
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    match input.parse::<ConnString>() {
        Ok(c) => {
            let shown = c.to_string();
            let again = match shown.parse::<ConnString>() {
                Ok(again) => again,
                Err(e) => panic!("{input:?} parsed, but its Display {shown:?} does not: {e}"),
            };
            assert!(
                again == c,
                "{input:?} -> {shown:?} re-parses differently: {c:?} vs {again:?}"
            );
            assert_eq!(again.to_string(), shown, "Display is not canonical");
            assert!(
                noctua_chat::Secret::new(c.secret.clone()).is_ok(),
                "accepted a secret the protocol refuses: {:?}",
                c.secret
            );
            let addrs = c.dial_addrs();
            match &c.target {
                Target::Host { port, .. } => {
                    assert_ne!(*port, 0);
                    assert_eq!(addrs.len(), 2);
                }
                Target::Multiaddr(m) => assert_eq!(addrs, vec![m.clone()]),
            }
            assert!(format!("{c:?}").contains("redacted"));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(one_line(&msg), "error message is not one line: {msg:?}");
        }
    }
});
