//! The baseline node processes (`serve-stock`, `serve-raw`): each prints `banner <address>`
//! then `ready`, serves until its stdin ends, and exits.

use std::io::{Read, Write};

use futures::StreamExt;
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;

use crate::net::{self, Transport};
use crate::{raw, stock};

/// Exits the process when stdin reaches its end (the parent closed it or died).
fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

fn say(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// A stock request-response node on the shared swarm configuration, listening on TCP.
pub async fn stock_node() {
    exit_on_stdin_eof();
    let mut swarm = stock::swarm(false);
    let addr = net::listen(&mut swarm, Transport::Tcp).await;
    say(&[format!("banner {addr}"), "ready".into()]);
    loop {
        if let SwarmEvent::Behaviour(request_response::Event::Message {
            message: Message::Request {
                request, channel, ..
            },
            ..
        }) = swarm.select_next_some().await
        {
            let _ = swarm
                .behaviour_mut()
                .send_response(channel, request.len() as u64);
        }
    }
}

/// A raw TCP acknowledging server.
pub async fn raw_node() {
    exit_on_stdin_eof();
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound address");
    say(&[format!("banner {addr}"), "ready".into()]);
    let received = std::sync::Arc::default();
    while let Ok((sock, _)) = listener.accept().await {
        tokio::spawn(raw::serve_conn(sock, std::sync::Arc::clone(&received)));
    }
}
