//! A TCP proxy between a client and the API server that breaks the connection as a test says:
//! every byte held (delivered late, if ever), or every connection reset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to the traffic.
pub const PASS: u8 = 0;
/// Bytes read wait (delivered late, if ever).
pub const HOLD: u8 = 1;
/// Every connection is reset, new ones as soon as they are accepted.
pub const RESET: u8 = 2;

/// Copies `from` to `to` as `mode` says; the connection ends when it says [`RESET`].
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mode: Arc<AtomicU8>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await;
        if mode.load(Ordering::SeqCst) == RESET {
            return;
        }
        let n = match read {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        while mode.load(Ordering::SeqCst) == HOLD {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if mode.load(Ordering::SeqCst) == RESET || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy to `upstream` (`host:port`) on 127.0.0.1 doing what `mode` says; its address.
pub async fn proxy(upstream: String, mode: Arc<AtomicU8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            // An RST, not a FIN, when the connection is dropped.
            let _ = client.set_zero_linger();
            if mode.load(Ordering::SeqCst) == RESET {
                continue;
            }
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, mode.clone()));
            tokio::spawn(pump(sr, cw, mode.clone()));
        }
    });
    address
}
