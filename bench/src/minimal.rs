//! The floor of the harness: the smallest tokio TCP ping-pong there is (no framing, no
//! buffering, no ids: a fixed-size request read with `read_exact`, a fixed-size answer),
//! its server a task on the same runtime as the client, as every server of the harness.
//! The raw baseline's round trip is compared with it in the same run, so that what the
//! harness adds to every system is measured, not assumed.

use std::io;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::pair::{MESSAGE_TIMEOUT, Run};

/// Bytes of the answer (the raw baseline's `ACK` frame is as long).
const ANSWER: usize = 13;

/// A minimal client and its echo server.
pub struct PingPong {
    stream: TcpStream,
    server: JoinHandle<()>,
    size: usize,
}

impl PingPong {
    /// Starts the server on a free loopback port and connects to it; requests are `size`
    /// bytes (the raw baseline's frames carry 13 bytes of header besides the payload, so
    /// pass the same total).
    pub async fn connect(size: usize) -> io::Result<PingPong> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let _ = sock.set_nodelay(true);
            let mut req = vec![0u8; size];
            let answer = [0u8; ANSWER];
            while sock.read_exact(&mut req).await.is_ok() {
                if sock.write_all(&answer).await.is_err() {
                    return;
                }
            }
        });
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(PingPong {
            stream,
            server,
            size,
        })
    }

    /// `n` sequential round trips.
    pub async fn rtt(&mut self, n: usize) -> Run {
        let mut run = Run::default();
        let req = vec![b'x'; self.size];
        let mut answer = [0u8; ANSWER];
        let start = Instant::now();
        for i in 0..n {
            let t0 = Instant::now();
            let ok = tokio::time::timeout(MESSAGE_TIMEOUT, async {
                self.stream.write_all(&req).await?;
                self.stream.read_exact(&mut answer).await
            })
            .await;
            match ok {
                Ok(Ok(_)) => {
                    run.lat_ms.push(crate::stats::ms(t0.elapsed()));
                    run.delivered += 1;
                }
                _ => {
                    run.lost += (n - i) as u64;
                    break;
                }
            }
        }
        run.elapsed = start.elapsed();
        run
    }

    /// Closes the connection (the server task ends with it).
    pub fn close(self) {
        drop(self.stream);
        self.server.abort();
    }
}
