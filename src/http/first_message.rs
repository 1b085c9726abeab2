//! A new connection costs its socket only, until its first message is complete.
//!
//! hyper gives a connection a read and a write buffer (8 KiB each) as soon as it serves it, and
//! rustls its handshake state; a client that sends half a request head or half a ClientHello and
//! stops would hold that memory for the whole header timeout, and thousands of them hundreds of
//! MiB. So until the first request head (plain HTTP) or the first TLS record (the ClientHello) is
//! complete, the exporter only peeks at what the client sent, into a buffer that lives only for
//! the look. A message sent whole, as clients send them, is seen at once; one that trickles in is
//! looked at again after a pause that doubles up to [`MAX_PAUSE`].

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use super::MAX_HEADER_BYTES;

/// What the connection's first message is.
#[derive(Debug, Clone, Copy)]
pub enum First {
    /// A request head, ended by an empty line.
    HttpHead,
    /// A TLS record (the ClientHello), or anything that is not one, which the caller refuses.
    TlsRecord,
}

/// Why the first message did not arrive.
#[derive(Debug)]
pub enum Stalled {
    /// Not complete within the header read timeout.
    TimedOut(Duration),
    /// The client closed the connection first.
    Closed,
    Io(io::Error),
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stalled::TimedOut(t) => write!(f, "first message not complete within {t:?}"),
            Stalled::Closed => f.write_str("closed before its first message was complete"),
            Stalled::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Largest look: a request head over [`MAX_HEADER_BYTES`] or a TLS record of 16 KiB plus its
/// header is handed on as it is, to be refused by hyper (431) or rustls.
const PEEK: usize = MAX_HEADER_BYTES + 64;
/// First look: enough for the messages of ordinary clients, and cheap to repeat.
const SMALL_PEEK: usize = 4096;
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between two looks at a message that trickles in: the delay a client that
/// sends its head in pieces may see, and what bounds the looks at thousands of stalled ones.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Waits until the client's first message is complete (nothing is consumed), for at most
/// `timeout`.
pub async fn wait(stream: &TcpStream, first: First, timeout: Duration) -> Result<(), Stalled> {
    let look = async {
        let mut pause = FIRST_PAUSE;
        let mut size = SMALL_PEEK;
        loop {
            stream.readable().await.map_err(Stalled::Io)?;
            let mut buf = vec![0u8; size];
            let n = stream.peek(&mut buf).await.map_err(Stalled::Io)?;
            if n == 0 {
                return Err(Stalled::Closed);
            }
            if n == PEEK || complete(first, &buf[..n]) {
                return Ok(());
            }
            if n == size {
                size = PEEK;
                continue;
            }
            drop(buf);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    };
    tokio::time::timeout(timeout, look)
        .await
        .unwrap_or(Err(Stalled::TimedOut(timeout)))
}

fn complete(first: First, bytes: &[u8]) -> bool {
    match first {
        First::HttpHead => bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n"),
        First::TlsRecord => match bytes {
            [0x16, _, _, hi, lo, rest @ ..] => rest.len() >= usize::from(u16::from_be_bytes([*hi, *lo])),
            [0x16, ..] => false,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads_end_with_an_empty_line() {
        assert!(!complete(First::HttpHead, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        assert!(complete(First::HttpHead, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(complete(First::HttpHead, b"GET / HTTP/1.0\n\n"));
        assert!(!complete(First::HttpHead, b"GET"));
    }

    #[test]
    fn tls_records_are_complete_with_their_length() {
        assert!(!complete(First::TlsRecord, b"\x16\x03\x01"));
        assert!(!complete(First::TlsRecord, b"\x16\x03\x01\x00\x03\x01\x02"));
        assert!(complete(First::TlsRecord, b"\x16\x03\x01\x00\x03\x01\x02\x03"));
        assert!(
            complete(First::TlsRecord, b"GET / HTTP/1.1"),
            "not TLS: refused at once"
        );
    }

    #[tokio::test]
    async fn waits_for_the_rest_and_consumes_nothing() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let short = wait(&server, First::HttpHead, Duration::from_millis(100)).await;
        assert!(matches!(short, Err(Stalled::TimedOut(_))), "{short:?}");
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        wait(&server, First::HttpHead, Duration::from_secs(5)).await.unwrap();
        let mut all = vec![0u8; 64];
        let n = server.read(&mut all).await.unwrap();
        assert_eq!(&all[..n], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        drop(client);
    }
}
