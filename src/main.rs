//! `noctua`: a peer-to-peer, end-to-end encrypted chat node. This file only reads the
//! command line; [`noctua::main`] does the rest.

use std::process::ExitCode;

fn main() -> ExitCode {
    noctua::main(noctua::cli::Args::from_env())
}
