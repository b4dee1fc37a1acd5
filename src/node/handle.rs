//! Commands from a face: each is carried out (or refused with a [`CommandError`]) and
//! answered with [`Output`]s.

use std::collections::VecDeque;
use std::time::SystemTime;

use libp2p::{Multiaddr, PeerId};
use noctua_chat::{Secret, SessionState};
use tokio::sync::oneshot;

use crate::connstr::ConnString;
use crate::node::{
    Command, CommandError, Connecting, DeliveryFailure, LinkRow, Node, Output, PeerRow, SessionRow,
    Undelivered, signal,
};

impl Node {
    /// Carries out one command; `done` is signalled when it is finished (for `connect`:
    /// when the session is up or has failed).
    pub(super) async fn on_command(&mut self, command: Command, done: Option<oneshot::Sender<()>>) {
        let result = match command {
            Command::Connect(cs) => return self.connect_string(*cs, done).await,
            Command::ConnectDiscovered { who, secret } => {
                return self.connect_discovered(&who, &secret, done).await;
            }
            Command::Sessions => {
                let rows = self.session_rows();
                let down = self.link_rows();
                self.emit(Output::Sessions { rows, down }).await;
                Ok(())
            }
            Command::Peers => {
                let rows = self.peer_rows();
                self.emit(Output::Peers(rows)).await;
                Ok(())
            }
            Command::Broadcast(text) => self.broadcast(text).await,
            Command::Msg { to, text } => self.msg(&to, text).await,
            Command::Verify(who) => self.verify(&who).await,
            Command::Rotate(who) => self.rotate(who.as_deref()).await,
            Command::Disconnect(who) => self.disconnect(&who).await,
            Command::Trust(who) => self.trust_peer(&who).await,
            Command::Forget(who) => self.forget_peer(&who).await,
            Command::Block(who) => self.block_peer(&who).await,
            Command::Unblock(who) => self.unblock_peer(&who).await,
            Command::NewSecret => self.new_secret().await,
            // The event loop handles these itself.
            Command::Exit | Command::Finish => Ok(()),
        };
        if let Err(e) = result {
            self.emit(Output::Error(e)).await;
        }
        signal(done);
    }

    async fn broadcast(&mut self, text: String) -> Result<(), CommandError> {
        self.check_length(&text)?;
        let to: Vec<PeerId> = self
            .sessions()
            .filter(|s| matches!(s.state, SessionState::Active | SessionState::Rotating))
            .map(|s| s.peer)
            .collect();
        // Peers expected back get it when their session returns.
        let later: Vec<PeerId> = self
            .reconnect
            .expected_peers()
            .into_iter()
            .filter(|p| !self.has_session(p))
            .collect();
        if to.is_empty() && later.is_empty() {
            return Err(CommandError::NobodyToSend);
        }
        self.send(text, to, later, false).await;
        Ok(())
    }

    /// A message over the limit is refused once, before anything is sent, rather than
    /// reported as not delivered to each peer.
    fn check_length(&self, text: &str) -> Result<(), CommandError> {
        let max = self.swarm.behaviour().chat.max_text_len();
        if text.len() > max {
            return Err(CommandError::TooLong {
                len: text.len(),
                max,
            });
        }
        Ok(())
    }

    /// The peer `who` names, if it has a session.
    fn with_session(&self, who: &str) -> Result<PeerId, CommandError> {
        let peer = self.resolve(who)?;
        if self.has_session(&peer) {
            Ok(peer)
        } else {
            Err(CommandError::NoSession(self.names.display(&peer)))
        }
    }

    async fn msg(&mut self, to: &str, text: String) -> Result<(), CommandError> {
        self.check_length(&text)?;
        let peer = self.resolve(to)?;
        if !self.has_session(&peer) && self.reconnect.expected(&peer) {
            // Down, but expected back: queued.
            self.send(text, Vec::new(), vec![peer], true).await;
            return Ok(());
        }
        let peer = self.with_session(to)?;
        self.send(text, vec![peer], Vec::new(), true).await;
        Ok(())
    }

    async fn verify(&mut self, who: &str) -> Result<(), CommandError> {
        let peer = self.resolve(who)?;
        let name = self.names.display(&peer);
        let Some(s) = self.swarm.behaviour().chat.session(&peer) else {
            return Err(CommandError::NoSession(name));
        };
        self.emit(Output::Verify {
            peer,
            name,
            safety_number: s.safety_number.to_string(),
            lasts: super::identity::number_lasts(&s),
            trust: self.trust.state(&peer),
        })
        .await;
        Ok(())
    }

    async fn rotate(&mut self, who: Option<&str>) -> Result<(), CommandError> {
        let peers: Vec<PeerId> = match who {
            Some(w) => vec![self.resolve(w)?],
            None => self.sessions().map(|s| s.peer).collect(),
        };
        if peers.is_empty() {
            self.emit(Output::Notice("no sessions to rotate".into()))
                .await;
        }
        for peer in peers {
            let name = self.names.display(&peer);
            match self.chat().rotate(&peer) {
                Ok(()) => {
                    self.emit(Output::Notice(format!("rotating keys with {name}...")))
                        .await
                }
                Err(source) => {
                    self.emit(Output::Error(CommandError::Rotate { name, source }))
                        .await
                }
            }
        }
        Ok(())
    }

    /// Ends the session with a peer (or stops reconnecting to it), gives up what was
    /// queued for it, and refuses its new handshakes until the user connects to it again.
    async fn disconnect(&mut self, who: &str) -> Result<(), CommandError> {
        let peer = self.resolve(who)?;
        let name = self.names.display(&peer);
        let expected = self.reconnect.stop(&peer);
        if let Err(source) = self.chat().close_session(&peer)
            && !expected
        {
            return Err(CommandError::Disconnect { name, source });
        }
        self.refuse_peer(peer).await;
        self.give_up_peer(peer, Undelivered::Disconnected).await;
        self.emit(Output::Disconnected {
            peer,
            name: name.clone(),
        })
        .await;
        if !self.has_session(&peer) {
            self.names.forget(&peer);
        }
        Ok(())
    }

    /// Sends `text` to each of `to` and queues it for each of `later`: one `Sent`, then
    /// one outcome per recipient (a refusal at once, `Queued` for those queued, the rest
    /// when the receipt or the failure comes).
    async fn send(&mut self, text: String, to: Vec<PeerId>, later: Vec<PeerId>, private: bool) {
        let local = self.next_local;
        self.next_local += 1;
        let mut recipients = Vec::new();
        let mut refused = Vec::new();
        for peer in to {
            let name = self.names.display(&peer);
            let queued = if private {
                self.chat().send_private_message(&peer, text.clone())
            } else {
                self.chat().send_message(&peer, text.clone())
            };
            match queued {
                Ok(id) => {
                    self.outstanding.insert(id, local);
                    recipients.push((peer, name));
                }
                Err(e) => refused.push((peer, name, e)),
            }
        }
        if recipients.is_empty() && refused.is_empty() && later.is_empty() {
            return;
        }
        let mut all = recipients;
        all.extend(refused.iter().map(|(p, n, _)| (*p, n.clone())));
        all.extend(later.iter().map(|p| (*p, self.names.display(p))));
        self.emit(Output::Sent {
            local,
            text: text.clone(),
            to: all,
            private,
            at: SystemTime::now(),
        })
        .await;
        for (peer, _, e) in refused {
            self.delivery_failed(local, peer, DeliveryFailure::NotSent(e))
                .await;
        }
        for peer in later {
            self.queue(peer, local, text.clone(), private).await;
        }
    }

    async fn connect_string(&mut self, cs: ConnString, done: Option<oneshot::Sender<()>>) {
        // `Target`'s Display brackets IPv6 hosts and leaves the secret out.
        let label = cs.target.to_string();
        match Secret::new(cs.secret.clone()) {
            Ok(secret) => {
                let addrs: VecDeque<Multiaddr> = cs.dial_addrs().into();
                // Connecting again to a peer we disconnected lets it in again.
                let again: Vec<PeerId> = addrs
                    .iter()
                    .flat_map(|a| {
                        let mut v = self.reconnect.dialed_at(a);
                        v.extend(peer_in(a));
                        v
                    })
                    .collect();
                if let Some(blocked) = cs.peer.filter(|p| self.trust.is_blocked(p)) {
                    let e = self.blocked_error(&blocked);
                    return self.refuse(e, done).await;
                }
                for peer in again {
                    self.allow_peer(&peer);
                }
                self.start_connect(label, secret, None, addrs, done).await;
            }
            Err(e) => self.refuse(e.into(), done).await,
        }
    }

    async fn connect_discovered(
        &mut self,
        who: &str,
        secret: &str,
        done: Option<oneshot::Sender<()>>,
    ) {
        // The secret first, then the peer: the order of the messages a user sees.
        let found = Secret::new(secret)
            .map_err(CommandError::from)
            .and_then(|s| Ok((s, self.resolve(who)?)));
        match found {
            Ok((secret, peer)) => {
                if !self.allow_peer(&peer) {
                    let e = self.blocked_error(&peer);
                    return self.refuse(e, done).await;
                }
                let label = self.names.display(&peer);
                self.start_connect(label, secret, Some(peer), VecDeque::new(), done)
                    .await;
            }
            Err(e) => self.refuse(e, done).await,
        }
    }

    /// A command that cannot be carried out: says why, and is done.
    async fn refuse(&mut self, e: CommandError, done: Option<oneshot::Sender<()>>) {
        self.emit(Output::Error(e)).await;
        signal(done);
    }

    /// Starts a `connect`: to `peer` if given (a known peer), else to the first of `addrs`.
    async fn start_connect(
        &mut self,
        label: String,
        secret: Secret,
        peer: Option<PeerId>,
        mut addrs: VecDeque<Multiaddr>,
        done: Option<oneshot::Sender<()>>,
    ) {
        let dialing = if peer.is_some() {
            None
        } else {
            match addrs.pop_front() {
                Some(first) => Some(first),
                None => return self.refuse(CommandError::NothingToDial, done).await,
            }
        };
        self.emit(Output::Connecting {
            target: label.clone(),
        })
        .await;
        let first_tcp = dialing.as_ref().and_then(tcp_socket_addr);
        let open = match (&dialing, peer) {
            (Some(addr), _) => self.chat().connect(addr.clone(), secret.clone()),
            (None, Some(peer)) => self.chat().open_session(peer, secret.clone()),
            (None, None) => return signal(done),
        };
        self.connects.insert(
            open,
            Connecting {
                label,
                dialing,
                peer,
                addrs,
                secret,
                done,
                started: tokio::time::Instant::now(),
                dial_failure: None,
                errors: Vec::new(),
                first_tcp,
            },
        );
    }

    fn session_rows(&self) -> Vec<SessionRow> {
        // A session the identity check refused is being closed: it is not one of ours.
        let mut rows: Vec<SessionRow> = self
            .sessions()
            .filter(|info| !self.tofu_hidden(&info.peer))
            .map(|info| SessionRow {
                name: self.names.display(&info.peer),
                peer: info.peer,
                info,
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// Peers without a session that are expected back.
    fn link_rows(&self) -> Vec<LinkRow> {
        let now = tokio::time::Instant::now();
        let mut rows: Vec<LinkRow> = self
            .reconnect
            .expected_peers()
            .into_iter()
            .filter(|p| !self.has_session(p))
            .filter_map(|peer| {
                Some(LinkRow {
                    name: self.names.display(&peer),
                    peer,
                    status: self.reconnect.status(&peer, now)?,
                    queued: self.outbox.len(&peer),
                })
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// Refuses `peer`'s new handshakes (the user disconnected it); says so if it cannot.
    async fn refuse_peer(&mut self, peer: PeerId) {
        if let Err(e) = self.chat().refuse_peer(peer) {
            let name = self.names.display(&peer);
            self.emit(Output::Notice(format!("{name} can connect again: {e}")))
                .await;
        }
    }

    /// Lets `peer` in again (the user connects to it), unless the user blocked it: only
    /// `unblock` lifts a block. Returns whether the peer may connect now.
    pub(super) fn allow_peer(&mut self, peer: &PeerId) -> bool {
        if self.trust.is_blocked(peer) {
            return false;
        }
        if self.chat().allow_peer(peer) {
            tracing::debug!(%peer, "allowed again");
        }
        true
    }

    /// The error for a `connect` to a blocked peer.
    pub(super) fn blocked_error(&self, peer: &PeerId) -> CommandError {
        let name = self
            .trust
            .get(peer)
            .map(|k| k.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.names.display(peer));
        CommandError::Blocked(name)
    }

    fn peer_rows(&mut self) -> Vec<PeerRow> {
        let peers = self.known_peers();
        let now = tokio::time::Instant::now();
        let chat = &self.swarm.behaviour().chat;
        let mut rows: Vec<PeerRow> = peers
            .iter()
            .map(|p| {
                let mut addrs: Vec<Multiaddr> =
                    self.remote_addrs.get(p).cloned().into_iter().collect();
                for d in self.discovered.get(p).into_iter().flatten() {
                    if !addrs.contains(d) {
                        addrs.push(d.clone());
                    }
                }
                let known = self.trust.get(p);
                if addrs.is_empty() {
                    addrs.extend(known.into_iter().flat_map(|k| k.addrs.iter().cloned()));
                }
                PeerRow {
                    index: 0,
                    peer: *p,
                    name: self
                        .names
                        .get(p)
                        .or(known.map(|k| &k.name).filter(|n| !n.is_empty()))
                        .cloned(),
                    addrs,
                    connected: self.swarm.is_connected(p),
                    discovered: self.discovered.contains_key(p),
                    session: chat.session(p).map(|s| s.state),
                    link: self.reconnect.status(p, now),
                    queued: self.outbox.len(p),
                    trust: self.trust.state(p),
                }
            })
            .collect();
        for r in &mut rows {
            r.index = self.names.number(r.peer);
        }
        rows.sort_by_key(|r| r.index);
        rows
    }
}

/// The peer an address names (`/p2p/PEER`), if it names one.
fn peer_in(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// The IP address and port of a `/ip4|ip6/.../tcp/PORT` multiaddr.
pub(super) fn tcp_socket_addr(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut iter = addr.iter();
    let ip: std::net::IpAddr = match iter.next()? {
        Protocol::Ip4(a) => a.into(),
        Protocol::Ip6(a) => a.into(),
        _ => return None,
    };
    match iter.next()? {
        Protocol::Tcp(port) => Some((ip, port).into()),
        _ => None,
    }
}
