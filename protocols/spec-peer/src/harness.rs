//! The spec peer's swarm, and a [`Harness`] that runs it against an honest node
//! (`noctua_chat::Behaviour`) on the memory transport, driving both together.

use std::collections::{HashMap, VecDeque};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, Swarm};
use libp2p_swarm_test::SwarmExt;
use noctua_chat::Config;

use crate::*;

/// The spec peer's behaviour: the protocol through its own framing codec ([`SpecCodec`]),
/// plus an outbound-only channel that writes arbitrary bytes.
#[derive(NetworkBehaviour)]
pub struct SpecBehaviour {
    /// Well-formed requests and responses.
    pub chat: request_response::Behaviour<SpecCodec>,
    /// Hand-made bytes.
    pub raw: request_response::Behaviour<RawCodec>,
}

impl SpecBehaviour {
    /// A spec peer behaviour.
    pub fn new() -> Self {
        let cfg = request_response::Config::default().with_request_timeout(Duration::from_secs(25));
        SpecBehaviour {
            chat: request_response::Behaviour::with_codec(
                SpecCodec,
                [(PROTOCOL, ProtocolSupport::Full)],
                cfg.clone(),
            ),
            raw: request_response::Behaviour::with_codec(
                RawCodec,
                [(PROTOCOL, ProtocolSupport::Outbound)],
                cfg,
            ),
        }
    }
}

impl Default for SpecBehaviour {
    fn default() -> Self {
        Self::new()
    }
}

enum Step {
    Node(SwarmEvent<noctua_chat::Event>),
    Spec(SwarmEvent<SpecBehaviourEvent>),
}

/// An honest node (`noctua_chat::Behaviour`) and a spec peer, connected over the memory
/// transport, driven together.
pub struct Harness {
    /// The node under test.
    pub node: Swarm<noctua_chat::Behaviour>,
    /// The spec peer.
    pub spec: Swarm<SpecBehaviour>,
    /// The node's `PeerId`.
    pub node_id: PeerId,
    /// The spec peer's `PeerId`.
    pub spec_id: PeerId,
    /// Node behaviour events not consumed yet, in order.
    pub node_events: VecDeque<noctua_chat::Event>,
    /// Requests the node sent to the spec peer, not answered yet.
    pub inbound: VecDeque<(Request, ResponseChannel<Response>)>,
    /// Everything else that happened, for failure messages.
    pub log: Vec<String>,
    responses: HashMap<OutboundRequestId, Result<Response, String>>,
    raw_responses: HashMap<OutboundRequestId, Result<Response, String>>,
    flip: bool,
}

/// The node's default configuration for tests: `secret`, a display name and the cached key.
pub fn node_config(secret: noctua_chat::Secret) -> Config {
    Config::new(secret)
        .with_name("Node")
        .with_rsa_key(node_key(0))
}

impl Harness {
    /// Starts a node with `config`, a spec peer, and connects the spec peer to the node.
    pub async fn new(config: Config) -> Harness {
        let mut node = Swarm::new_ephemeral_tokio(|kp| {
            noctua_chat::Behaviour::new(kp.public().to_peer_id(), config)
        });
        let mut spec = Swarm::new_ephemeral_tokio(|_| SpecBehaviour::new());
        node.listen().with_memory_addr_external().await;
        spec.connect(&mut node).await;
        let node_id = *node.local_peer_id();
        let spec_id = *spec.local_peer_id();
        Harness {
            node,
            spec,
            node_id,
            spec_id,
            node_events: VecDeque::new(),
            inbound: VecDeque::new(),
            log: Vec::new(),
            responses: HashMap::new(),
            raw_responses: HashMap::new(),
            flip: false,
        }
    }

    /// The node's behaviour.
    pub fn behaviour(&mut self) -> &mut noctua_chat::Behaviour {
        self.node.behaviour_mut()
    }

    /// A fresh handshake as initiator towards the node with `secret` (its text).
    pub fn initiator(&self, secret: &str) -> SpecInitiator {
        SpecInitiator::new(
            self.spec_id,
            self.node_id,
            secret.as_bytes(),
            spec_rsa_key(),
        )
    }

    async fn step(&mut self) -> Step {
        let node = &mut self.node;
        let spec = &mut self.spec;
        let flip = &mut self.flip;
        futures::future::poll_fn(|cx| {
            *flip = !*flip;
            for first in [*flip, !*flip] {
                if first {
                    if let Poll::Ready(Some(e)) = node.poll_next_unpin(cx) {
                        return Poll::Ready(Step::Node(e));
                    }
                } else if let Poll::Ready(Some(e)) = spec.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Spec(e));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Polls both swarms once and files what came out.
    pub async fn pump(&mut self) {
        match self.step().await {
            Step::Node(SwarmEvent::Behaviour(e)) => {
                self.log.push(format!("node: {e:?}"));
                self.node_events.push_back(e);
            }
            Step::Node(e) => self.log.push(format!("node swarm: {e:?}")),
            Step::Spec(SwarmEvent::Behaviour(SpecBehaviourEvent::Chat(e))) => match e {
                request_response::Event::Message { message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.log.push(format!("spec: inbound {request:?}"));
                        self.inbound.push_back((request, channel));
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.log.push(format!("spec: response {response:?}"));
                        self.responses.insert(request_id, Ok(response));
                    }
                },
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    self.log.push(format!("spec: outbound failure {error}"));
                    self.responses.insert(request_id, Err(error.to_string()));
                }
                other => self.log.push(format!("spec: {other:?}")),
            },
            Step::Spec(SwarmEvent::Behaviour(SpecBehaviourEvent::Raw(e))) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } => {
                    self.log.push(format!("spec raw: response {response:?}"));
                    self.raw_responses.insert(request_id, Ok(response));
                }
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    self.log.push(format!("spec raw: outbound failure {error}"));
                    self.raw_responses
                        .insert(request_id, Err(error.to_string()));
                }
                other => self.log.push(format!("spec raw: {other:?}")),
            },
            Step::Spec(e) => self.log.push(format!("spec swarm: {e:?}")),
        }
    }

    /// Sends `req` from the spec peer to the node and waits for the response.
    pub async fn request(&mut self, req: Request) -> Result<Response, String> {
        let id = self
            .spec
            .behaviour_mut()
            .chat
            .send_request(&self.node_id, req);
        loop {
            if let Some(r) = self.responses.remove(&id) {
                return r;
            }
            self.pump().await;
        }
    }

    /// Sends `req` and expects a response of a given shape, panicking with the log otherwise.
    pub async fn expect<T>(
        &mut self,
        req: Request,
        what: &str,
        f: impl FnOnce(Response) -> Option<T>,
    ) -> T {
        let resp = self.request(req).await;
        let shown = format!("{resp:?}");
        match resp.ok().and_then(f) {
            Some(t) => t,
            None => panic!(
                "expected {what}, got {shown}\nlog:\n{}",
                self.log.join("\n")
            ),
        }
    }

    /// Sends a `HELLO` and expects `CHALLENGE`.
    pub async fn expect_challenge(&mut self, hello: Request) -> Challenge {
        self.expect(hello, "CHALLENGE", |r| match r {
            Response::Challenge(c) => Some(c),
            _ => None,
        })
        .await
    }

    /// Sends an `AUTH` and expects `AUTH_OK`.
    pub async fn expect_auth_ok(&mut self, auth: Request) -> AuthOk {
        self.expect(auth, "AUTH_OK", |r| match r {
            Response::AuthOk(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Sends `req` and expects `REJECT code`; returns the detail.
    pub async fn expect_reject(&mut self, req: Request, code: RejectCode) -> u32 {
        let resp = self.request(req).await;
        match resp {
            Ok(Response::Reject { code: c, detail }) if c == code => detail,
            other => panic!(
                "expected REJECT {code:?}, got {other:?}\nlog:\n{}",
                self.log.join("\n")
            ),
        }
    }

    /// Writes `bytes` verbatim on a new stream and waits for the response frame.
    pub async fn raw_request(&mut self, bytes: Vec<u8>) -> Result<Response, String> {
        let id = self
            .spec
            .behaviour_mut()
            .raw
            .send_request(&self.node_id, bytes);
        loop {
            if let Some(r) = self.raw_responses.remove(&id) {
                return r;
            }
            self.pump().await;
        }
    }

    /// Waits for a node event that `f` maps to `Some` (earlier unmatched events stay queued).
    pub async fn node_event<T>(
        &mut self,
        mut f: impl FnMut(&noctua_chat::Event) -> Option<T>,
    ) -> T {
        loop {
            if let Some(i) = self.node_events.iter().position(|e| f(e).is_some()) {
                let e = self.node_events.remove(i).expect("index in range");
                return f(&e).expect("matched above");
            }
            self.pump().await;
        }
    }

    /// Waits for the next request the node sends to the spec peer.
    pub async fn next_inbound(&mut self) -> (Request, ResponseChannel<Response>) {
        loop {
            if let Some(x) = self.inbound.pop_front() {
                return x;
            }
            self.pump().await;
        }
    }

    /// Answers an inbound request.
    pub fn respond(&mut self, ch: ResponseChannel<Response>, resp: Response) {
        self.spec
            .behaviour_mut()
            .chat
            .send_response(ch, resp)
            .expect("response channel open");
    }

    /// Runs a full honest handshake as initiator with `secret`; returns the session once the
    /// node's `ACK` of our confirmation verified.
    pub async fn handshake(&mut self, secret: &str) -> SpecSession {
        let init = self.initiator(secret);
        let hello = init.hello();
        let ch = self
            .expect(hello, "CHALLENGE", |r| match r {
                Response::Challenge(c) => Some(c),
                _ => None,
            })
            .await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let ok = self
            .expect(sent.auth(), "AUTH_OK", |r| match r {
                Response::AuthOk(a) => Some(a),
                _ => None,
            })
            .await;
        let mut session = sent.on_auth_ok(&ok).expect("AUTH_OK verifies");
        let confirm = session.confirmation();
        let ack = self
            .expect(Request::Record(confirm.clone()), "ACK", |r| match r {
                Response::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        session
            .verify_ack(&confirm, &ack)
            .expect("ACK of the confirmation verifies");
        session
    }

    /// Sends our record and expects a verified `ACK`.
    pub async fn send_acked(&mut self, session: &SpecSession, rec: Record) {
        let ack = self
            .expect(Request::Record(rec.clone()), "ACK", |r| match r {
                Response::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        if let Err(e) = session.verify_ack(&rec, &ack) {
            panic!("{e}\nlog:\n{}", self.log.join("\n"));
        }
    }

    /// Sends our record and expects `REPLY`; returns its record.
    pub async fn send_for_reply(&mut self, rec: Record) -> Record {
        self.expect(Request::Record(rec), "REPLY", |r| match r {
            Response::Reply(rec) => Some(rec),
            _ => None,
        })
        .await
    }

    /// Lets the node run a handshake as initiator towards the spec peer (after
    /// `open_session`/`connect` on the node): answers its `HELLO`, `AUTH` and confirmation
    /// record. Returns the session (confirmed) once the `ACK` is on its way.
    pub async fn accept_handshake(&mut self, responder: &mut SpecResponder) -> SpecSession {
        let node_id = self.node_id;
        let (req, ch) = self.next_inbound().await;
        let Request::Hello(hello) = req else {
            panic!("expected HELLO from the node, got {req:?}");
        };
        let resp = responder.on_hello(node_id, &hello);
        assert!(
            matches!(resp, Response::Challenge(_)),
            "HELLO refused: {resp:?}"
        );
        self.respond(ch, resp);
        let (req, ch) = self.next_inbound().await;
        let Request::Auth(auth) = req else {
            panic!("expected AUTH from the node, got {req:?}");
        };
        let (resp, session) = responder.on_auth(node_id, &auth);
        self.respond(ch, resp.clone());
        let Some(mut session) = session else {
            panic!("AUTH refused: {resp:?}");
        };
        let (rec, answered) = self.answer_next(&mut session).await;
        assert_eq!((rec.epoch, rec.sender, rec.seq), (0, Role::Initiator, 0));
        assert!(
            matches!(answered.content, Some(Content::Profile { .. })),
            "first record is PROFILE: {answered:?}"
        );
        assert!(session.confirmed);
        session
    }

    /// Waits for the next `RECORD` the node sends, answers it as the spec says (see
    /// [`SpecSession::answer`]) and returns the record and what was answered.
    pub async fn answer_next(&mut self, session: &mut SpecSession) -> (Record, Answered) {
        let (req, ch) = self.next_inbound().await;
        let Request::Record(rec) = req else {
            panic!("expected a RECORD from the node, got {req:?}");
        };
        let answered = session.answer(&rec);
        self.respond(ch, answered.response.clone());
        (rec, answered)
    }
}
