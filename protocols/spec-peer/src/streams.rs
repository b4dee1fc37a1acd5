//! Raw streams under the test's full control, for hostile peers.
//!
//! request-response writes a request, closes its side of the stream and only then reads the
//! response, and it bounds its own streams: it can neither stall, nor trickle a body, nor
//! keep writing past the node's answer. [`RawStreams`] instead hands each negotiated
//! `/noctua/chat/2.0.0` stream to the test, and [`run_script`] drives it: write some bytes,
//! then stall, trickle, flood or close, while reading whatever the node answers.

use std::collections::VecDeque;
use std::task::Poll;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, StreamProtocol};

use crate::*;

/// What a hostile stream writes.
#[derive(Debug, Clone)]
pub enum Script {
    /// Write `bytes`, then close our side (a normal request when `bytes` is one frame).
    Send(Vec<u8>),
    /// Write `bytes` (possibly none), then keep the stream open and send nothing more.
    Stall(Vec<u8>),
    /// Write `bytes`, then one more byte every `every`, for ever (a body that never ends).
    Trickle(Vec<u8>, Duration),
    /// Write `bytes`, then as many more as the stream accepts, up to `limit` bytes in total.
    Flood(Vec<u8>, usize),
}

impl Script {
    /// A well-formed request, framed.
    pub fn request(req: &Request) -> Script {
        Script::Send(frame(&encode_request(req)))
    }
}

/// How a hostile stream ended, seen from the hostile side.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The node answered with this frame.
    Response(Response),
    /// The node closed or reset the stream without a (decodable) answer.
    Ended(String),
    /// The stream could not be opened (negotiation failed, connection gone, ...).
    OpenFailed(String),
    /// Nothing happened before our own deadline.
    NoAnswer,
}

impl Outcome {
    /// The `REJECT` code, if the node answered `REJECT`.
    pub fn reject_code(&self) -> Option<RejectCode> {
        match self {
            Outcome::Response(Response::Reject { code, .. }) => Some(*code),
            _ => None,
        }
    }

    /// A short name for tallies.
    pub fn label(&self) -> String {
        match self {
            Outcome::Response(Response::Reject { code, .. }) => format!("REJECT {code:?}"),
            Outcome::Response(r) => format!("{r:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_string(),
            Outcome::Ended(_) => "stream ended without answer".into(),
            Outcome::OpenFailed(_) => "stream not opened".into(),
            Outcome::NoAnswer => "no answer".into(),
        }
    }
}

/// The result of [`run_script`].
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// What the node did.
    pub outcome: Outcome,
    /// Bytes we managed to write (prefix included) before the outcome.
    pub written: usize,
    /// From the stream's opening to the outcome.
    pub elapsed: Duration,
}

/// Runs `script` on `stream` and reads the node's answer concurrently, for at most `limit`.
pub async fn run_script(stream: libp2p::Stream, script: Script, limit: Duration) -> StreamOutcome {
    use futures::future::Either;
    let started = std::time::Instant::now();
    let (mut r, mut w) = stream.split();
    let written = std::sync::atomic::AtomicUsize::new(0);
    let count = |n: usize| {
        written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    let reader = async {
        match read_response_frame(&mut r).await {
            Ok(resp) => Outcome::Response(resp),
            Err(e) => Outcome::Ended(e.to_string()),
        }
    };
    let writer = async {
        let (prefix, rest) = match &script {
            Script::Send(b) | Script::Stall(b) | Script::Trickle(b, _) | Script::Flood(b, _) => {
                (b.as_slice(), &script)
            }
        };
        if w.write_all(prefix).await.is_ok() && w.flush().await.is_ok() {
            count(prefix.len());
            match rest {
                Script::Send(_) => {
                    let _ = w.close().await;
                }
                Script::Stall(_) => {}
                Script::Trickle(_, every) => loop {
                    tokio::time::sleep(*every).await;
                    if w.write_all(&[0x42]).await.is_err() || w.flush().await.is_err() {
                        break;
                    }
                    count(1);
                },
                Script::Flood(_, limit) => {
                    let chunk = vec![0x42u8; 16 * 1024];
                    let mut total = prefix.len();
                    while total < *limit {
                        let n = chunk.len().min(*limit - total);
                        if w.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        total += n;
                        count(n);
                    }
                    let _ = w.flush().await;
                }
            }
        }
        // Whatever happened to our side, the outcome is decided by the reader.
        futures::future::pending::<()>().await
    };
    let both = async {
        futures::pin_mut!(reader, writer);
        match futures::future::select(reader, writer).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(((), _)) => unreachable!("the writer never finishes"),
        }
    };
    let outcome = tokio::time::timeout(limit, both)
        .await
        .unwrap_or(Outcome::NoAnswer);
    StreamOutcome {
        outcome,
        written: written.load(std::sync::atomic::Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// A negotiated stream (or why it could not be opened), with the tag given to
/// [`RawStreams::open`].
pub type OpenedStream = (u64, Result<libp2p::Stream, String>);

/// A behaviour that opens raw `/noctua/chat/2.0.0` streams on request and hands them over a
/// channel. It accepts no inbound stream.
pub struct RawStreams {
    opens: VecDeque<(PeerId, u64)>,
    tx: futures::channel::mpsc::UnboundedSender<OpenedStream>,
    waker: Option<std::task::Waker>,
}

impl RawStreams {
    /// The behaviour, and the receiving end of its streams.
    pub fn new() -> (
        Self,
        futures::channel::mpsc::UnboundedReceiver<OpenedStream>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (
            RawStreams {
                opens: VecDeque::new(),
                tx,
                waker: None,
            },
            rx,
        )
    }

    /// Opens a stream to `peer` (which must be connected); it arrives with `tag`.
    pub fn open(&mut self, peer: PeerId, tag: u64) {
        self.opens.push_back((peer, tag));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The connection handler of [`RawStreams`].
pub struct RawHandler {
    opens: VecDeque<u64>,
    tx: futures::channel::mpsc::UnboundedSender<OpenedStream>,
}

impl libp2p::swarm::ConnectionHandler for RawHandler {
    type FromBehaviour = u64;
    type ToBehaviour = std::convert::Infallible;
    type InboundProtocol = libp2p::core::upgrade::DeniedUpgrade;
    type OutboundProtocol = libp2p::core::upgrade::ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = u64;

    fn listen_protocol(
        &self,
    ) -> libp2p::swarm::SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        libp2p::swarm::SubstreamProtocol::new(libp2p::core::upgrade::DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> Poll<
        libp2p::swarm::ConnectionHandlerEvent<
            Self::OutboundProtocol,
            Self::OutboundOpenInfo,
            Self::ToBehaviour,
        >,
    > {
        match self.opens.pop_front() {
            Some(tag) => Poll::Ready(
                libp2p::swarm::ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: libp2p::swarm::SubstreamProtocol::new(
                        libp2p::core::upgrade::ReadyUpgrade::new(PROTOCOL),
                        tag,
                    )
                    .with_timeout(Duration::from_secs(20)),
                },
            ),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, tag: u64) {
        self.opens.push_back(tag);
    }

    fn on_connection_event(
        &mut self,
        event: libp2p::swarm::handler::ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedOutbound};
        match event {
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol,
                info,
            }) => {
                let _ = self.tx.unbounded_send((info, Ok(protocol)));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info, error }) => {
                let _ = self.tx.unbounded_send((info, Err(error.to_string())));
            }
            _ => {}
        }
    }
}

impl NetworkBehaviour for RawStreams {
    type ConnectionHandler = RawHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &libp2p::Multiaddr,
        _: &libp2p::Multiaddr,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(RawHandler {
            opens: VecDeque::new(),
            tx: self.tx.clone(),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &libp2p::Multiaddr,
        _: libp2p::core::Endpoint,
        _: libp2p::core::transport::PortUse,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(RawHandler {
            opens: VecDeque::new(),
            tx: self.tx.clone(),
        })
    }

    fn on_swarm_event(&mut self, _: libp2p::swarm::FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: libp2p::swarm::ConnectionId,
        event: libp2p::swarm::THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<libp2p::swarm::ToSwarm<Self::ToSwarm, libp2p::swarm::THandlerInEvent<Self>>> {
        if let Some((peer_id, tag)) = self.opens.pop_front() {
            return Poll::Ready(libp2p::swarm::ToSwarm::NotifyHandler {
                peer_id,
                handler: libp2p::swarm::NotifyHandler::Any,
                event: tag,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
