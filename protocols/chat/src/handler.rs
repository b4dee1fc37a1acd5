//! The connection handler: request-response's own handler, plus one switch that keeps the
//! connection open while a session with the peer exists. Without it an idle chat (nobody
//! typing) would be closed by the swarm's idle-connection timeout.

use std::task::{Context, Poll};

use libp2p::request_response;
use libp2p::swarm::handler::{ConnectionEvent, ConnectionHandler, ConnectionHandlerEvent};
use libp2p::swarm::{SubstreamProtocol, THandler, THandlerInEvent};

use crate::codec::Codec;

type Inner = THandler<request_response::Behaviour<Codec>>;

/// Messages from the behaviour to a connection's handler.
#[derive(Debug)]
pub enum HandlerIn {
    /// A request for request-response's handler.
    Request(THandlerInEvent<request_response::Behaviour<Codec>>),
    /// Keep the connection alive (a session exists) or let it idle out.
    KeepAlive(bool),
}

/// The connection handler of [`crate::Behaviour`].
pub struct Handler {
    inner: Inner,
    keep_alive: bool,
}

impl Handler {
    pub(crate) fn new(inner: Inner, keep_alive: bool) -> Self {
        Handler { inner, keep_alive }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = <Inner as ConnectionHandler>::ToBehaviour;
    type InboundProtocol = <Inner as ConnectionHandler>::InboundProtocol;
    type OutboundProtocol = <Inner as ConnectionHandler>::OutboundProtocol;
    type InboundOpenInfo = <Inner as ConnectionHandler>::InboundOpenInfo;
    type OutboundOpenInfo = <Inner as ConnectionHandler>::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive || self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: HandlerIn) {
        match event {
            HandlerIn::Request(r) => self.inner.on_behaviour_event(r),
            HandlerIn::KeepAlive(k) => self.keep_alive = k,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        self.inner.on_connection_event(event)
    }
}
