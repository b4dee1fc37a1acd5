//! Shared code of the Noctua fuzz targets: the `session` harness (a two-peer simulation
//! driven by an operation list decoded from the fuzz input) and its input encoding, which
//! `examples/gen_seeds.rs` uses to write the committed seeds.

pub mod session;
