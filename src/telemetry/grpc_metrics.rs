//! A tower layer over the gRPC server: counts requests by method and status code and records
//! their latency. The code of a unary call's failure travels in the response headers
//! (trailers-only); a response without one is counted as OK (streams that fail later are not
//! re-counted).
//!
//! The `method` label takes only the methods the server serves (its descriptors, plus health
//! and reflection); any other path, which anyone can send, is `unknown`: labels are kept
//! forever, so a label per path would let an unauthenticated caller grow `/metrics` at will.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The gRPC status names, by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl<S, B, R> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let outcome = future.await;
            let code = match &outcome {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .and_then(|n| CODES.get(n).copied())
                    .unwrap_or("OK"),
                Err(_) => "INTERNAL",
            };
            metrics::counter!("grpc_requests_total", "method" => method, "code" => code)
                .increment(1);
            metrics::histogram!("grpc_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            outcome
        })
    }
}

/// The paths the server serves, `/<package>.<Service>/<Method>`.
static SERVED: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut paths: HashSet<String> = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if let Ok(set) =
        <prost_types::FileDescriptorSet as prost::Message>::decode(crate::pb::DESCRIPTORS)
    {
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    paths
});

/// The method's name for a served path, `unknown` for any other.
fn method_label(path: &str) -> &'static str {
    match SERVED.get(path) {
        Some(served) => served.rsplit('/').next().unwrap_or("unknown"),
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_methods_are_labels_and_any_other_path_is_unknown() {
        assert_eq!(
            method_label("/aggregator.Aggregator/CreateTask"),
            "CreateTask"
        );
        assert_eq!(
            method_label("/aggregator.Node/NotifyTriggers"),
            "NotifyTriggers"
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(method_label("/aggregator.Aggregator/x0123"), "unknown");
        assert_eq!(method_label("/random/path"), "unknown");
        assert_eq!(method_label(""), "unknown");
    }
}
