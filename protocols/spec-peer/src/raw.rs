//! Framing (§3.1) on libp2p streams, the spec peer's own: [`SpecCodec`] for well-formed
//! requests and responses, and [`RawCodec`], which writes a request as exactly the given
//! bytes, for frames an honest encoder would never write.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::*;

/// The protocol id as a libp2p `StreamProtocol`.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_ID);

/// Reads one §3.1 frame body: `u32 length` (1 ..= `max`), then exactly `length` bytes.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len)
        .await
        .map_err(|e| format!("frame length: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err("frame of length 0".into());
    }
    if len > max {
        return Err(format!("frame of {len} bytes, over {max}"));
    }
    let mut body = Vec::new();
    let n = io
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(|e| format!("frame body: {e}"))?;
    if n < len {
        return Err(format!("stream ended after {n} of {len} body bytes"));
    }
    Ok(body)
}

/// Reads one response frame and decodes it (an error for anything that does not parse).
pub(crate) async fn read_response_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
) -> io::Result<Response> {
    let body = read_frame(io, MAX_FRAME_CEILING)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    decode_response(&body).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response does not parse: {e}"),
        )
    })
}

/// The spec peer's framing codec: requests and responses through this crate's own encoder
/// and decoder. A request that does not parse is handed over as [`Request::Invalid`] (so a
/// test sees what the node sent); a response that does not parse fails the request.
#[derive(Debug, Clone, Default)]
pub struct SpecCodec;

impl request_response::Codec for SpecCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match read_frame(io, DEFAULT_MAX_FRAME).await {
            Ok(body) => decode_request(&body).unwrap_or_else(|e| Request::Invalid(e.to_string())),
            Err(e) => Request::Invalid(e),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_response_frame(io).await
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
        io.write_all(&frame(&encode_request(&req))).await
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
        io.write_all(&frame(&encode_response(&resp))).await
    }
}

/// A codec that writes a request as exactly the given bytes (no framing added) and reads the
/// response frame per §3.1 itself. Outbound only.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the raw codec is outbound only"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_response_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("the raw codec is outbound only"))
    }
}
