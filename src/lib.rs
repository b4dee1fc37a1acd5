//! `noctua`: a peer-to-peer, end-to-end encrypted chat node, as a library.
//!
//! The binary is a thin `main` over [`main`]. The pieces are usable on their own:
//!
//! - [`node`]: one libp2p swarm with the `noctua-chat` protocol and its event loop. It
//!   takes [`node::Command`]s down one bounded channel and reports [`node::Output`]s up
//!   another; it prints nothing and knows no face.
//! - [`face`]: what people and scripts see: the terminal, and headless JSON whose schema
//!   is [`face::headless::Event`].
//! - [`connstr`]: connection strings (`host:port:secret`, pinned `host:port:secret:PEERID`).
//! - [`profile`]: `--profile`: an identity, secret and known peers kept between runs.
//! - [`trust`]: the known peers, pinned on first use (pure).
//! - [`lab`]: many nodes on one machine, each in its own network namespace, driven
//!   headless (`noctua lab` and the multi-node tests).
//! - [`cli`]: the command line; [`config`]: its defaults from a config file.
//!
//! Data flows one way: transport -> `noctua-chat` behaviour -> node event loop -> face.
//! Nothing here touches keys or nonces.

#![warn(missing_docs, unreachable_pub)]

mod app;
pub mod cli;
pub mod config;
pub mod connstr;
pub mod face;
pub mod lab;
mod labcli;
mod logging;
pub mod node;
pub mod profile;
pub mod sanitize;
pub mod trust;

pub use app::{RunError, SecretFileError, main};
pub use logging::LogError;
