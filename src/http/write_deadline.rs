//! A bound on clients that stop reading their responses.
//!
//! The request head has its timeout, but once a response is being written, a client that never
//! reads keeps the connection, and the response held for it, for as long as it likes.
//! [`WriteDeadline`] fails a write that makes no progress for its limit, which ends the
//! connection; the rejection is counted as `write_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::selfmetrics::{Rejection, Rejections};

/// Wraps a connection's I/O: reads pass through, writes fail after `limit` without progress.
pub struct WriteDeadline<I> {
    inner: I,
    limit: Duration,
    rejections: Rejections,
    /// Running while a write, flush or shutdown is pending; reset by every bit of progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> WriteDeadline<I> {
    pub fn new(inner: I, limit: Duration, rejections: Rejections) -> WriteDeadline<I> {
        WriteDeadline {
            inner,
            limit,
            rejections,
            stalled: None,
        }
    }

    /// Passes on a finished operation, or keeps a pending one pending until the deadline.
    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.rejections.count(Rejection::WriteTimeout);
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("client read nothing for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_without_progress_fails_after_the_limit() {
        let (client, server) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(server, Duration::from_millis(200), Rejections::default());
        let write = w.write_all(&[7u8; 1024]);
        let err = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_is_not_cut_off() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(server, Duration::from_millis(500), Rejections::default());
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 64];
            while total < 1024 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                total += client.read(&mut buf).await.unwrap();
            }
            total
        });
        w.write_all(&[7u8; 1024]).await.expect("progress every 20 ms");
        assert_eq!(reader.await.unwrap(), 1024);
    }
}
