//! The message body as it moves through the data plane.
//!
//! A body starts as the client's (or the endpoint's) stream and is only
//! buffered when a mediator needs to read it, so plain proxying never copies
//! a payload into memory. One enum serves as the body type of both the server
//! and the pooled client, which keeps boxing and dynamic dispatch off the hot
//! path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use thiserror::Error;
use tokio::time::{Instant, Sleep};

/// Why reading a body failed.
#[derive(Debug, Error)]
pub enum BodyError {
    /// The body is larger than the configured limit.
    #[error("the body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The peer went away or sent a broken stream.
    #[error("the body could not be read: {0}")]
    Transport(#[from] hyper::Error),
    /// The peer sent the body too slowly: nothing for longer than the idle
    /// timeout, or not all of it before the total deadline.
    #[error(
        "the body arrived too slowly (no data for {idle_ms} ms, or not complete within {total_ms} ms)"
    )]
    TimedOut { idle_ms: u128, total_ms: u128 },
}

/// The read deadlines of a client's body: the next bytes must come within
/// `idle`, and the whole body before `end`.
#[derive(Debug)]
pub struct BodyTimer {
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
    total: Duration,
    end: Instant,
}

impl BodyTimer {
    pub fn new(idle: Duration, total: Duration) -> BodyTimer {
        let now = Instant::now();
        let end = now + total;
        BodyTimer {
            sleep: Box::pin(tokio::time::sleep_until((now + idle).min(end))),
            idle,
            total,
            end,
        }
    }

    /// Data arrived: the idle timeout starts again.
    fn progressed(&mut self) {
        let next = (Instant::now() + self.idle).min(self.end);
        self.sleep.as_mut().reset(next);
    }

    fn error(&self) -> BodyError {
        BodyError::TimedOut {
            idle_ms: self.idle.as_millis(),
            total_ms: self.total.as_millis(),
        }
    }
}

/// A request or response body of the data plane.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    /// A buffered or generated payload.
    Full(Bytes),
    /// A stream still on the wire; `limit` caps what may be read from it
    /// (`usize::MAX` for none), `read` counts what was read so far, and
    /// `timer` (a client's body only) bounds how slowly it may arrive.
    Stream {
        inner: Incoming,
        limit: usize,
        read: usize,
        timer: Option<BodyTimer>,
    },
}

impl Body {
    /// Wraps an incoming stream, or answers `Empty` when it has no content,
    /// so that a GET never pays for the streaming machinery.
    pub fn from_incoming(inner: Incoming, limit: usize) -> Body {
        if inner.is_end_stream() {
            Body::Empty
        } else {
            Body::Stream {
                inner,
                limit,
                read: 0,
                timer: None,
            }
        }
    }

    /// A client's request body: as [`Body::from_incoming`], and a client
    /// that sends nothing for `idle`, or takes longer than `total` for the
    /// whole body, gets [`BodyError::TimedOut`].
    pub fn from_client(inner: Incoming, limit: usize, idle: Duration, total: Duration) -> Body {
        if inner.is_end_stream() {
            Body::Empty
        } else {
            Body::Stream {
                inner,
                limit,
                read: 0,
                timer: Some(BodyTimer::new(idle, total)),
            }
        }
    }

    /// The bytes of a buffered body (`None` while still streaming).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Empty => Some(&[]),
            Body::Full(bytes) => Some(bytes),
            Body::Stream { .. } => None,
        }
    }

    /// Reads a streaming body into memory, at most `limit` bytes (the
    /// stream's own limit applies too). A body that is already buffered is
    /// left as it is.
    pub async fn buffer(&mut self, limit: usize) -> Result<(), BodyError> {
        let Body::Stream { .. } = self else {
            return Ok(());
        };
        let mut stream = std::mem::take(self);
        // Most bodies arrive as one frame: keep that frame's `Bytes` as it is
        // and only copy when there are several.
        let mut first: Option<Bytes> = None;
        let mut rest: Option<BytesMut> = None;
        let mut total = 0usize;
        while let Some(frame) = stream.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers carry no payload
            };
            total = total.saturating_add(data.len());
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            match (&mut first, &mut rest) {
                (None, _) => first = Some(data),
                (Some(head), None) => {
                    let mut buf = BytesMut::with_capacity(head.len() + data.len());
                    buf.extend_from_slice(head);
                    buf.extend_from_slice(&data);
                    rest = Some(buf);
                }
                (Some(_), Some(buf)) => buf.extend_from_slice(&data),
            }
        }
        *self = match (first, rest) {
            (_, Some(buf)) => Body::Full(buf.freeze()),
            (Some(bytes), None) => Body::Full(bytes),
            (None, None) => Body::Empty,
        };
        Ok(())
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::Full(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::Full(Bytes::from(text))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Full(Bytes::from(bytes))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match this {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => {
                let bytes = std::mem::take(bytes);
                *this = Body::Empty;
                if bytes.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
            }
            Body::Stream {
                inner,
                limit,
                read,
                timer,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        *read = read.saturating_add(data.len());
                        if *read > *limit {
                            return Poll::Ready(Some(Err(BodyError::TooLarge { limit: *limit })));
                        }
                        if let Some(timer) = timer {
                            timer.progressed();
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    if let Some(timer) = timer
                        && timer.sleep.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(Some(Err(timer.error())));
                    }
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_empty(),
            Body::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Body::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_bodies_yield_one_frame_and_report_their_size() {
        let mut body = Body::from(Bytes::from_static(b"hello"));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let frame = body.frame().await.and_then(Result::ok);
        assert_eq!(
            frame.and_then(|f| f.into_data().ok()),
            Some(Bytes::from_static(b"hello"))
        );
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn buffering_a_buffered_body_changes_nothing() {
        let mut body = Body::from(Bytes::from_static(b"abc"));
        assert!(body.buffer(1).await.is_ok());
        assert_eq!(body.as_bytes(), Some(&b"abc"[..]));
        assert_eq!(Body::Empty.as_bytes(), Some(&b""[..]));
    }
}
