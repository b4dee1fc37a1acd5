//! The reject-code table of SPEC.md §9, and the extra `ABORT`/`CLOSE` codes, as the spec
//! peer's own type (not `noctua_chat::RejectCode`).

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        /// A §9 code. Unknown values are kept as [`RejectCode::Unknown`] (§9: "treated as a
        /// generic failure").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RejectCode {
            $($(#[$doc])* $name,)*
            /// A code this table does not know.
            Unknown(u16),
        }

        impl RejectCode {
            /// Every named code, in table order.
            pub const ALL: &'static [RejectCode] = &[$(RejectCode::$name,)*];

            /// The code's value on the wire.
            pub fn to_u16(self) -> u16 {
                match self {
                    $(RejectCode::$name => $value,)*
                    RejectCode::Unknown(v) => v,
                }
            }

            /// The code of a wire value.
            pub fn from_u16(v: u16) -> RejectCode {
                match v {
                    $($value => RejectCode::$name,)*
                    other => RejectCode::Unknown(other),
                }
            }

            /// The §9 name (`MALFORMED`, ...).
            pub fn spec_name(self) -> &'static str {
                match self {
                    $(RejectCode::$name => $text,)*
                    RejectCode::Unknown(_) => "UNKNOWN",
                }
            }
        }
    };
}

codes! {
    /// 1: the frame or plaintext does not parse.
    Malformed = 1, "MALFORMED";
    /// 2: over a limit; detail = the limit.
    TooLarge = 2, "TOO_LARGE";
    /// 3: `HELLO.version` is not 2.
    UnsupportedVersion = 3, "UNSUPPORTED_VERSION";
    /// 4: RSA public key or `share` not acceptable.
    BadKey = 4, "BAD_KEY";
    /// 5: the proof is wrong.
    AuthFailed = 5, "AUTH_FAILED";
    /// 6: no pending handshake with that `hs_id`.
    UnknownHandshake = 6, "UNKNOWN_HANDSHAKE";
    /// 7: no session with that id.
    UnknownSession = 7, "UNKNOWN_SESSION";
    /// 8: the session is closing.
    SessionClosed = 8, "SESSION_CLOSED";
    /// 9: the epoch's keys are gone.
    StaleEpoch = 9, "STALE_EPOCH";
    /// 10: an epoch never had.
    UnknownEpoch = 10, "UNKNOWN_EPOCH";
    /// 11: `seq` already accepted.
    Replayed = 11, "REPLAYED";
    /// 12: `seq` too far behind (or `>= 2^32`).
    OutOfWindow = 12, "OUT_OF_WINDOW";
    /// 13: AEAD or RSA decryption failed.
    DecryptFailed = 13, "DECRYPT_FAILED";
    /// 14: our own role as sender.
    Reflected = 14, "REFLECTED";
    /// 15: banned; detail = seconds left.
    RateLimited = 15, "RATE_LIMITED";
    /// 16: session or handshake limit reached.
    Busy = 16, "BUSY";
    /// 17: simultaneous rotation lost.
    RotationConflict = 17, "ROTATION_CONFLICT";
    /// 18: valid message, wrong moment.
    BadState = 18, "BAD_STATE";
    /// 19: crossing handshakes; the sender's lost.
    HandshakeConflict = 19, "HANDSHAKE_CONFLICT";
    /// 20: the receiver's user refuses sessions from this peer.
    Refused = 20, "REFUSED";
    /// 100 (`ABORT`/`CLOSE` only): the user ended the session.
    UserClosed = 100, "USER_CLOSED";
    /// 101: the node is exiting.
    Shutdown = 101, "SHUTDOWN";
    /// 102: a new session superseded this one.
    Replaced = 102, "REPLACED";
}

impl RejectCode {
    /// The crate's code with the same wire value, to compare with what the node under test
    /// reports in its events (the values are the contract; nothing is decoded through it).
    pub fn node(self) -> noctua_chat::RejectCode {
        noctua_chat::RejectCode::from_u16(self.to_u16())
    }
}
