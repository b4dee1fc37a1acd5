//! The headless face, for scripts and labs: commands are read line by line from stdin (the
//! same command language as the terminal), and every event is written to stdout as one
//! JSON object per line. [`Event`] is the schema; `HEADLESS.md` documents it.

mod event;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

pub use event::{
    Event, EventLine, HelpEntry, LinkEntry, PeerEntry, Recipient, SCHEMA_VERSION, SessionEntry,
};

use crate::face::Tally;
use crate::face::commands::HELP;
use crate::face::render::human;
use crate::face::script::{self, Unhandled};
use crate::node::{LinkRow, LinkStatus, Output, PeerRow, Request, SessionRow, TrustChange};
use crate::sanitize;

/// Runs the headless face until the node stops.
pub async fn run(
    ready: Output,
    requests: mpsc::Sender<Request>,
    mut outputs: mpsc::Receiver<Output>,
) -> std::io::Result<Tally> {
    emit(Event::from(&ready));
    let printer = tokio::spawn(async move {
        let mut tally = Tally::default();
        while let Some(o) = outputs.recv().await {
            let stopped = matches!(o, Output::Stopped);
            tally.count(&o);
            emit(Event::from(&o));
            if stopped {
                break;
            }
        }
        tally
    });
    let mut refused = 0;
    script::drive_from_stdin(&requests, |u| {
        emit(match u {
            Unhandled::Hint(input, hint) => {
                refused += 1;
                Event::CommandError {
                    input: input.to_string(),
                    message: hint.to_string(),
                }
            }
            Unhandled::Help => Event::Help {
                commands: HELP
                    .iter()
                    .map(|(c, w)| HelpEntry {
                        command: c.to_string(),
                        description: w.to_string(),
                    })
                    .collect(),
            },
            Unhandled::ReadError(e) => Event::Error {
                message: format!("cannot read input: {e}"),
            },
        })
    })
    .await;
    let mut tally = printer.await.unwrap_or_default();
    for _ in 0..refused {
        tally.refused_line();
    }
    Ok(tally)
}

fn emit(event: Event) {
    let line = EventLine {
        event,
        ts: ms(SystemTime::now()),
    };
    let mut out = std::io::stdout().lock();
    // One object per line; a reader that went away is not our problem to crash over.
    let _ = writeln!(out, "{}", line.to_json());
    let _ = out.flush();
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// One arm per [`Output`] variant, in one exhaustive `match` on purpose (it runs a little
/// over 100 lines): a new output cannot be added without the compiler asking for its
/// event, and each arm reads as the schema row it writes.
impl From<&Output> for Event {
    fn from(o: &Output) -> Event {
        let id = |p: &libp2p::PeerId| p.to_base58();
        match o {
            Output::Ready {
                name,
                peer,
                secret: _,
                conn_strings,
                listen,
                pinned,
                profile,
                secret_changed,
            } => Event::Ready {
                schema: SCHEMA_VERSION,
                name: name.clone(),
                peer_id: id(peer),
                conn_strings: conn_strings.clone(),
                listen: strings(listen),
                pinned_conn_strings: pinned.clone(),
                profile: profile.clone(),
                secret_changed: *secret_changed,
            },
            Output::Listening(a) => Event::Listening {
                address: a.to_string(),
            },
            &Output::KeyReady { bits, generation } => Event::KeyReady { bits, generation },
            Output::Notice(m) => Event::Notice { message: m.clone() },
            Output::Error(e) => Event::Error {
                message: e.to_string(),
            },
            Output::Connecting { target } => Event::Connecting {
                target: target.clone(),
            },
            Output::ConnectFailed { target, error } => Event::ConnectFailed {
                target: target.clone(),
                error: error.to_string(),
            },
            Output::SessionEstablished {
                peer,
                name,
                session,
                safety_number,
                lasts,
                verified,
                inbound,
            } => Event::SessionEstablished {
                peer_id: id(peer),
                name: name.clone(),
                session: session.clone(),
                safety_number: safety_number.clone(),
                lasts: *lasts,
                verified: *verified,
                inbound: *inbound,
            },
            Output::SessionRotated { peer, name, epoch } => Event::SessionRotated {
                peer_id: id(peer),
                name: name.clone(),
                epoch: *epoch,
            },
            Output::SessionClosed { peer, name, reason } => Event::SessionClosed {
                peer_id: id(peer),
                name: name.clone(),
                reason: reason.to_string(),
            },
            Output::AuthFailed {
                peer,
                address,
                banned,
            } => Event::AuthFailed {
                peer_id: id(peer),
                address: address.map(|a| a.to_string()),
                banned: *banned,
            },
            Output::Message {
                peer,
                name,
                at,
                text,
                private,
            } => Event::Message {
                peer_id: id(peer),
                name: name.clone(),
                received_ms: ms(*at),
                // The peer's text, cleaned for whoever displays it.
                text: sanitize::message(text),
                private: *private,
            },
            Output::Sent {
                local,
                text,
                to,
                private,
                at,
            } => Event::Sent {
                private: *private,
                id: *local,
                text: text.clone(),
                sent_ms: ms(*at),
                to: to
                    .iter()
                    .map(|(p, n)| Recipient {
                        peer_id: id(p),
                        name: n.clone(),
                    })
                    .collect(),
            },
            Output::Delivered { local, peer, name } => Event::Delivered {
                id: *local,
                peer_id: id(peer),
                name: name.clone(),
            },
            Output::DeliveryFailed {
                local,
                peer,
                name,
                reason,
            } => Event::DeliveryFailed {
                id: *local,
                peer_id: id(peer),
                name: name.clone(),
                reason: reason.to_string(),
            },
            Output::Sessions { rows, down } => Event::Sessions {
                sessions: rows.iter().map(session_entry).collect(),
                down: down.iter().map(link_entry).collect(),
            },
            Output::Peers(rows) => Event::Peers {
                peers: rows.iter().map(peer_entry).collect(),
            },
            Output::Verify {
                peer,
                name,
                safety_number,
                lasts,
                trust,
            } => Event::Verify {
                peer_id: id(peer),
                name: name.clone(),
                safety_number: safety_number.clone(),
                lasts: *lasts,
                trust: trust.to_string(),
            },
            Output::IdentityWarning {
                peer,
                claimed,
                known,
                known_name,
                verified,
                addr,
            } => Event::IdentityWarning {
                peer_id: id(peer),
                name: claimed.clone(),
                known_peer_id: id(known),
                known_name: known_name.clone(),
                verified: *verified,
                address: addr.as_ref().map(ToString::to_string),
            },
            Output::BlockedPeerRefused { peer, name } => Event::BlockedRefused {
                peer_id: id(peer),
                name: name.clone(),
            },
            Output::TrustChanged { peer, name, change } => {
                let (peer_id, name) = (id(peer), name.clone());
                match change {
                    TrustChange::Trusted => Event::Trusted { peer_id, name },
                    TrustChange::Forgotten => Event::Forgotten { peer_id, name },
                    TrustChange::Blocked => Event::Blocked { peer_id, name },
                    TrustChange::Unblocked => Event::Unblocked { peer_id, name },
                }
            }
            Output::SecretChanged {
                secret: _,
                conn_strings,
                pinned,
                saved,
            } => Event::SecretChanged {
                conn_strings: conn_strings.clone(),
                pinned_conn_strings: pinned.clone(),
                saved: *saved,
            },
            Output::Discovered { peer, addrs } => Event::Discovered {
                peer_id: id(peer),
                addrs: strings(addrs),
            },
            Output::Expired { peer } => Event::Expired { peer_id: id(peer) },
            Output::Reconnecting {
                peer,
                name,
                attempt,
                next_in,
            } => Event::Reconnecting {
                peer_id: id(peer),
                name: name.clone(),
                attempt: *attempt,
                next_in_ms: millis(*next_in),
            },
            Output::Waiting { peer, name } => Event::Waiting {
                peer_id: id(peer),
                name: name.clone(),
            },
            Output::ReconnectStopped { peer, name, error } => Event::ReconnectStopped {
                peer_id: id(peer),
                name: name.clone(),
                error: error.to_string(),
            },
            Output::Disconnected { peer, name } => Event::Disconnected {
                peer_id: id(peer),
                name: name.clone(),
            },
            Output::Queued {
                local,
                peer,
                name,
                waiting,
            } => Event::Queued {
                id: *local,
                peer_id: id(peer),
                name: name.clone(),
                waiting: *waiting,
            },
            Output::NotDelivered {
                local,
                peer,
                name,
                reason,
            } => Event::NotDelivered {
                id: *local,
                peer_id: id(peer),
                name: name.clone(),
                reason: reason.code().to_string(),
                message: reason.to_string(),
            },
            Output::Stopped => Event::Stopped,
        }
    }
}

fn session_entry(r: &SessionRow) -> SessionEntry {
    let i = &r.info;
    SessionEntry {
        peer_id: r.peer.to_base58(),
        name: r.name.clone(),
        session: i.id.short(),
        state: i.state.to_string(),
        role: i.role.to_string(),
        epoch: i.epoch,
        age_s: i.age.as_secs(),
        age: human(i.age),
        next_rotation_s: i.next_rotation_in.as_secs(),
        sent: i.messages_sent,
        received: i.messages_received,
        queued: i.queued,
        refused: i.rejections.total(),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `reconnecting`/`waiting`, the attempt and the time to it.
fn link_fields(s: &LinkStatus) -> (String, Option<u32>, Option<u64>) {
    match s {
        LinkStatus::Reconnecting { attempt, next_in } => (
            "reconnecting".into(),
            Some(*attempt),
            Some(millis(*next_in)),
        ),
        LinkStatus::Waiting => ("waiting".into(), None, None),
    }
}

fn link_entry(r: &LinkRow) -> LinkEntry {
    let (link, attempt, next_in_ms) = link_fields(&r.status);
    LinkEntry {
        peer_id: r.peer.to_base58(),
        name: r.name.clone(),
        link,
        attempt,
        next_in_ms,
        queued: r.queued,
    }
}

fn peer_entry(r: &PeerRow) -> PeerEntry {
    let (link, attempt, next_in_ms) = match &r.link {
        Some(s) => {
            let (l, a, n) = link_fields(s);
            (Some(l), a, n)
        }
        None => (None, None, None),
    };
    PeerEntry {
        link,
        attempt,
        next_in_ms,
        queued: r.queued,
        index: r.index,
        peer_id: r.peer.to_base58(),
        name: r.name.clone(),
        connected: r.connected,
        discovered: r.discovered,
        session: r.session.map(|s| s.to_string()),
        state: r.session.map(|s| s.to_string()),
        addrs: strings(&r.addrs),
        trust: r.trust.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use libp2p::PeerId;
    use noctua_chat::{CloseReason, DeliveryError};

    use super::*;
    use crate::node::DeliveryFailure;

    /// Lines as schema 1 has always written them (keys in alphabetical order, `null` for
    /// absent values): the typed events must reproduce them byte for byte. (Issue 11 added
    /// `peers[].state`, the same as `peers[].session`, whose name misled.)
    #[test]
    fn lines_are_byte_for_byte_those_of_schema_1() {
        let peer: PeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            .parse()
            .expect("peer id");
        let at = UNIX_EPOCH + Duration::from_millis(1_795_640_000_102);
        let line = |o: Output| {
            EventLine {
                event: Event::from(&o),
                ts: 1_795_640_000_104,
            }
            .to_json()
        };
        let id = peer.to_base58();
        assert_eq!(
            line(Output::KeyReady {
                bits: 2048,
                generation: 0
            }),
            r#"{"bits":2048,"event":"key_ready","generation":0,"ts":1795640000104}"#
        );
        assert_eq!(
            line(Output::Sent {
                local: 1,
                text: "hello".into(),
                to: vec![(peer, "Alice".into())],
                private: false,
                at,
            }),
            format!(
                r#"{{"event":"sent","id":1,"sent_ms":1795640000102,"text":"hello","to":[{{"name":"Alice","peer_id":"{id}"}}],"ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::DeliveryFailed {
                local: 7,
                peer,
                name: "Alice".into(),
                reason: DeliveryFailure::Failed(DeliveryError::SessionClosed(
                    CloseReason::ConnectionLost.to_string()
                )),
            }),
            format!(
                r#"{{"event":"delivery_failed","id":7,"name":"Alice","peer_id":"{id}","reason":"session closed: connection lost","ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::AuthFailed {
                peer,
                address: None,
                banned: false,
            }),
            format!(
                r#"{{"address":null,"banned":false,"event":"auth_failed","peer_id":"{id}","ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::AuthFailed {
                peer,
                address: Some(IpAddr::from([10, 77, 0, 2])),
                banned: true,
            }),
            format!(
                r#"{{"address":"10.77.0.2","banned":true,"event":"auth_failed","peer_id":"{id}","ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::Peers(vec![PeerRow {
                index: 1,
                peer,
                name: None,
                addrs: vec!["/ip4/10.77.0.2/tcp/4001".parse().expect("multiaddr")],
                connected: false,
                discovered: true,
                session: None,
                link: None,
                queued: 0,
                trust: crate::trust::TrustState::Pinned,
            }])),
            format!(
                r#"{{"event":"peers","peers":[{{"addrs":["/ip4/10.77.0.2/tcp/4001"],"connected":false,"discovered":true,"index":1,"name":null,"peer_id":"{id}","session":null,"state":null,"trust":"pinned"}}],"ts":1795640000104}}"#
            )
        );
        // Issue 12: reconnecting and the outbox.
        assert_eq!(
            line(Output::Reconnecting {
                peer,
                name: "Bob".into(),
                attempt: 3,
                next_in: Duration::from_millis(4200),
            }),
            format!(
                r#"{{"attempt":3,"event":"reconnecting","name":"Bob","next_in_ms":4200,"peer_id":"{id}","ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::Queued {
                local: 7,
                peer,
                name: "Bob".into(),
                waiting: 2,
            }),
            format!(
                r#"{{"event":"queued","id":7,"name":"Bob","peer_id":"{id}","ts":1795640000104,"waiting":2}}"#
            )
        );
        assert_eq!(
            line(Output::NotDelivered {
                local: 7,
                peer,
                name: "Bob".into(),
                reason: crate::node::Undelivered::Expired(Duration::from_secs(2)),
            }),
            format!(
                r#"{{"event":"not_delivered","id":7,"message":"the peer did not come back within 2 s","name":"Bob","peer_id":"{id}","reason":"expired","ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::Sessions {
                rows: vec![],
                down: vec![LinkRow {
                    name: "Bob".into(),
                    peer,
                    status: LinkStatus::Waiting,
                    queued: 1,
                }],
            }),
            format!(
                r#"{{"down":[{{"link":"waiting","name":"Bob","peer_id":"{id}","queued":1}}],"event":"sessions","sessions":[],"ts":1795640000104}}"#
            )
        );
        assert_eq!(
            line(Output::Sessions {
                rows: vec![],
                down: vec![],
            }),
            r#"{"event":"sessions","sessions":[],"ts":1795640000104}"#,
            "schema 1's line when nothing is down"
        );
        assert_eq!(
            line(Output::Stopped),
            r#"{"event":"stopped","ts":1795640000104}"#
        );
    }

    #[test]
    fn every_line_parses_back_to_its_event() {
        let lines = [
            r#"{"event":"stopped","ts":5}"#,
            r#"{"event":"notice","message":"hi","ts":6}"#,
            r#"{"commands":[{"command":"help, h","description":"this help"}],"event":"help","ts":7}"#,
            r#"{"event":"command_error","input":"/x","message":"unknown","ts":8}"#,
        ];
        for l in lines {
            let parsed = EventLine::parse(l).expect("parses");
            assert_eq!(parsed.to_json(), l);
        }
        assert_eq!(
            EventLine::parse(lines[1]).expect("parses").event,
            Event::Notice {
                message: "hi".into()
            }
        );
    }

    #[test]
    fn message_text_is_cleaned_for_display() {
        let e = Event::from(&Output::Message {
            peer: PeerId::random(),
            name: "Bob".into(),
            at: UNIX_EPOCH,
            text: "red\u{1b}[31m text\u{202e}".into(),
            private: false,
        });
        let Event::Message { text, .. } = e else {
            panic!("not a message: {e:?}")
        };
        assert_eq!(text, "red text");
    }

    #[test]
    fn a_private_message_says_so_and_a_broadcast_leaves_the_field_out() {
        let line = |private| {
            EventLine {
                event: Event::from(&Output::Message {
                    peer: PeerId::random(),
                    name: "Bob".into(),
                    at: UNIX_EPOCH,
                    text: "hi".into(),
                    private,
                }),
                ts: 0,
            }
            .to_json()
        };
        assert!(line(true).contains(r#""private":true"#), "{}", line(true));
        assert!(!line(false).contains("private"), "{}", line(false));
    }
}
