//! SCAFFOLD (not committed).
use std::time::Duration;
#[derive(Debug, Clone, Default)]
pub struct HttpConfig { pub allow: Vec<String>, pub allow_hosts: Vec<String>, pub timeout: Duration, pub connect_timeout: Duration, pub max_request_bytes: usize, pub max_response_bytes: usize, pub max_redirects: usize, pub user_agent: String }
#[derive(Clone)]
pub struct HttpClient;
pub struct HttpRequest { pub method: String, pub url: String, pub headers: Vec<(String, String)>, pub body: Option<Vec<u8>> }
pub struct HttpResponse { pub status: u16, pub headers: Vec<(String, String)>, pub body: Vec<u8>, pub final_url: String }
#[derive(Debug, thiserror::Error)]
pub enum HttpError { #[error("x")] Transport(String) }
impl HttpClient {
    pub fn new(_c: HttpConfig) -> Result<Self, HttpError> { Ok(Self) }
    pub async fn send(&self, _r: HttpRequest) -> Result<HttpResponse, HttpError> { Err(HttpError::Transport("scaffold".into())) }
}
pub fn body_value(_r: &HttpResponse) -> serde_json::Value { serde_json::Value::Null }
