//! The raw baseline: plain tokio TCP (nodelay) with length-prefixed frames and a tiny
//! acknowledging server. No libp2p, no crypto, no multiplexing: what the bare transport
//! costs.
//!
//! Frame: `u32 length` (of what follows), `u8 kind`, `u64 id`, payload. Kinds: `DATA`
//! (answered by `ACK`), `HELLO` (answered by `HELLO_ACK`); an answer carries the answering
//! node's index as its id in the mesh, the message id otherwise.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::pair::{MESSAGE_TIMEOUT, PairClient, Run};

/// A chat message.
pub const DATA: u8 = 0;
/// Receipt of a `DATA` frame.
pub const ACK: u8 = 1;
/// Opens a "session" in the mesh.
pub const HELLO: u8 = 2;
/// Answer to `HELLO`.
pub const HELLO_ACK: u8 = 3;
const HEADER: usize = 13;

/// One encoded frame with `payload` bytes of payload.
pub fn frame(kind: u8, id: u64, payload: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload);
    v.extend_from_slice(&((9 + payload) as u32).to_be_bytes());
    v.push(kind);
    v.extend_from_slice(&id.to_be_bytes());
    v.resize(HEADER + payload, b'x');
    v
}

/// Reads one frame, keeping its payload in `buf`; returns (kind, id).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<(u8, u64)> {
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h).await?;
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if !(9..=(16 << 20)).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[5..13]);
    buf.resize(len - 9, 0);
    r.read_exact(buf).await?;
    Ok((h[4], u64::from_be_bytes(id)))
}

/// The acknowledging server: every `DATA` or `HELLO` is answered with the message's id;
/// answers are flushed whenever no further request is already buffered.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `DATA` frames received.
    pub received: Arc<AtomicU64>,
    join: JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1 on a free port and serves on background tasks.
    pub async fn start() -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let r = received.clone();
        let join = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_conn(sock, r.clone()));
            }
        });
        Ok(Server {
            addr,
            received,
            join,
        })
    }

    /// Stops accepting (connections already open end when their client closes).
    pub fn stop(self) {
        self.join.abort();
    }
}

/// Serves one connection until it closes.
pub async fn serve_conn(sock: TcpStream, received: Arc<AtomicU64>) {
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, rd);
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = Vec::new();
    while let Ok((kind, id)) = read_frame(&mut r, &mut buf).await {
        let answer = match kind {
            DATA => {
                received.fetch_add(1, Ordering::Relaxed);
                ACK
            }
            HELLO => HELLO_ACK,
            _ => continue,
        };
        if w.write_all(&frame(answer, id, 0)).await.is_err() {
            break;
        }
        if r.buffer().is_empty() && w.flush().await.is_err() {
            break;
        }
    }
}

/// A measuring client on its own connection.
pub struct Client {
    stream: TcpStream,
    server: Server,
}

impl Client {
    /// Starts a server (setup), then times connect + one frame exchange.
    pub async fn connect() -> io::Result<(Client, Duration)> {
        let server = Server::start().await?;
        let t0 = Instant::now();
        let mut stream = TcpStream::connect(server.addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&frame(HELLO, 0, 0)).await?;
        let mut buf = Vec::new();
        read_frame(&mut stream, &mut buf).await?;
        let took = t0.elapsed();
        Ok((Client { stream, server }, took))
    }

    /// Closes the connection and stops the server.
    pub fn close(self) {
        drop(self.stream);
        self.server.stop();
    }
}

impl PairClient for Client {
    async fn rtt(&mut self, n: usize, size: usize) -> Run {
        let mut run = Run::default();
        let mut buf = Vec::new();
        let start = Instant::now();
        for i in 0..n {
            let f = frame(DATA, i as u64, size);
            let t0 = Instant::now();
            let ok = tokio::time::timeout(MESSAGE_TIMEOUT, async {
                self.stream.write_all(&f).await?;
                read_frame(&mut self.stream, &mut buf).await
            })
            .await;
            match ok {
                Ok(Ok((ACK, id))) if id == i as u64 => {
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

    async fn throughput(&mut self, total: usize, window: usize, size: usize) -> Run {
        // A fresh connection per run, split into a pipelining writer and an ack reader.
        let mut run = Run::default();
        let stream = match TcpStream::connect(self.server.addr).await {
            Ok(s) => s,
            Err(_) => {
                run.lost = total as u64;
                return run;
            }
        };
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let sem = Arc::new(Semaphore::new(window));
        let (ts_tx, mut ts_rx) = mpsc::unbounded_channel::<Instant>();
        let start = Instant::now();
        let writer = tokio::spawn(write_pipelined(wr, sem.clone(), ts_tx, total, size));
        let mut r = BufReader::with_capacity(64 * 1024, rd);
        let mut buf = Vec::new();
        for _ in 0..total {
            match tokio::time::timeout(MESSAGE_TIMEOUT, read_frame(&mut r, &mut buf)).await {
                Ok(Ok((ACK, _))) => {
                    let sent_at = ts_rx.recv().await.unwrap_or(start);
                    run.lat_ms.push(crate::stats::ms(sent_at.elapsed()));
                    run.delivered += 1;
                    sem.add_permits(1);
                }
                _ => {
                    run.lost = total as u64 - run.delivered;
                    break;
                }
            }
        }
        run.elapsed = start.elapsed();
        writer.abort();
        run
    }

    fn server_received(&self) -> u64 {
        self.server.received.load(Ordering::Relaxed)
    }
}

async fn write_pipelined(
    wr: OwnedWriteHalf,
    sem: Arc<Semaphore>,
    ts: mpsc::UnboundedSender<Instant>,
    total: usize,
    size: usize,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let template = frame(DATA, 0, size);
    for _ in 0..total {
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                w.flush().await?;
                sem.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| io::Error::other("closed"))?
            }
        };
        permit.forget();
        let _ = ts.send(Instant::now());
        w.write_all(&template).await?;
    }
    w.flush().await
}

/// Counters of a mesh node.
#[derive(Debug, Default)]
pub struct Counters {
    /// `DATA` frames received.
    pub received: AtomicU64,
}

/// A command for a mesh node.
#[derive(Debug)]
pub enum Cmd {
    /// Connect to node `peer` at this address and say `HELLO`.
    Connect(usize, SocketAddr),
    /// Send one `DATA` frame of this size to node `peer`.
    Send(usize, usize),
}

/// What a mesh node reports.
#[derive(Debug)]
pub enum Ev {
    /// `HELLO_ACK` from this node: the "session" with it is up.
    Session(usize),
    /// A connection failed.
    ConnectFailed(String),
    /// `ACK` of a `DATA` frame.
    Delivered,
    /// A send to a node without a connection.
    Failed(usize, String),
}

/// Events of mesh nodes: (node index, event, when the node saw it).
pub type EvTx = mpsc::UnboundedSender<(usize, Ev, Instant)>;

type Conns = Arc<Mutex<HashMap<usize, mpsc::UnboundedSender<Vec<u8>>>>>;

/// A mesh node: a listener and one bidirectional connection per peer, each with a reader
/// and a writer task.
pub struct MeshNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub counters: Arc<Counters>,
    cmd: mpsc::UnboundedSender<Cmd>,
    join: JoinHandle<()>,
}

impl MeshNode {
    /// Binds and spawns node `idx`.
    pub async fn spawn(idx: usize, events: EvTx) -> io::Result<MeshNode> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let conns: Conns = Arc::default();
        let (cmd, mut rx) = mpsc::unbounded_channel();
        let c = counters.clone();
        let join = tokio::spawn(async move {
            loop {
                tokio::select! {
                    acc = listener.accept() => {
                        let Ok((sock, _)) = acc else { break };
                        start_conn(sock, idx, conns.clone(), events.clone(), c.clone());
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Connect(peer, a)) => {
                            let (conns, events, c) = (conns.clone(), events.clone(), c.clone());
                            tokio::spawn(async move {
                                match TcpStream::connect(a).await {
                                    Ok(sock) => {
                                        let tx = start_conn(sock, idx, conns.clone(), events, c);
                                        let _ = tx.send(frame(HELLO, idx as u64, 0));
                                        conns.lock().expect("lock").insert(peer, tx);
                                    }
                                    Err(e) => {
                                        let _ = events.send((idx, Ev::ConnectFailed(e.to_string()), Instant::now()));
                                    }
                                }
                            });
                        }
                        Some(Cmd::Send(peer, size)) => {
                            let tx = conns.lock().expect("lock").get(&peer).cloned();
                            let ok = tx.is_some_and(|tx| tx.send(frame(DATA, idx as u64, size)).is_ok());
                            if !ok {
                                let _ = events.send((idx, Ev::Failed(peer, "no connection".into()), Instant::now()));
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        Ok(MeshNode {
            addr,
            counters,
            cmd,
            join,
        })
    }

    /// Sends a command.
    pub fn send(&self, cmd: Cmd) {
        let _ = self.cmd.send(cmd);
    }

    /// Stops accepting and commanding (open connections end with the runtime).
    pub fn stop(self) {
        self.join.abort();
    }
}

fn start_conn(
    sock: TcpStream,
    me: usize,
    conns: Conns,
    events: EvTx,
    counters: Arc<Counters>,
) -> mpsc::UnboundedSender<Vec<u8>> {
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    let (tx, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, wr);
        while let Some(f) = out.recv().await {
            if w.write_all(&f).await.is_err() {
                return;
            }
            while let Ok(f) = out.try_recv() {
                if w.write_all(&f).await.is_err() {
                    return;
                }
            }
            if w.flush().await.is_err() {
                return;
            }
        }
    });
    let answer = tx.clone();
    tokio::spawn(async move {
        let mut r = BufReader::with_capacity(64 * 1024, rd);
        let mut buf = Vec::new();
        while let Ok((kind, id)) = read_frame(&mut r, &mut buf).await {
            let now = Instant::now();
            match kind {
                DATA => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    let _ = answer.send(frame(ACK, me as u64, 0));
                }
                HELLO => {
                    conns
                        .lock()
                        .expect("lock")
                        .insert(id as usize, answer.clone());
                    let _ = answer.send(frame(HELLO_ACK, me as u64, 0));
                }
                ACK => {
                    let _ = events.send((me, Ev::Delivered, now));
                }
                HELLO_ACK => {
                    let _ = events.send((me, Ev::Session(id as usize), now));
                }
                _ => {}
            }
        }
    });
    tx
}
