//! Captures this test binary's `tracing` output (and `log` records, bridged) in memory, so
//! that tests can assert on what a node logs.
//!
//! A subscriber is global to the process: it is installed once, with the filter of the first
//! caller, and every test of the binary writes into the same buffer. Tests tell their lines
//! apart by an offset taken when they start ([`len`]) and by the ids they contain.

#![allow(dead_code)]

use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn buffer() -> MutexGuard<'static, Vec<u8>> {
    BUFFER.lock().unwrap_or_else(|e| e.into_inner())
}

struct Writer;

impl io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        buffer().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per process) with an `EnvFilter` directive such as
/// `"info,libp2p_swarm=debug"`. Returns whether the capturing subscriber is the global one.
pub fn install(filter: &str) -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .without_time()
            .with_writer(|| Writer)
            .try_init()
            .is_ok()
    })
}

/// Bytes captured so far (an offset for [`since`]).
pub fn len() -> usize {
    buffer().len()
}

/// Everything captured from `offset` on, as text.
pub fn since(offset: usize) -> String {
    let b = buffer();
    String::from_utf8_lossy(&b[offset.min(b.len())..]).into_owned()
}

/// Everything captured from `offset` on, as bytes.
pub fn bytes_since(offset: usize) -> Vec<u8> {
    let b = buffer();
    b[offset.min(b.len())..].to_vec()
}

/// The level of a captured line (`"WARN"`, `"INFO"`, ...), if it starts with one.
pub fn level(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
        .into_iter()
        .find(|l| t.starts_with(l))
}

/// Whether a captured line is a warning or an error.
pub fn is_warning(line: &str) -> bool {
    matches!(level(line), Some("WARN" | "ERROR"))
}
