//! The gRPC edge: the client API (`aggregator.Aggregator`), the operators' service
//! (`aggregator.Node`, in `node`), server reflection and `grpc.health.v1`, on one listener.
//! Prost types end here: handlers convert requests into domain values on their first lines
//! (`pb::convert`), and projections into responses on their last. The edge is a leaf: only
//! `server` imports it.
//!
//! Layout: `client/` (one file per area of the client API), `node` (the operators' service),
//! `error` (every failure → status, once; `clippy.toml` keeps it the only place that makes a
//! `tonic::Status`), `paging` (cursor pagination), `calls` (who is calling, and the rate
//! limits), `listener` (the connections taken: bounded, TCP_NODELAY), `reads` (a replica catches up
//! with the replicated log before a call), `repeats` (a retried
//! call whose answer was lost gets the first's answer).

pub mod calls;
pub mod client;
pub mod error;
pub mod listener;
pub mod node;
pub mod paging;
pub mod reads;
pub mod repeats;

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::app::SharedApp;
use crate::pb;
use crate::pb::aggregator_server::AggregatorServer;

/// Serves the gRPC services on `listener` until `shutdown` completes, then finishes the calls in
/// flight.
pub async fn serve(
    app: SharedApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max = app.config.grpc.max_message_bytes;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::DESCRIPTORS)
        .build_v1()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AggregatorServer<client::ClientApi>>()
        .await;
    let client = AggregatorServer::new(client::ClientApi::new(app.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    health
        .set_serving::<pb::node_server::NodeServer<node::NodeApi>>()
        .await;
    let operators = pb::node_server::NodeServer::new(node::NodeApi::new(app.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let grpc = &app.config.grpc;
    let mut server = Server::builder()
        .http2_keepalive_interval(Some(grpc.keepalive_interval))
        .http2_keepalive_timeout(Some(grpc.keepalive_timeout));
    if let Some(tls) = &app.config.grpc.tls {
        let cert = tokio::fs::read(&tls.cert).await?;
        let key = tokio::fs::read(&tls.key).await?;
        server = server.tls_config(
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key)),
        )?;
    }
    server
        .layer(crate::telemetry::GrpcMetricsLayer)
        .layer(reads::CaughtUpLayer::new(app.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(client)
        .add_service(operators)
        .serve_with_incoming_shutdown(
            listener::incoming(
                listener,
                listener::Bounds {
                    max_connections: grpc.max_connections,
                    handshake_timeout: grpc.handshake_timeout,
                },
            ),
            shutdown,
        )
        .await?;
    Ok(())
}
