//! Outbound HTTP for the REST and GraphQL nodes.
//!
//! Users choose the URLs, so every request could be aimed at the aggregator itself, its private
//! network or the cloud metadata service (SSRF). The check is on the IP addresses the connection
//! actually uses, at the three places a request can pick one:
//!
//! - host names go through `GuardedResolver`, which resolves and drops refused addresses, so
//!   the socket connects to exactly the addresses checked (no second lookup to rebind);
//! - IP-literal hosts never reach a resolver (hyper connects to them directly), so
//!   `Guard::check_url` checks them before the request is built;
//! - every redirect hop goes through the same `Guard::check_url` in the redirect policy, and
//!   its host name, if any, through the resolver again. (A `Location` that cannot be made into
//!   an http URI, like `file:///x`, is never followed: the 3xx comes back as the response.)
//!
//! Proxies are switched off: through a proxy, the proxy would resolve the name, unchecked.
//!
//! The original's test host (`https://mock-api.ap-aggregator.local`) is answered in process
//! when `mock_host` is on, before any of this: see `mock_host`.
//!
//! Layout: this file holds [`HttpClient`], the guard, the errors, and [`body_value`] for the
//! nodes' outputs; `mock_host` is the in-process responder for the original's test host; which
//! addresses are refused ([`forbidden`]) and the [`Cidr`] blocks that lift it are `crate::ip`;
//! the settings are `config::OutboundHttpConfig` (`engine.http`).

mod mock_host;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;

pub use crate::config::OutboundHttpConfig;
pub use crate::ip::{Cidr, CidrError, forbidden};
pub use mock_host::{MOCK_HOST, status_text};

/// The methods a node may use; an empty method is `GET`.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers that frame or route the message: hyper sets them from the body and the URL, and a
/// user's value would desynchronise the framing with the server (request smuggling).
const MANAGED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A request as a node describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// One of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS (any case); empty means GET.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Names in lower case, one entry per value, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL after redirects.
    pub final_url: String,
}

impl HttpResponse {
    /// The first value of a header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Which way a size limit was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Response => "response",
        })
    }
}

/// Why a request failed. The messages are shown to the task's owner, so they say what to
/// change; none contains the word "timeout", which makes the official client retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("requests to {host} are refused: {reason}")]
    Forbidden { host: String, reason: &'static str },
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("invalid method {0:?}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")]
    InvalidMethod(String),
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("the {direction} is larger than the limit of {limit} bytes")]
    TooLarge { direction: Direction, limit: usize },
    #[error("the request took longer than {}", crate::config::duration_text::text(.limit))]
    TimedOut { limit: Duration },
    #[error("more than {limit} redirects")]
    Redirects { limit: usize },
    #[error("request failed: {0}")]
    Transport(String),
}

/// The HTTP client of the task engine. Cloning is cheap: the clones share one connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    guard: Arc<Guard>,
    limits: Limits,
    mock_host: bool,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Duration,
    max_request_bytes: usize,
    max_response_bytes: usize,
}

impl HttpClient {
    pub fn new(config: OutboundHttpConfig) -> Result<Self, HttpError> {
        let guard = Arc::new(Guard::new(config.allow, &config.allow_hosts));
        let redirect_guard = Arc::clone(&guard);
        let max_redirects = config.max_redirects;
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver(Arc::clone(&guard)))
            .redirect(Policy::custom(move |attempt| {
                // `previous` starts with the original URL, so its length is this hop's number.
                let hop = attempt.previous().len();
                match redirect_guard.check_redirect(attempt.url(), hop, max_redirects) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .no_proxy()
            // The referer would carry the previous URL, query secrets included, to another host.
            .referer(false)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent)
            .build()
            .map_err(|e| HttpError::Transport(describe(&e)))?;
        Ok(Self {
            client,
            guard,
            limits: Limits {
                timeout: config.timeout,
                max_request_bytes: config.max_request_bytes,
                max_response_bytes: config.max_response_bytes,
            },
            mock_host: config.mock_host,
        })
    }

    /// Sends the request, following redirects, and reads the whole response (up to the limit).
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let limit = self.limits.timeout;
        // reqwest's own deadline is set too, but this one also covers reading the body in
        // chunks and is reported the same way whichever part was slow.
        tokio::time::timeout(limit, self.send_unbounded(request))
            .await
            .unwrap_or(Err(HttpError::TimedOut { limit }))
    }

    async fn send_unbounded(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let method = method(&request.method)?;
        let url = Url::parse(&request.url).map_err(|e| HttpError::InvalidUrl(e.to_string()))?;
        let mock = self.mock_host && mock_host::is_mock_host(&url);
        if !mock {
            self.guard.check_url(&url)?;
        }

        let size = request.url.len()
            + request
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
            + request.body.as_ref().map_or(0, Vec::len);
        if size > self.limits.max_request_bytes {
            return Err(HttpError::TooLarge {
                direction: Direction::Request,
                limit: self.limits.max_request_bytes,
            });
        }
        let headers = header_map(&request.headers)?;
        if mock {
            let method = if request.method.trim().is_empty() {
                "GET"
            } else {
                request.method.trim()
            };
            return Ok(mock_host::answer(&request, &url, method, self.limits.timeout).await);
        }

        let mut builder = self.client.request(method, url).headers(headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| from_reqwest(e, self.limits.timeout))?;

        // Belt and braces: the checks above decide before connecting; this one makes sure that
        // whatever path reached a refused address, its answer is not handed back.
        if let Some(peer) = response.remote_addr() {
            let host = response.url().host_str().unwrap_or_default();
            if !self.guard.host_allowed(host)
                && let Some(reason) = self.guard.refusal(peer.ip())
            {
                return Err(HttpError::Forbidden {
                    host: peer.ip().to_string(),
                    reason,
                });
            }
        }

        let status = response.status().as_u16();
        let final_url = response.url().to_string();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();

        let cap = self.limits.max_response_bytes;
        let too_large = HttpError::TooLarge {
            direction: Direction::Response,
            limit: cap,
        };
        // A declared length past the cap fails before reading; a missing or false one is caught
        // while reading, so no more than the cap (plus one chunk) is ever held.
        if response
            .content_length()
            .is_some_and(|length| length > cap as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| from_reqwest(e, self.limits.timeout))?
        {
            if body.len() + chunk.len() > cap {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }

        Ok(HttpResponse {
            status,
            headers,
            body,
            final_url,
        })
    }
}

/// The response body as a node output: JSON when it parses as JSON (whatever the content
/// type says, as servers often mislabel it), else the text, else (not UTF-8) the bytes in
/// standard base64.
pub fn body_value(response: &HttpResponse) -> serde_json::Value {
    if !response.body.is_empty()
        && let Ok(value) = serde_json::from_slice(&response.body)
    {
        return value;
    }
    match std::str::from_utf8(&response.body) {
        Ok(text) => serde_json::Value::String(text.to_owned()),
        Err(_) => serde_json::Value::String(base64(&response.body)),
    }
}

/// The address checks, shared by the resolver, the redirect policy and the client.
#[derive(Debug)]
struct Guard {
    allow: Vec<Cidr>,
    /// Lower case, without a trailing dot.
    allow_hosts: Vec<String>,
}

impl Guard {
    fn new(allow: Vec<Cidr>, allow_hosts: &[String]) -> Self {
        Self {
            allow,
            allow_hosts: allow_hosts.iter().map(|h| normalize_host(h)).collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.allow_hosts.contains(&host)
    }

    /// Why `ip` is refused, or `None` when it is public or allow-listed.
    fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let reason = forbidden(ip)?;
        if self.allow.iter().any(|block| block.contains(ip)) {
            None
        } else {
            Some(reason)
        }
    }

    /// What can be decided from the URL alone: the scheme, and an IP-literal host (which no
    /// resolver will see). Host names are left to `GuardedResolver`.
    fn check_url(&self, url: &Url) -> Result<(), HttpError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidUrl(format!(
                "only http and https URLs can be requested, not {}:",
                url.scheme()
            )));
        }
        let Some(host) = url.host_str() else {
            return Err(HttpError::InvalidUrl("the URL has no host".into()));
        };
        // The URL parser has already turned every IPv4 spelling ("2130706433", "0x7f.1") into
        // dotted decimal, and IPv6 is bracketed: what does not parse here is a host name.
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(());
        };
        if self.host_allowed(&ip.to_string()) {
            return Ok(());
        }
        match self.refusal(ip) {
            Some(reason) => Err(HttpError::Forbidden {
                host: ip.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Whether to follow redirect number `hop` (from 1) to `next`.
    fn check_redirect(&self, next: &Url, hop: usize, max: usize) -> Result<(), HttpError> {
        if hop > max {
            return Err(HttpError::Redirects { limit: max });
        }
        self.check_url(next)
    }

    /// The resolved addresses of `host` that may be used; refused when none may.
    fn filter(&self, host: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, HttpError> {
        if found.is_empty() {
            return Err(HttpError::Transport(format!("{host} has no address")));
        }
        if self.host_allowed(host) {
            return Ok(found);
        }
        let mut first_refusal = None;
        let usable: Vec<SocketAddr> = found
            .iter()
            .filter(|addr| match self.refusal(addr.ip()) {
                None => true,
                Some(reason) => {
                    first_refusal.get_or_insert(reason);
                    false
                }
            })
            .copied()
            .collect();
        match first_refusal {
            Some(reason) if usable.is_empty() => Err(HttpError::Forbidden {
                host: format!("{host} ({})", found_list(&found)),
                reason,
            }),
            _ => Ok(usable),
        }
    }
}

/// Resolves with the system resolver (through tokio) and hands hyper only the addresses the
/// guard accepts.
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| HttpError::Transport(format!("could not resolve {host}: {e}")))?
                .collect();
            let usable = guard.filter(&host, found)?;
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

fn found_list(found: &[SocketAddr]) -> String {
    let mut ips: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
    ips.dedup();
    ips.join(", ")
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn method(text: &str) -> Result<reqwest::Method, HttpError> {
    let upper = text.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return Ok(reqwest::Method::GET);
    }
    if !METHODS.contains(&upper.as_str()) {
        return Err(HttpError::InvalidMethod(text.to_owned()));
    }
    reqwest::Method::from_bytes(upper.as_bytes()).map_err(|_| HttpError::InvalidMethod(text.into()))
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = |reason: &str| HttpError::InvalidHeader {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let header = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        if MANAGED_HEADERS.contains(&header.as_str()) {
            return Err(invalid("set by the client from the URL and the body"));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid("the value has a control character or a line break"))?;
        map.append(header, value);
    }
    Ok(map)
}

/// Our own refusals (from the resolver or the redirect policy) come back wrapped in hyper's
/// and reqwest's errors: they are found in the chain and returned as they were.
fn from_reqwest(error: reqwest::Error, timeout: Duration) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        if let Some(own) = current.downcast_ref::<HttpError>() {
            return own.clone();
        }
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return HttpError::TimedOut { limit: timeout };
        }
        source = current.source();
    }
    if error.is_timeout() {
        return HttpError::TimedOut { limit: timeout };
    }
    // Without the URL: it may carry credentials or a secret in the query.
    HttpError::Transport(describe(&error.without_url()))
}

/// The error and its causes, "a: b: c", each said once (hyper's layers often repeat).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(current) = source {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

/// Standard base64 with padding (RFC 4648), for bodies that are not text; small enough not to
/// take a dependency for.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group.first().copied().unwrap_or(0),
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
