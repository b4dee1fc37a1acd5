//! Bounded framing of requests and responses on libp2p streams (SPEC.md §3.1), as a
//! `request_response::Codec`.
//!
//! Unlike libp2p's stock codecs, a frame that is too large, truncated or undecodable is not
//! turned into a stream error (which request-response drops without telling anyone): it is
//! handed to the behaviour as [`Request::Invalid`], so it can be answered, counted and
//! attributed to the peer that sent it.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::wire::{Request, Response, WireError, decode_request, decode_response};
use crate::wire::{encode_request, encode_response};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/noctua/chat/2.0.0");

/// The `/noctua/chat/2.0.0` codec: one length-prefixed frame per request and response.
#[derive(Debug, Clone)]
pub struct Codec {
    max_frame: usize,
}

impl Codec {
    /// A codec that refuses frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Codec { max_frame }
    }

    async fn read_frame<T>(&self, io: &mut T) -> io::Result<Result<Vec<u8>, WireError>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut len = [0u8; 4];
        match io.read_exact(&mut len).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Err(WireError::Truncated));
            }
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Ok(Err(WireError::Invalid("empty frame")));
        }
        if len > self.max_frame {
            // Do not read the body: answer at once and let the stream go.
            return Ok(Err(WireError::TooLarge {
                what: "frame",
                len: len as u64,
                max: self.max_frame as u64,
            }));
        }
        // Grow the buffer as bytes arrive rather than trusting the announced length: a peer
        // that announces a large frame and sends nothing costs us nothing.
        let mut body = Vec::with_capacity(len.min(16 * 1024));
        let n = io.take(len as u64).read_to_end(&mut body).await?;
        if n < len {
            return Ok(Err(WireError::Truncated));
        }
        Ok(Ok(body))
    }

    async fn write_frame<T>(&self, io: &mut T, body: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| (*l as usize) <= self.max_frame)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        // One buffer, one write: fewer syscalls and yamux frames per message.
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&body);
        io.write_all(&frame).await
    }
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match self.read_frame(io).await? {
            Ok(body) => decode_request(&body).unwrap_or_else(Request::Invalid),
            Err(e) => Request::Invalid(e),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match self.read_frame(io).await? {
            Ok(body) => decode_response(&body).unwrap_or_else(Response::Invalid),
            Err(e) => Response::Invalid(e),
        })
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, encode_request(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, encode_response(&resp)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec as _;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    fn read(codec: &mut Codec, bytes: Vec<u8>) -> Request {
        futures::executor::block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(bytes))).unwrap()
    }

    #[test]
    fn oversized_frame_is_reported_without_reading_the_body() {
        let mut c = Codec::new(1000);
        let mut bytes = 5000u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 10]);
        match read(&mut c, bytes) {
            Request::Invalid(WireError::TooLarge { len, max, .. }) => {
                assert_eq!((len, max), (5000, 1000))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_empty_frames_are_invalid() {
        let mut c = Codec::new(1000);
        assert!(matches!(
            read(&mut c, vec![0, 0]),
            Request::Invalid(WireError::Truncated)
        ));
        assert!(matches!(
            read(&mut c, vec![0, 0, 0, 9, 1, 2]),
            Request::Invalid(WireError::Truncated)
        ));
        assert!(matches!(
            read(&mut c, vec![0, 0, 0, 0]),
            Request::Invalid(_)
        ));
        assert!(matches!(
            read(&mut c, frame(&[0xee])),
            Request::Invalid(WireError::UnknownType(0xee))
        ));
    }

    #[test]
    fn round_trip_through_a_stream() {
        let mut c = Codec::new(1000);
        let req = Request::Abort {
            hs_id: [3; 16],
            code: 5,
        };
        let mut out = Vec::new();
        futures::executor::block_on(c.write_request(&PROTOCOL, &mut out, req.clone())).unwrap();
        assert_eq!(read(&mut c, out), req);
    }
}
