//! The node's errors, as types: why it could not start, why a command failed, why a
//! connect or a delivery failed. Each `Display` is the one sentence a user reads; the
//! structure stays available to code (tests, faces, automatic reconnection).

use std::error::Error as StdError;
use std::io;

use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId, TransportError};
use noctua_chat::{DeliveryError, OpenError, SecretError, SendError, SessionError};

use crate::node::DIAL_TIMEOUT;

/// A boxed error from libp2p's builder or transports (their types are generic and many).
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The TCP transport (with Noise and Yamux) could not be set up.
    #[error("cannot set up TCP: {0}")]
    Tcp(#[source] BoxError),
    /// The DNS resolver could not be set up.
    #[error("cannot set up DNS: {0}")]
    Dns(#[source] io::Error),
    /// The behaviours could not be built.
    #[error("cannot build the node: {0}")]
    Behaviour(#[source] BoxError),
    /// An address could not be listened on.
    #[error("cannot listen on {address}: {}", first_words(source))]
    ListenOn {
        /// The address.
        address: Multiaddr,
        /// Why.
        #[source]
        source: TransportError<io::Error>,
    },
    /// Another program (or another noctua) holds the port.
    #[error(
        "cannot listen on {0}: address already in use (another program holds that port: pick \
         another one, or leave the port out for a free one)"
    )]
    InUse(Multiaddr),
    /// A listener closed or failed before reporting an address.
    #[error("cannot listen: {0}")]
    Listen(String),
    /// The listeners did not report an address in time.
    #[error("listening did not start within 5 s")]
    ListenTimeout,
}

/// The first non-empty message in an error's chain (some transports' errors render as
/// nothing and keep the reason in their source).
fn first_words(e: &(dyn StdError + 'static)) -> String {
    let mut current = Some(e);
    for _ in 0..32 {
        let Some(err) = current else { break };
        let text = err.to_string();
        if !text.trim().is_empty() {
            return text;
        }
        current = err.source();
    }
    "no reason given".into()
}

/// Why a dial failed, classified once from the transport's error and its
/// [`io::ErrorKind`]: this decides whether another address is worth trying and what the
/// user reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialFailure {
    /// The host actively refused the connection: nothing listens on that port.
    Refused,
    /// No answer within the dial timeout.
    TimedOut,
    /// No route to the host or its network.
    Unreachable,
    /// The host name could not be resolved.
    NameNotResolved,
    /// Something answered, but the encryption handshake of the transport (Noise) failed on
    /// a message that was not valid: not a libp2p peer, or a broken connection. (Two nodes
    /// dialing each other from their listening ports at the same moment used to end here;
    /// the chat behaviour dials from a new port so that this cannot happen.)
    Handshake,
    /// The host accepted the TCP connection but never answered the transport handshake
    /// (a service that is not Noctua, or a stuck process): known by a second, plain TCP
    /// connect that succeeds after the dial timed out.
    Silent,
    /// A pinned connection string's address answered with another identity.
    WrongPeer {
        /// The identity the string pinned.
        expected: Option<PeerId>,
        /// The identity that answered.
        found: PeerId,
    },
    /// Anything else (the transport's own message is shown).
    Other,
}

impl DialFailure {
    /// Classifies a dial error by walking each transport error's source chain down to the
    /// [`io::Error`] (or resolver or timeout error) that caused it. With several addresses,
    /// the first one that classifies as something other than [`DialFailure::Other`] wins.
    pub fn classify(error: &DialError) -> DialFailure {
        match error {
            DialError::Transport(errors) => errors
                .iter()
                .map(|(_, e)| match e {
                    TransportError::Other(io) => Self::from_chain(io),
                    TransportError::MultiaddrNotSupported(_) => DialFailure::Other,
                })
                .find(|f| *f != DialFailure::Other)
                .unwrap_or(DialFailure::Other),
            DialError::WrongPeerId { obtained, address } => DialFailure::WrongPeer {
                expected: address.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                    _ => None,
                }),
                found: *obtained,
            },
            _ => DialFailure::Other,
        }
    }

    /// The classification of one error and the errors under it.
    ///
    /// libp2p's transport stack hides part of the chain: `either::Either` (which joins TCP,
    /// QUIC and their upgrades) forwards `source()` past the error it wraps, and the
    /// timeout and DNS layers are generic over types that cannot be named here. What is
    /// left is used: a resolver error; a Noise error; QUIC's handshake timeout; an
    /// [`io::Error`] met in the chain (its kind); and, for an OS error hidden behind
    /// `Either`, its error number, recovered from the standard rendering `... (os error N)`
    /// and mapped to its kind by [`io::Error::from_raw_os_error`]. A timeout of the dial as a whole
    /// (libp2p's `TransportTimeout`) is recognised by the node from the time the dial took
    /// ([`DialFailure::or_timed_out`]).
    pub fn from_chain(error: &(dyn StdError + 'static)) -> DialFailure {
        let mut current = Some(error);
        // Chains are short; the bound only guards against a cycle.
        for _ in 0..32 {
            let Some(e) = current else { break };
            if e.is::<libp2p::dns::ResolveError>() {
                return DialFailure::NameNotResolved;
            }
            if e.is::<libp2p::noise::Error>() {
                return DialFailure::Handshake;
            }
            if matches!(
                e.downcast_ref::<libp2p::quic::Error>(),
                Some(libp2p::quic::Error::HandshakeTimedOut)
            ) {
                return DialFailure::TimedOut;
            }
            let io = e.downcast_ref::<io::Error>();
            let kind = io.map(io::Error::kind).or_else(|| os_error_kind(e));
            let found = kind.map_or(DialFailure::Other, Self::from_kind);
            if found != DialFailure::Other {
                return found;
            }
            // `io::Error::source` skips the error it wraps; look at that error itself.
            current = match io.and_then(io::Error::get_ref) {
                Some(inner) => Some(inner),
                None => e.source(),
            };
        }
        DialFailure::Other
    }

    fn from_kind(kind: io::ErrorKind) -> DialFailure {
        match kind {
            io::ErrorKind::ConnectionRefused => DialFailure::Refused,
            io::ErrorKind::TimedOut => DialFailure::TimedOut,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                DialFailure::Unreachable
            }
            // Noise reports a handshake message it cannot read as `InvalidData` (snow's
            // "input error"); nothing else in a dial's chain uses that kind.
            io::ErrorKind::InvalidData => DialFailure::Handshake,
            // A connection the host accepted and then dropped or reset in the middle of
            // the handshake: something listens there, but it does not speak Noctua.
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe => DialFailure::Handshake,
            _ => DialFailure::Other,
        }
    }

    /// `self`, or [`DialFailure::TimedOut`] for an unclassified failure that came when the
    /// dial had used up its whole [`DIAL_TIMEOUT`].
    pub fn or_timed_out(self, dial_took: std::time::Duration) -> DialFailure {
        if self == DialFailure::Other && dial_took >= DIAL_TIMEOUT {
            DialFailure::TimedOut
        } else {
            self
        }
    }
}

/// The kind of the OS error an error renders, if it renders one the standard way
/// (`... (os error N)`), e.g. an [`io::Error`] behind a wrapper that hides it.
fn os_error_kind(e: &dyn StdError) -> Option<io::ErrorKind> {
    let text = e.to_string();
    let (_, rest) = text.rsplit_once("(os error ")?;
    let code: i32 = rest.strip_suffix(')')?.parse().ok()?;
    Some(io::Error::from_raw_os_error(code).kind())
}

/// Why a `connect` failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address could not be dialed.
    #[error("{}", describe_dial(*.failure, target, detail))]
    Dial {
        /// What kind of failure.
        failure: DialFailure,
        /// What was dialed, as the user gave it (secret left out).
        target: String,
        /// The transport's message.
        detail: String,
    },
    /// The peer was reached but the session could not be opened.
    #[error("{}", describe_open_error(.0))]
    Open(OpenError),
}

impl ConnectError {
    /// The same failure, known to come from a host that accepts connections but never
    /// answers the handshake ([`DialFailure::Silent`]).
    pub(crate) fn silent(self) -> ConnectError {
        match self {
            ConnectError::Dial { target, detail, .. } => ConnectError::Dial {
                failure: DialFailure::Silent,
                target,
                detail,
            },
            other => other,
        }
    }
}

/// One line for a failed dial, in the user's terms.
fn describe_dial(failure: DialFailure, target: &str, detail: &str) -> String {
    match failure {
        DialFailure::Refused => {
            format!("connection refused: nothing is listening at {target} (is the port right?)")
        }
        DialFailure::TimedOut => format!(
            "no answer from {target} within {} s: the host is unreachable or filtered",
            DIAL_TIMEOUT.as_secs()
        ),
        DialFailure::Unreachable => format!("{target} is unreachable from here ({detail})"),
        DialFailure::NameNotResolved => format!("cannot resolve the host name in {target}"),
        DialFailure::Handshake => format!(
            "{target} answered, but the encrypted transport handshake (Noise) failed: is it \
             a Noctua node?"
        ),
        DialFailure::Silent => format!(
            "{target} accepted the connection but never answered within {} s: is it a Noctua \
             node?",
            DIAL_TIMEOUT.as_secs()
        ),
        DialFailure::WrongPeer { expected, found } => match expected {
            Some(e) => format!(
                "this is not the peer you were given: expected {e}, found {found} at {target}"
            ),
            None => format!("this is not the peer you were given: found {found} at {target}"),
        },
        DialFailure::Other => detail.to_string(),
    }
}

fn describe_open_error(e: &OpenError) -> String {
    match e {
        OpenError::WrongSecret => "wrong secret: the peer refused it".into(),
        OpenError::UnsupportedProtocol => {
            "that address answers, but it is not a Noctua node".into()
        }
        OpenError::Timeout => "no answer in time (the handshake timed out)".into(),
        OpenError::RateLimited(secs) => {
            format!("refused for {secs} s after repeated wrong secrets from this address")
        }
        other => other.to_string(),
    }
}

/// Why a message did not reach a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFailure {
    /// The protocol refused to send it at all (no session, queue full, too large).
    #[error(transparent)]
    NotSent(#[from] SendError),
    /// It was sent but not confirmed; a closed session carries its close reason.
    #[error(transparent)]
    Failed(#[from] DeliveryError),
}

/// A peer as typed by the user could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A number not in the last `peers` list.
    #[error("no peer number {0}: see 'peers'")]
    NoNumber(usize),
    /// A name that fits several peers.
    #[error("{who:?} is ambiguous: {}", .names.join(", "))]
    Ambiguous {
        /// As typed.
        who: String,
        /// The display names it fits.
        names: Vec<String>,
    },
    /// An id prefix or suffix that fits several peers.
    #[error("{who:?} matches {count} peers: give more of the id")]
    AmbiguousId {
        /// As typed.
        who: String,
        /// How many it fits.
        count: usize,
    },
    /// Nothing fits.
    #[error("no peer called {0:?}: see 'peers' or 'sessions'")]
    Unknown(String),
    /// The name of a peer whose session has ended.
    #[error("{0} has left: no session (see 'sessions')")]
    Left(String),
}

/// Why a command (or the node itself) failed: a line in red.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The peer could not be found.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The peer has no session.
    #[error("no session with {0}")]
    NoSession(String),
    /// A key rotation could not start.
    #[error("cannot rotate with {name}: {source}")]
    Rotate {
        /// The peer's display name.
        name: String,
        /// Why.
        source: SessionError,
    },
    /// A session could not be closed.
    #[error("cannot disconnect {name}: {source}")]
    Disconnect {
        /// The peer's display name.
        name: String,
        /// Why.
        source: SessionError,
    },
    /// `trust`, `forget`, `block` or `unblock` could not be done.
    #[error("{name}: {why}")]
    Trust {
        /// The peer's display name.
        name: String,
        /// Why.
        why: String,
    },
    /// A `connect` to a peer the user blocked.
    #[error("{0} is blocked: 'unblock {0}' first to connect to it")]
    Blocked(String),
    /// The profile could not be saved (its one-line reason).
    #[error("cannot save the profile: {0}")]
    Profile(String),
    /// The secret given to `connect` is not a valid secret.
    #[error("bad secret: {0}")]
    BadSecret(#[from] SecretError),
    /// A connection string with no address to dial.
    #[error("nothing to dial")]
    NothingToDial,
    /// The RSA key pair could not be generated.
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(String),
    /// A message with no peer to send it to.
    #[error("not sent: nobody to send to yet; connect to a peer first (see 'help')")]
    NobodyToSend,
    /// A message over the size limit: refused before anything was sent.
    #[error("not sent: the message is {} KiB, over the {} KiB limit", .len.div_ceil(1024), .max / 1024)]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_failures_are_classified_from_the_io_error_kind_under_the_wrappers() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        // Wrapped the way libp2p's boxed transports wrap it: an io::Error of kind Other
        // around another error whose source is the real cause.
        let wrapped = io::Error::other(TransportError::Other(refused));
        assert_eq!(DialFailure::from_chain(&wrapped), DialFailure::Refused);
        let unreachable = io::Error::other(io::Error::from(io::ErrorKind::HostUnreachable));
        assert_eq!(
            DialFailure::from_chain(&unreachable),
            DialFailure::Unreachable
        );
        // An OS error behind a wrapper whose `source()` skips it (as `either::Either`'s
        // does), known only by its rendering (111 is ECONNREFUSED on Linux).
        #[derive(Debug)]
        struct Hiding(io::Error);
        impl std::fmt::Display for Hiding {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
        impl StdError for Hiding {}
        if cfg!(target_os = "linux") {
            let hidden = io::Error::other(Hiding(io::Error::from_raw_os_error(111)));
            assert_eq!(DialFailure::from_chain(&hidden), DialFailure::Refused);
        }
        let timeout = io::Error::other(
            libp2p::core::transport::timeout::TransportTimeoutError::<io::Error>::Timeout,
        );
        assert_eq!(DialFailure::from_chain(&timeout), DialFailure::Other);
        assert_eq!(
            DialFailure::Other.or_timed_out(DIAL_TIMEOUT),
            DialFailure::TimedOut
        );
        assert_eq!(
            DialFailure::Refused.or_timed_out(DIAL_TIMEOUT),
            DialFailure::Refused
        );
        assert_eq!(
            DialFailure::from_chain(&io::Error::other("something else")),
            DialFailure::Other
        );
        // Noise's "input error" (a handshake message it cannot read), under a wrapper.
        let garbled = io::Error::new(io::ErrorKind::InvalidData, "input error");
        assert_eq!(
            DialFailure::from_chain(&io::Error::other(garbled)),
            DialFailure::Handshake
        );
        // A service that accepts and then resets or drops the connection (issue 11: it
        // read "Connection reset by peer (os error 104)").
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::ConnectionAborted,
        ] {
            assert_eq!(
                DialFailure::from_chain(&io::Error::other(io::Error::from(kind))),
                DialFailure::Handshake,
                "{kind:?}"
            );
        }
        if cfg!(target_os = "linux") {
            let hidden = io::Error::other(Hiding(io::Error::from_raw_os_error(104)));
            assert_eq!(DialFailure::from_chain(&hidden), DialFailure::Handshake);
        }
        let all = DialError::Transport(vec![(
            "/ip4/127.0.0.1/tcp/1".parse().expect("multiaddr"),
            TransportError::Other(wrapped),
        )]);
        assert_eq!(DialFailure::classify(&all), DialFailure::Refused);
        assert_eq!(
            DialFailure::classify(&DialError::Aborted),
            DialFailure::Other
        );
    }

    /// Issue 11, item 4: QUIC's listen error rendered as nothing ("cannot listen on ...: ").
    #[test]
    fn a_listen_error_that_renders_as_nothing_shows_its_cause() {
        #[derive(Debug)]
        struct Silent(io::Error);
        impl std::fmt::Display for Silent {
            fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                Ok(())
            }
        }
        impl StdError for Silent {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = StartError::ListenOn {
            address: "/ip4/0.0.0.0/udp/47401/quic-v1".parse().expect("multiaddr"),
            source: TransportError::Other(io::Error::other(Silent(io::Error::from(
                io::ErrorKind::AddrInUse,
            )))),
        };
        let text = e.to_string();
        assert!(!text.ends_with(": "), "{text}");
        assert!(text.contains("in use"), "{text}");
    }

    #[test]
    fn user_visible_sentences_are_unchanged() {
        let e = ConnectError::Dial {
            failure: DialFailure::Refused,
            target: "127.0.0.1:9".into(),
            detail: "whatever".into(),
        };
        assert_eq!(
            e.to_string(),
            "connection refused: nothing is listening at 127.0.0.1:9 (is the port right?)"
        );
        assert_eq!(
            ConnectError::Open(OpenError::RateLimited(42)).to_string(),
            "refused for 42 s after repeated wrong secrets from this address"
        );
        assert_eq!(
            ConnectError::Open(OpenError::WrongSecret).to_string(),
            "wrong secret: the peer refused it"
        );
        assert_eq!(
            CommandError::from(ResolveError::Unknown("bob".into())).to_string(),
            "no peer called \"bob\": see 'peers' or 'sessions'"
        );
    }
}
