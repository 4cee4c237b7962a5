//! Linearizable calls on a replica (`event_log.reads: linearizable`): a tower layer over the
//! gRPC server that, before a call of the client API or the operators' service reaches its
//! handler, waits until the replica's database holds the replicated log's stream as of the
//! call's arrival (`App::caught_up`). Every handler then reads projections as they are on the
//! writer at least as of then: a caller reads its own writes (and everyone's acknowledged
//! before) whichever replica it lands on. Writes get it too, so that what they decide on
//! (existence, quotas) is as current. Health and reflection are not held up.
//!
//! One place for every handler, rather than a line in each. Nothing happens on fjall or with
//! `reads: local`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::app::SharedApp;

/// The service prefixes whose calls wait: `aggregator.Aggregator` and `aggregator.Node`.
const HELD: &str = "/aggregator.";

#[derive(Clone)]
pub struct CaughtUpLayer {
    app: SharedApp,
}

impl CaughtUpLayer {
    pub fn new(app: SharedApp) -> Self {
        Self { app }
    }
}

impl<S> Layer<S> for CaughtUpLayer {
    type Service = CaughtUp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CaughtUp {
            inner,
            app: self.app.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CaughtUp<S> {
    inner: S,
    app: SharedApp,
}

impl<S, B, R> Service<Request<B>> for CaughtUp<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let waits = self.app.replica.is_some() && request.uri().path().starts_with(HELD);
        if !waits {
            return Box::pin(self.inner.call(request));
        }
        // The service polled ready is the one that takes the call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let app = self.app.clone();
        Box::pin(async move {
            match app.caught_up().await {
                Ok(()) => inner.call(request).await,
                Err(e) => Ok(super::error::behind(&e).into_http()),
            }
        })
    }
}
