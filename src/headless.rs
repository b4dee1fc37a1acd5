//! The headless face, for scripts and labs: commands are read line by line from stdin (the
//! same command language as the terminal), and every event is written to stdout as one
//! JSON object per line. The schema is documented in `HEADLESS.md`; keep the two in
//! step.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::commands::{self, Unhandled};
use crate::node::{Output, Request, human};

/// The schema version written in the `ready` event.
pub const SCHEMA_VERSION: u32 = 1;

/// Runs the headless face until the node stops.
pub async fn run(
    ready: Output,
    requests: mpsc::Sender<Request>,
    mut outputs: mpsc::Receiver<Output>,
) -> std::io::Result<()> {
    emit(&to_json(&ready));
    let printer = tokio::spawn(async move {
        while let Some(o) = outputs.recv().await {
            let stopped = matches!(o, Output::Stopped);
            emit(&to_json(&o));
            if stopped {
                break;
            }
        }
    });
    commands::drive_from_stdin(&requests, |u| match u {
        Unhandled::Hint(input, hint) => emit(&event(
            "command_error",
            json!({ "input": input, "message": hint.to_string() }),
        )),
        Unhandled::Help => emit(&event(
            "help",
            json!({ "commands": commands::HELP.iter().map(|(c, w)| json!({"command": c, "description": w})).collect::<Vec<_>>() }),
        )),
        Unhandled::ReadError(e) => emit(&event(
            "error",
            json!({ "message": format!("cannot read input: {e}") }),
        )),
    })
    .await;
    let _ = printer.await;
    Ok(())
}

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    // One object per line; a reader that went away is not our problem to crash over.
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn now_ms() -> u64 {
    ms(SystemTime::now())
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn event(kind: &str, mut fields: Value) -> Value {
    if let Value::Object(map) = &mut fields {
        map.insert("event".into(), Value::from(kind));
        map.insert("ts".into(), Value::from(now_ms()));
    }
    fields
}

/// The JSON form of an output (one line of the event stream).
pub fn to_json(o: &Output) -> Value {
    match o {
        Output::Ready {
            name,
            peer,
            secret: _,
            conn_strings,
            listen,
        } => event(
            "ready",
            json!({
                "schema": SCHEMA_VERSION,
                "name": name,
                "peer_id": peer.to_base58(),
                "conn_strings": conn_strings,
                "listen": listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            }),
        ),
        Output::Listening(a) => event("listening", json!({ "address": a.to_string() })),
        Output::KeyReady { bits, generation } => event(
            "key_ready",
            json!({ "bits": bits, "generation": generation }),
        ),
        Output::Notice(m) => event("notice", json!({ "message": m })),
        Output::Error(m) => event("error", json!({ "message": m })),
        Output::Connecting { target } => event("connecting", json!({ "target": target })),
        Output::ConnectFailed { target, error } => event(
            "connect_failed",
            json!({ "target": target, "error": error }),
        ),
        Output::SessionEstablished {
            peer,
            name,
            session,
            safety_number,
            inbound,
        } => event(
            "session_established",
            json!({
                "peer_id": peer.to_base58(),
                "name": name,
                "session": session,
                "safety_number": safety_number,
                "inbound": inbound,
            }),
        ),
        Output::SessionRotated { peer, name, epoch } => event(
            "session_rotated",
            json!({ "peer_id": peer.to_base58(), "name": name, "epoch": epoch }),
        ),
        Output::SessionClosed { peer, name, reason } => event(
            "session_closed",
            json!({ "peer_id": peer.to_base58(), "name": name, "reason": reason }),
        ),
        Output::AuthFailed {
            peer,
            address,
            banned,
        } => event(
            "auth_failed",
            json!({
                "peer_id": peer.to_base58(),
                "address": address.map(|a| a.to_string()),
                "banned": banned,
            }),
        ),
        Output::Message {
            peer,
            name,
            at,
            text,
        } => event(
            "message",
            json!({ "peer_id": peer.to_base58(), "name": name, "received_ms": ms(*at), "text": text }),
        ),
        Output::Sent {
            local,
            text,
            to,
            at,
        } => event(
            "sent",
            json!({
                "id": local,
                "text": text,
                "sent_ms": ms(*at),
                "to": to.iter().map(|(p, n)| json!({"peer_id": p.to_base58(), "name": n})).collect::<Vec<_>>(),
            }),
        ),
        Output::Delivered { local, peer, name } => event(
            "delivered",
            json!({ "id": local, "peer_id": peer.to_base58(), "name": name }),
        ),
        Output::DeliveryFailed {
            local,
            peer,
            name,
            reason,
        } => event(
            "delivery_failed",
            json!({ "id": local, "peer_id": peer.to_base58(), "name": name, "reason": reason }),
        ),
        Output::Sessions(rows) => event(
            "sessions",
            json!({
                "sessions": rows.iter().map(|r| {
                    let i = &r.info;
                    json!({
                        "peer_id": r.peer.to_base58(),
                        "name": r.name,
                        "session": i.id.short(),
                        "state": i.state.to_string(),
                        "role": i.role.to_string(),
                        "epoch": i.epoch,
                        "age_s": i.age.as_secs(),
                        "age": human(i.age),
                        "next_rotation_s": i.next_rotation_in.as_secs(),
                        "sent": i.messages_sent,
                        "received": i.messages_received,
                        "queued": i.queued,
                        "refused": i.rejections.total(),
                    })
                }).collect::<Vec<_>>()
            }),
        ),
        Output::Peers(rows) => event(
            "peers",
            json!({
                "peers": rows.iter().map(|r| json!({
                    "index": r.index,
                    "peer_id": r.peer.to_base58(),
                    "name": r.name,
                    "connected": r.connected,
                    "discovered": r.discovered,
                    "session": r.session.map(|s| s.to_string()),
                    "addrs": r.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()
            }),
        ),
        Output::Verify {
            peer,
            name,
            safety_number,
        } => event(
            "verify",
            json!({ "peer_id": peer.to_base58(), "name": name, "safety_number": safety_number }),
        ),
        Output::Discovered { peer, addrs } => event(
            "discovered",
            json!({
                "peer_id": peer.to_base58(),
                "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            }),
        ),
        Output::Expired { peer } => event("expired", json!({ "peer_id": peer.to_base58() })),
        Output::Stopped => event("stopped", json!({})),
    }
}
