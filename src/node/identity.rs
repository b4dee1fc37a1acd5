//! Identity: the trust-on-first-use check when a session is established, and the
//! commands `trust`, `forget`, `block`, `unblock` and `new-secret`. The decisions are the
//! pure [`crate::trust::KnownPeers`]'s; this is the glue that closes sessions, saves the
//! profile and reports.

use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use noctua_chat::{OpenId, Secret, SessionInfo};

use crate::node::{CommandError, Node, Output, TrustChange, Undelivered, conn_strings};
use crate::sanitize;
use crate::trust::Verdict;

/// Whether the session's safety number is the identity number (both sides LASTING), the
/// same in every session.
pub(crate) fn number_lasts(info: &SessionInfo) -> bool {
    info.safety_number_lasts
}

/// Whether the peer keeps its identity across restarts (its PROFILE carried LASTING).
fn remote_lasting(info: &SessionInfo) -> bool {
    info.remote_lasting
}

/// Seconds since the Unix epoch (for `last_seen`).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Node {
    /// Our connection strings pinned to our identity (`host:port:secret:PEERID`).
    pub(super) fn pinned_conn_strings(&self) -> Vec<String> {
        let peer = self.peer_id();
        conn_strings(&self.listen_addrs, self.secret.expose())
            .iter()
            .map(|c| crate::connstr::pin(c, &peer))
            .collect()
    }

    /// With a profile, stores the port we listen on, so the next run without `--port`
    /// listens there again and the connection string stays the same.
    pub(super) fn save_port(&mut self) {
        let port = self.listen_addrs.iter().find_map(|a| {
            a.iter().find_map(|p| match p {
                Protocol::Tcp(port) if port != 0 => Some(port),
                _ => None,
            })
        });
        if let (Some(profile), Some(port)) = (self.profile.as_mut(), port)
            && let Err(e) = profile.save_port(port)
        {
            tracing::warn!("cannot store the port in the profile: {e}");
        }
    }

    /// Refuses the peers the profile says are blocked (at start).
    pub(super) fn refuse_blocked(&mut self) {
        let blocked: Vec<PeerId> = self
            .trust
            .iter()
            .filter(|p| p.blocked)
            .map(|p| p.peer)
            .collect();
        for peer in blocked {
            if let Err(e) = self.chat().refuse_peer(peer) {
                tracing::warn!(%peer, "a blocked peer is not refused: {e}");
            }
        }
    }

    /// Saves the known peers to the profile (nothing without one).
    fn save_peers(&mut self) -> Result<(), CommandError> {
        match self.profile.as_mut() {
            Some(p) => p
                .save_peers(&self.trust)
                .map_err(|e| CommandError::Profile(e.to_string())),
            None => Ok(()),
        }
    }

    /// The secret of the first of `opens` that is a `connect` of ours (to remember it for
    /// reconnecting).
    pub(super) fn open_secret(&self, opens: &[OpenId]) -> Option<Secret> {
        opens
            .iter()
            .find_map(|o| self.connects.get(o).map(|c| c.secret.clone()))
    }

    /// Whether messages from `peer` are hidden (its session was refused by the check).
    pub(super) fn tofu_hidden(&self, peer: &PeerId) -> bool {
        self.tofu_refused.contains(peer)
    }

    /// Trust on first use, when a session with `peer` (which calls itself `remote_name`)
    /// was just established; `secret` is the one we dialed it with, if we did, and
    /// `dialing` the address our connect dialed (used when the session rides on a
    /// connection the peer opened). Returns
    /// whether the session may go on; if not, it was closed and the user warned.
    pub(super) async fn check_session(
        &mut self,
        peer: PeerId,
        remote_name: &str,
        secret: Option<Secret>,
        dialing: Option<Multiaddr>,
    ) -> bool {
        let name = sanitize::name(remote_name).replace(' ', "_");
        let dialed = self.dialed.get(&peer).cloned().or(dialing);
        let verdict = self.trust.check(&peer, &name, dialed.as_ref());
        if verdict.refuses() {
            self.tofu_refused.insert(peer);
            if let Err(e) = self.chat().close_session(&peer) {
                tracing::debug!(%peer, "closing a refused session: {e}");
            }
            let out = match verdict {
                Verdict::NameConflict { known } => self.identity_warning(peer, name, known, None),
                Verdict::AddressConflict { known, addr } => {
                    self.identity_warning(peer, name, known, Some(addr))
                }
                _ => Output::BlockedPeerRefused { peer, name },
            };
            self.emit(out).await;
            return false;
        }
        self.tofu_refused.remove(&peer);
        let lasting = self
            .swarm
            .behaviour()
            .chat
            .session(&peer)
            .is_some_and(|s| remote_lasting(&s));
        let secret = secret.map(|s| s.expose().to_string());
        let was_saved = self.trust.get(&peer).is_some_and(|p| p.persists());
        if let Err(e) = self
            .trust
            .remember(peer, &name, lasting, dialed, secret, unix_now())
        {
            tracing::warn!(%peer, "not remembered: {e}");
        }
        if (lasting || was_saved)
            && let Err(e) = self.save_peers()
        {
            self.emit(Output::Error(e)).await;
        }
        true
    }

    fn identity_warning(
        &self,
        peer: PeerId,
        claimed: String,
        known: PeerId,
        addr: Option<Multiaddr>,
    ) -> Output {
        let (known_name, verified) = self
            .trust
            .get(&known)
            .map_or((String::new(), false), |k| (k.name.clone(), k.verified));
        Output::IdentityWarning {
            peer,
            claimed,
            known,
            known_name,
            verified,
            addr,
        }
    }

    /// A peer as typed: one the node sees now, else a known one (by name, or by the start
    /// or end of its id).
    fn resolve_known(&self, who: &str) -> Result<PeerId, CommandError> {
        let err = match self.resolve(who) {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        if let Ok(p) = who.parse::<PeerId>()
            && self.trust.get(&p).is_some()
        {
            return Ok(p);
        }
        let by_name: Vec<PeerId> = self
            .trust
            .iter()
            .filter(|k| k.name.eq_ignore_ascii_case(who))
            .map(|k| k.peer)
            .collect();
        if let [one] = by_name.as_slice() {
            return Ok(*one);
        }
        if who.len() >= 4 {
            let by_id: Vec<PeerId> = self
                .trust
                .iter()
                .filter(|k| {
                    let s = k.peer.to_base58();
                    s.starts_with(who) || s.ends_with(who)
                })
                .map(|k| k.peer)
                .collect();
            if let [one] = by_id.as_slice() {
                return Ok(*one);
            }
        }
        Err(err.into())
    }

    /// The name to show for `peer`: its session's, else the one we know it by.
    fn known_name(&self, peer: &PeerId) -> String {
        match (self.names.get(peer), self.trust.get(peer)) {
            (Some(n), _) => n.clone(),
            (None, Some(k)) if !k.name.is_empty() => k.name.clone(),
            _ => self.names.display(peer),
        }
    }

    /// `trust <peer>`: records that the user compared its lasting safety number.
    pub(super) async fn trust_peer(&mut self, who: &str) -> Result<(), CommandError> {
        let peer = self.resolve_known(who)?;
        let name = self.known_name(&peer);
        if self.profile.is_none() {
            return Err(CommandError::Trust {
                name,
                why: "this node runs without --profile, so its identity and the safety \
                      number change at every start: compare the number with `verify` in \
                      each session instead"
                    .into(),
            });
        }
        self.trust.trust(&peer).map_err(|e| CommandError::Trust {
            name: name.clone(),
            why: e.to_string(),
        })?;
        self.save_peers()?;
        self.emit(Output::TrustChanged {
            peer,
            name,
            change: TrustChange::Trusted,
        })
        .await;
        Ok(())
    }

    /// `forget <peer>`: drops everything known about it (pins, verification, block).
    pub(super) async fn forget_peer(&mut self, who: &str) -> Result<(), CommandError> {
        let peer = self.resolve_known(who)?;
        let name = self.known_name(&peer);
        let blocked = self.trust.is_blocked(&peer);
        if !self.trust.forget(&peer) {
            return Err(CommandError::Trust {
                name,
                why: "nothing is known about it".into(),
            });
        }
        // A forgotten peer is not reconnected, and what waited for it is given up.
        self.reconnect.stop(&peer);
        self.give_up_peer(peer, Undelivered::GaveUp).await;
        // A forgotten block ends too (a `disconnect` refusal stays until `connect`).
        if blocked {
            self.chat().allow_peer(&peer);
        }
        self.tofu_refused.remove(&peer);
        self.save_peers()?;
        self.emit(Output::TrustChanged {
            peer,
            name,
            change: TrustChange::Forgotten,
        })
        .await;
        Ok(())
    }

    /// `block <peer>`: closes its session and refuses its identity from now on (kept in
    /// the profile).
    pub(super) async fn block_peer(&mut self, who: &str) -> Result<(), CommandError> {
        let peer = self.resolve_known(who)?;
        let name = self.known_name(&peer);
        let book_name = self.trust.get(&peer).map_or_else(
            || sanitize::name(&name).replace(' ', "_"),
            |k| k.name.clone(),
        );
        // Refused by the protocol first (bounded): its next HELLOs get REJECT(REFUSED).
        self.chat()
            .refuse_peer(peer)
            .map_err(|e| CommandError::Trust {
                name: name.clone(),
                why: e.to_string(),
            })?;
        if let Err(e) = self.trust.block(peer, &book_name) {
            self.chat().allow_peer(&peer);
            return Err(CommandError::Trust {
                name,
                why: e.to_string(),
            });
        }
        self.reconnect.stop(&peer);
        self.give_up_peer(peer, Undelivered::Blocked).await;
        if self.has_session(&peer)
            && let Err(e) = self.chat().close_session(&peer)
        {
            tracing::debug!(%peer, "closing a blocked peer's session: {e}");
        }
        self.save_peers()?;
        self.emit(Output::TrustChanged {
            peer,
            name,
            change: TrustChange::Blocked,
        })
        .await;
        Ok(())
    }

    /// `unblock <peer>`.
    pub(super) async fn unblock_peer(&mut self, who: &str) -> Result<(), CommandError> {
        let peer = self.resolve_known(who)?;
        let name = self.known_name(&peer);
        if !self.trust.unblock(&peer) {
            return Err(CommandError::Trust {
                name,
                why: "it is not blocked".into(),
            });
        }
        self.chat().allow_peer(&peer);
        self.save_peers()?;
        self.emit(Output::TrustChanged {
            peer,
            name,
            change: TrustChange::Unblocked,
        })
        .await;
        Ok(())
    }

    /// `new-secret`: a new connection secret from now on; authenticated sessions stay.
    pub(super) async fn new_secret(&mut self) -> Result<(), CommandError> {
        let secret = Secret::generate();
        let saved = match self.profile.as_mut() {
            Some(p) => {
                p.save_secret(&secret)
                    .map_err(|e| CommandError::Profile(e.to_string()))?;
                true
            }
            None => false,
        };
        // From now on inbound handshakes need the new secret; sessions stay.
        self.chat().set_secret(secret.clone());
        self.secret = secret;
        self.emit(Output::SecretChanged {
            secret: self.secret.expose().to_string(),
            conn_strings: conn_strings(&self.listen_addrs, self.secret.expose()),
            pinned: self.pinned_conn_strings(),
            saved,
        })
        .await;
        Ok(())
    }
}
