//! Events coming up from the swarm: the chat behaviour's, mDNS's, and the swarm's own
//! (listen addresses, connections, dial failures), turned into [`Output`]s.

use std::collections::BTreeMap;
use std::time::SystemTime;

use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, mdns};
use noctua_chat::{CloseReason, Event as ChatEvent, OpenError, OpenId};

use crate::node::swarm::NodeBehaviourEvent;
use crate::node::{CommandError, ConnectError, DeliveryFailure, DialFailure, Node, Output, signal};

impl Node {
    pub(super) async fn on_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Chat(ev)) => self.on_chat(ev).await,
            SwarmEvent::Behaviour(NodeBehaviourEvent::Mdns(ev)) => self.on_mdns(ev).await,
            SwarmEvent::Behaviour(NodeBehaviourEvent::Limits(v)) => match v {},
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } if self.listeners.contains(&listener_id) && !self.listen_addrs.contains(&address) => {
                // More interfaces of a listener the banner already covered are not news.
                let covered = self.reported.contains(&listener_id);
                self.listen_addrs.push(address.clone());
                if !covered {
                    self.reported.insert(listener_id);
                    self.emit(Output::Listening(address)).await;
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                self.names.number(peer_id);
                self.remote_addrs
                    .insert(peer_id, endpoint.get_remote_address().clone());
                if endpoint.is_dialer() {
                    self.dialed
                        .insert(peer_id, endpoint.get_remote_address().clone());
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.remote_addrs.remove(&peer_id);
                self.dialed.remove(&peer_id);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!("listener error: {error}");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.on_dial_error(peer_id, &error);
            }
            _ => {}
        }
    }

    /// Classifies a failed dial once and hands the result to the `connect` that made it
    /// (matched by address, or by peer for a connect to a known peer). The protocol reports
    /// the same failure afterwards as [`OpenError::Dial`], with text only.
    fn on_dial_error(&mut self, peer: Option<PeerId>, error: &DialError) {
        let failure = DialFailure::classify(error);
        tracing::debug!(?peer, ?failure, "dial failed: {error}");
        let addrs: Vec<&Multiaddr> = match error {
            DialError::Transport(list) => list.iter().map(|(a, _)| a).collect(),
            DialError::WrongPeerId { address, .. } => vec![address],
            _ => Vec::new(),
        };
        for c in self.connects.values_mut() {
            let ours = match &c.dialing {
                Some(addr) => addrs.contains(&addr),
                None => peer.is_some() && c.peer == peer,
            };
            if ours {
                c.dial_failure = Some(failure);
            }
        }
    }

    async fn on_chat(&mut self, ev: ChatEvent) {
        match ev {
            ChatEvent::KeyReady {
                bits, generation, ..
            } => self.emit(Output::KeyReady { bits, generation }).await,
            ChatEvent::KeyGenerationFailed { error } => {
                self.emit(Output::Error(CommandError::KeyGeneration(error)))
                    .await
            }
            ChatEvent::SessionEstablished {
                peer,
                session_id,
                remote_name,
                safety_number,
                opens,
                remote_lasting,
                safety_number_lasts,
                ..
            } => {
                // Trust on first use (node/identity.rs): a refused session is closed.
                let secret = self.open_secret(&opens);
                // The address our connect dialed, for the trust book: the session may ride
                // on a connection the peer opened, which tells no address of ours.
                let dialing = opens
                    .iter()
                    .find_map(|o| self.connects.get(o).and_then(|c| c.dialing.clone()));
                if !self
                    .check_session(peer, &remote_name, secret, dialing)
                    .await
                {
                    for open in opens {
                        if let Some(c) = self.connects.remove(&open) {
                            signal(c.done);
                        }
                    }
                    return;
                }
                let name = self.names.assign(peer, &remote_name);
                let inbound = opens.is_empty();
                self.auto.established(peer, &opens);
                self.auto_open_due();
                self.reconnect.established(peer, remote_lasting);
                for open in opens {
                    if let Some(c) = self.connects.remove(&open) {
                        // We know its secret: we can re-open this session if it drops.
                        let addr = c.dialing.or_else(|| self.remote_addrs.get(&peer).cloned());
                        self.reconnect.dialed(peer, c.secret, addr);
                        signal(c.done);
                    }
                }
                self.emit(Output::SessionEstablished {
                    peer,
                    name,
                    session: session_id.short(),
                    safety_number: safety_number.to_string(),
                    lasts: safety_number_lasts,
                    verified: safety_number_lasts
                        && self.trust.state(&peer) == crate::trust::TrustState::Verified,
                    inbound,
                })
                .await;
                self.flush_outbox(peer).await;
            }
            ChatEvent::OpenFailed { open, peer, error } => {
                self.on_open_failed(open, peer, error).await
            }
            ChatEvent::InboundAuthFailed {
                peer,
                address,
                banned,
            } => {
                self.emit(Output::AuthFailed {
                    peer,
                    address,
                    banned,
                })
                .await
            }
            ChatEvent::SessionRotated { peer, epoch, .. } => {
                let name = self.names.display(&peer);
                self.emit(Output::SessionRotated { peer, name, epoch })
                    .await
            }
            ChatEvent::SessionClosed { peer, reason, .. } => {
                let name = self.names.display(&peer);
                self.auto.closed(peer, &reason);
                // A session the identity check refused was closed by us at once, and the
                // user was warned already: no second line saying we closed it.
                let refused_here =
                    self.tofu_hidden(&peer) && matches!(reason, CloseReason::LocalClosed);
                if !refused_here {
                    self.emit(Output::SessionClosed {
                        peer,
                        name,
                        reason: reason.clone(),
                    })
                    .await;
                }
                // Its name is free for others now; a peer expected back still answers to
                // it while no one else has it (`Node::resolve`).
                if !self.has_session(&peer) {
                    self.names.forget(&peer);
                }
                self.after_close(peer, &reason).await;
            }
            other => self.on_message_event(other).await,
        }
    }

    /// Messages in, and the fate of messages out.
    async fn on_message_event(&mut self, ev: ChatEvent) {
        match ev {
            ChatEvent::MessageReceived {
                peer,
                remote_name,
                message,
                ..
            } => {
                if self.tofu_hidden(&peer) {
                    return;
                }
                let name = self.names.get_or_assign(peer, &remote_name);
                self.emit(Output::Message {
                    peer,
                    name,
                    at: SystemTime::now(),
                    private: message.private,
                    text: message.text,
                })
                .await
            }
            ChatEvent::MessageDelivered { peer, message } => {
                if let Some(local) = self.outstanding.remove(&message) {
                    let name = self.names.display(&peer);
                    self.emit(Output::Delivered { local, peer, name }).await;
                }
            }
            ChatEvent::DeliveryFailed {
                peer,
                message,
                error,
            } => {
                if let Some(local) = self.outstanding.remove(&message) {
                    self.delivery_failed(local, peer, DeliveryFailure::Failed(error))
                        .await;
                }
            }
            _ => {}
        }
    }

    async fn on_open_failed(&mut self, open: OpenId, peer: Option<PeerId>, error: OpenError) {
        let now = tokio::time::Instant::now();
        if let Some((peer, plan)) = self
            .reconnect
            .open_failed(open, &error, now, rand::random())
        {
            tracing::info!(%peer, "reconnect attempt failed: {error}");
            return self.after_plan(peer, plan, Some(error)).await;
        }
        if let Some(peer) = self.auto.open_failed(open, &error) {
            // Info, not debug: a lab run at info level must show why a pair formed late.
            tracing::info!(%peer, "automatic connection failed: {error}");
            // Its slot is free: the next discovered peer's turn.
            self.auto_open_due();
            return;
        }
        let Some(mut c) = self.connects.remove(&open) else {
            return;
        };
        if let (OpenError::RefusedHere, Some(peer)) = (&error, peer)
            && self.trust.is_blocked(&peer)
        {
            // An unpinned address that turned out to be a peer the user blocked.
            let e = self.blocked_error(&peer);
            self.emit(Output::Error(e)).await;
            return signal(c.done);
        }
        if let (OpenError::RefusedHere, Some(peer)) = (&error, peer)
            && self.swarm.behaviour().chat.is_refused(&peer)
        {
            // The user disconnected this peer earlier and now connects to it again (at an
            // address that did not say who answers there): that lets it in again.
            self.allow_peer(&peer);
            let again = self.chat().open_session(peer, c.secret.clone());
            c.peer = Some(peer);
            self.connects.insert(again, c);
            return;
        }
        let OpenError::Dial(detail) = error else {
            self.emit(Output::ConnectFailed {
                target: c.label,
                error: ConnectError::Open(error),
            })
            .await;
            return signal(c.done);
        };
        let failure = c
            .dial_failure
            .take()
            .unwrap_or(DialFailure::Other)
            .or_timed_out(c.started.elapsed());
        c.errors.push(ConnectError::Dial {
            failure,
            target: c.label.clone(),
            detail,
        });
        // An unreachable first address (TCP) gets a second chance over the next one
        // (QUIC), unless the host actively refused it (wrong port: no point waiting for
        // QUIC to time out); anything the peer itself said is final.
        if failure != DialFailure::Refused
            && let Some(next) = c.addrs.pop_front()
        {
            let secret = c.secret.clone();
            let open = self.chat().connect(next.clone(), secret);
            c.dialing = Some(next);
            c.started = tokio::time::Instant::now();
            self.connects.insert(open, c);
            return;
        }
        // The first address's failure says most (TCP's answer is clearer than QUIC's).
        let mut errors = c.errors.into_iter();
        let Some(error) = errors.next() else {
            return signal(c.done);
        };
        if let (
            ConnectError::Dial {
                failure: DialFailure::TimedOut,
                ..
            },
            Some(addr),
        ) = (&error, c.first_tcp)
        {
            // Was it the host, or what answers on it? A plain TCP connect tells, without
            // holding up the event loop.
            let out = self.out.clone();
            tokio::spawn(async move {
                let error = match silent_service(addr).await {
                    true => error.silent(),
                    false => error,
                };
                let _ = out
                    .send(Output::ConnectFailed {
                        target: c.label,
                        error,
                    })
                    .await;
                signal(c.done);
            });
            return;
        }
        self.emit(Output::ConnectFailed {
            target: c.label,
            error,
        })
        .await;
        signal(c.done);
    }

    async fn on_mdns(&mut self, ev: mdns::Event) {
        match ev {
            mdns::Event::Discovered(list) => {
                let mut fresh: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
                for (peer, addr) in list {
                    let known = self.discovered.entry(peer).or_default();
                    if !known.contains(&addr) {
                        known.push(addr.clone());
                        fresh.entry(peer).or_default().push(addr);
                    }
                }
                let now = tokio::time::Instant::now();
                for (peer, addrs) in fresh {
                    self.names.number(peer);
                    self.emit(Output::Discovered { peer, addrs }).await;
                    if !self.has_session(&peer) {
                        self.auto.discovered(peer, now);
                    }
                }
                self.auto_open_due();
            }
            mdns::Event::Expired(list) => {
                let mut gone = Vec::new();
                for (peer, addr) in list {
                    if let Some(addrs) = self.discovered.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.discovered.remove(&peer);
                            gone.push(peer);
                        }
                    }
                }
                for peer in gone {
                    self.auto.forget(&peer);
                    self.emit(Output::Expired { peer }).await;
                }
            }
        }
    }
}

/// Whether something accepts TCP connections at `addr` (asked after a dial there timed
/// out: then it accepts connections but does not answer).
async fn silent_service(addr: std::net::SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}
