//! Raw bytes on a stream: a codec that writes a request as exactly the given bytes and
//! reads the response frame itself, for frames the crate's codec would never write.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::{self};
use noctua_chat::wire::{self, Response};

/// A codec that writes a request as exactly the given bytes (no framing added) and reads the
/// response frame per §3.1 itself. Outbound only.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

/// Reads one §3.1 frame (`u32 length || body`) and decodes it as a response.
pub(crate) async fn read_response_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
) -> io::Result<Response> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > noctua_chat::MAX_FRAME_CEILING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response frame of {len} bytes"),
        ));
    }
    let mut body = Vec::new();
    let n = io.take(len as u64).read_to_end(&mut body).await?;
    if n < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    wire::decode_response(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

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

/// `u32 length || body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}
