//! A request body that fails when its client sends nothing for a while: the wait starts when
//! the server asks for data that has not come and restarts with every piece that arrives, so a
//! handler busy elsewhere before reading is never counted against the client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// The error a stalled body ends with, inside an `io::Error` of kind `TimedOut` (the client gets
/// a 408 saying so; a webhook call is also logged as refused).
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled: nothing was received for too long")]
pub struct Stalled;

/// Whether `error` is, or wraps (readers re-wrap body errors in `io::Error::other`), `Stalled`.
pub fn is_stalled(error: &io::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if error.is::<Stalled>() {
            return true;
        }
        current = match error.downcast_ref::<io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
}

pub struct IdleTimeoutBody {
    inner: BoxBody<Bytes, io::Error>,
    idle: Duration,
    /// Running while the server waits for data; `None` until it first does.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl IdleTimeoutBody {
    pub fn new(inner: BoxBody<Bytes, io::Error>, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            waiting: None,
        }
    }
}

impl Body for IdleTimeoutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, Stalled))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_body_is_recognised_however_often_it_was_wrapped() {
        let stalled = io::Error::new(io::ErrorKind::TimedOut, Stalled);
        assert!(is_stalled(&stalled));
        assert!(is_stalled(&io::Error::other(io::Error::other(stalled))));
        assert!(!is_stalled(&io::Error::new(
            io::ErrorKind::TimedOut,
            "other"
        )));
        assert!(!is_stalled(&io::Error::other("reset")));
    }
}
