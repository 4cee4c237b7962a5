//! What surrounds the API: grpc.health.v1, server reflection (so grpcurl needs no proto files),
//! and the HTTP endpoints /up, /metrics and /operators.

use aggregator::pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::support::{TestServer, User};

#[tokio::test]
async fn health_reflection_and_http_endpoints() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())?
        .connect()
        .await?;

    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "aggregator.Aggregator".into(),
        })
        .await?
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await?.and_then(|r| r.message_response)
    else {
        anyhow::bail!("no list of services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"aggregator.Aggregator".to_owned()),
        "{names:?}"
    );

    // One call, then the endpoints.
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    c.list_wallets(user.req(pb::ListWalletReq::default()))
        .await?;
    let http = reqwest::Client::new();
    let up = http.get(format!("{}/up", server.http_url())).send().await?;
    assert_eq!(up.status(), 200);
    let metrics = http
        .get(format!("{}/metrics", server.http_url()))
        .send()
        .await?
        .text()
        .await?;
    assert!(metrics.contains("grpc_requests_total"), "{metrics}");
    assert!(metrics.contains("method=\"ListWallets\""), "{metrics}");
    assert!(metrics.contains("projection_lag_events"), "{metrics}");
    assert!(metrics.contains("tasks{status=\"enabled\"}"), "{metrics}");
    let operators: serde_json::Value = http
        .get(format!("{}/operators", server.http_url()))
        .send()
        .await?
        .json()
        .await?;
    assert!(operators["operators"].is_array());
    Ok(())
}
