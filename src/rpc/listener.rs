//! The connections the gRPC server takes, bounded: each accepted socket gets `TCP_NODELAY`
//! (tonic's own `tcp_nodelay` applies only to the listeners it binds itself, not to an incoming
//! stream, and without it every small reply waited on Nagle's algorithm: ~40 ms per call on
//! loopback); at most `grpc.max_connections` are open at once (a connection past it is closed
//! at once, and counted); and a connection must send its first bytes (the HTTP/2 preface or a
//! TLS hello) within `grpc.handshake_timeout`, or it is closed before the HTTP/2 server sees it.
//! Idle connections that stop answering are dropped by HTTP/2 keepalive pings (`rpc::serve`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding one of the `max_connections` slots until it closes.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How many connections, and how long one may stay silent after connecting.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// The connections `listener` accepts, within `bounds`. The acceptor ends when the server drops
/// the stream (at shutdown).
pub fn incoming(listener: TcpListener, bounds: Bounds) -> ReceiverStream<io::Result<Connection>> {
    let (ready, stream) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most often: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!("grpc_connections_refused_total", "reason" => "max_connections")
                    .increment(1);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                match tokio::time::timeout(bounds.handshake_timeout, stream.peek(&mut first)).await
                {
                    Ok(Ok(n)) if n > 0 => {
                        let connection = Connection {
                            stream,
                            _slot: slot,
                        };
                        let _ = ready.send(Ok(connection)).await;
                    }
                    Ok(_) => {} // closed, or failed, before saying anything
                    Err(_) => {
                        metrics::counter!("grpc_connections_refused_total", "reason" => "handshake_timeout")
                            .increment(1);
                    }
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
