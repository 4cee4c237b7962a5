//! The checks as units (no traffic), then the client end to end against servers started here
//! on 127.0.0.1: the only address these tests ever send to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::config::{
    DEFAULT_HTTP_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HTTP_USER_AGENT as DEFAULT_USER_AGENT, OutboundHttpConfig as HttpConfig,
};

fn guard(allow: &[&str], allow_hosts: &[&str]) -> Guard {
    Guard::new(
        allow.iter().map(|c| c.parse().unwrap()).collect(),
        &allow_hosts
            .iter()
            .map(|h| (*h).to_owned())
            .collect::<Vec<_>>(),
    )
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn forbidden_error(host: &str, reason: &'static str) -> HttpError {
    HttpError::Forbidden {
        host: host.to_owned(),
        reason,
    }
}

// ---- the checks, without network ----

#[test]
fn ip_literal_urls_are_checked_in_every_spelling() {
    let guard = guard(&[], &[]);
    for (text, host, reason) in [
        ("http://127.0.0.1/", "127.0.0.1", "loopback"),
        ("http://127.0.0.1:8080/x?y", "127.0.0.1", "loopback"),
        ("https://[::1]/", "::1", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "loopback"),
        ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1", "loopback"),
        // The URL parser normalizes the legacy IPv4 spellings before we look.
        ("http://2130706433/", "127.0.0.1", "loopback"),
        ("http://0x7f.1/", "127.0.0.1", "loopback"),
        ("http://0177.0.0.1/", "127.0.0.1", "loopback"),
        ("http://127.0.0.1./", "127.0.0.1", "loopback"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("http://10.0.0.5/", "10.0.0.5", "private"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            "link-local (cloud metadata)",
        ),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254", "unique-local"),
        (
            "http://[64:ff9b::a9fe:a9fe]/",
            "64:ff9b::a9fe:a9fe",
            "link-local (cloud metadata)",
        ),
        ("http://user:pw@192.168.0.1/", "192.168.0.1", "private"),
    ] {
        assert_eq!(
            guard.check_url(&url(text)),
            Err(forbidden_error(host, reason)),
            "{text}"
        );
    }
    for text in [
        "http://8.8.8.8/",
        "https://[2606:4700:4700::1111]/dns-query",
        // Names are left to the resolver.
        "http://localhost/",
        "https://example.com/",
    ] {
        assert_eq!(guard.check_url(&url(text)), Ok(()), "{text}");
    }
}

#[test]
fn only_http_and_https_are_requested() {
    let guard = guard(&[], &[]);
    for text in [
        "ftp://8.8.8.8/",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "unix:/run/docker.sock",
        "data:text/plain,hi",
    ] {
        let err = guard.check_url(&url(text)).unwrap_err();
        assert!(matches!(err, HttpError::InvalidUrl(_)), "{text}: {err}");
        assert!(err.to_string().contains("only http and https"), "{err}");
    }
}

#[test]
fn the_allow_list_lifts_the_refusal_for_its_blocks_only() {
    let guard = guard(
        &["127.0.0.0/8", "fd00::/8"],
        &["10.0.0.7", "metadata.internal"],
    );
    assert_eq!(guard.check_url(&url("http://127.0.0.1:9/")), Ok(()));
    assert_eq!(guard.check_url(&url("http://[::ffff:127.0.0.1]/")), Ok(()));
    assert_eq!(guard.check_url(&url("http://[fd00::1]/")), Ok(()));
    // allow_hosts names an IP literal as written.
    assert_eq!(guard.check_url(&url("http://10.0.0.7/")), Ok(()));
    assert_eq!(
        guard.check_url(&url("http://10.0.0.8/")),
        Err(forbidden_error("10.0.0.8", "private"))
    );
    assert_eq!(
        guard.check_url(&url("http://[::1]/")),
        Err(forbidden_error("::1", "loopback"))
    );
    assert_eq!(
        guard.check_url(&url("http://169.254.169.254/")),
        Err(forbidden_error(
            "169.254.169.254",
            "link-local (cloud metadata)"
        ))
    );
}

#[test]
fn redirect_targets_are_checked_and_counted() {
    let guard = guard(&["127.0.0.1/32"], &[]);
    assert_eq!(
        guard.check_redirect(&url("http://169.254.169.254/latest/meta-data/"), 1, 5),
        Err(forbidden_error(
            "169.254.169.254",
            "link-local (cloud metadata)"
        ))
    );
    assert_eq!(
        guard.check_redirect(&url("http://[::1]:8080/"), 1, 5),
        Err(forbidden_error("::1", "loopback"))
    );
    assert!(matches!(
        guard.check_redirect(&url("file:///etc/passwd"), 1, 5),
        Err(HttpError::InvalidUrl(_))
    ));
    assert_eq!(
        guard.check_redirect(&url("http://127.0.0.1:1/"), 5, 5),
        Ok(())
    );
    assert_eq!(
        guard.check_redirect(&url("http://127.0.0.1:1/"), 6, 5),
        Err(HttpError::Redirects { limit: 5 })
    );
    assert_eq!(
        guard.check_redirect(&url("http://8.8.8.8/"), 1, 0),
        Err(HttpError::Redirects { limit: 0 })
    );
    // A host name passes here: the resolver checks it when the hop connects.
    assert_eq!(
        guard.check_redirect(&url("http://localhost/"), 1, 5),
        Ok(())
    );
}

#[test]
fn resolved_addresses_are_filtered() {
    let addr = |text: &str| SocketAddr::new(text.parse().unwrap(), 0);
    let guard_none = guard(&[], &[]);

    // Mixed answers keep the public addresses only: the socket never tries the private one.
    assert_eq!(
        guard_none.filter("mixed.example", vec![addr("10.0.0.1"), addr("8.8.8.8")]),
        Ok(vec![addr("8.8.8.8")])
    );
    let refused = guard_none
        .filter("localhost", vec![addr("::1"), addr("127.0.0.1")])
        .unwrap_err();
    assert_eq!(
        refused,
        forbidden_error("localhost (::1, 127.0.0.1)", "loopback")
    );
    assert_eq!(
        refused.to_string(),
        "requests to localhost (::1, 127.0.0.1) are refused: loopback"
    );
    assert_eq!(
        guard_none
            .filter("rebind.example", vec![addr("169.254.169.254")])
            .unwrap_err(),
        forbidden_error(
            "rebind.example (169.254.169.254)",
            "link-local (cloud metadata)"
        )
    );
    assert!(matches!(
        guard_none.filter("nothing.example", vec![]),
        Err(HttpError::Transport(_))
    ));

    let guard_loopback = guard(&["127.0.0.0/8"], &[]);
    assert_eq!(
        guard_loopback.filter("localhost", vec![addr("::1"), addr("127.0.0.1")]),
        Ok(vec![addr("127.0.0.1")])
    );
    let guard_named = guard(&[], &["Internal.Example."]);
    assert_eq!(
        guard_named.filter("internal.example", vec![addr("10.1.1.1")]),
        Ok(vec![addr("10.1.1.1")])
    );
}

#[test]
fn methods_are_checked() {
    assert_eq!(method("").unwrap(), reqwest::Method::GET);
    assert_eq!(method("post").unwrap(), reqwest::Method::POST);
    assert_eq!(method(" Patch ").unwrap(), reqwest::Method::PATCH);
    for good in METHODS {
        assert_eq!(method(good).unwrap().as_str(), *good);
    }
    for bad in ["TRACE", "CONNECT", "PROPFIND", "GET /", "G\u{e9}T"] {
        assert_eq!(
            method(bad).unwrap_err(),
            HttpError::InvalidMethod(bad.to_owned())
        );
    }
}

#[test]
fn headers_that_frame_the_message_are_refused() {
    let headers = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    assert!(header_map(&headers("X-Api-Key", "abc")).is_ok());
    for name in [
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "Upgrade",
    ] {
        let err = header_map(&headers(name, "1")).unwrap_err();
        assert!(matches!(err, HttpError::InvalidHeader { .. }), "{name}");
    }
    assert!(header_map(&headers("X-A", "a\r\nInjected: 1")).is_err());
    assert!(header_map(&headers("bad name", "1")).is_err());
    let map = header_map(&[("Accept".into(), "a".into()), ("accept".into(), "b".into())]).unwrap();
    assert_eq!(map.get_all("accept").iter().count(), 2);
}

#[test]
fn no_error_message_says_timeout() {
    // The official client retries any error whose message contains the word.
    let errors = [
        HttpError::TimedOut {
            limit: Duration::from_secs(10),
        },
        HttpError::TimedOut {
            limit: Duration::from_millis(300),
        },
        forbidden_error("127.0.0.1", "loopback"),
        HttpError::Redirects { limit: 5 },
        HttpError::TooLarge {
            direction: Direction::Response,
            limit: 10,
        },
    ];
    for error in errors {
        assert!(
            !error.to_string().to_lowercase().contains("timeout"),
            "{error}"
        );
    }
    assert_eq!(
        HttpError::TimedOut {
            limit: Duration::from_secs(10)
        }
        .to_string(),
        "the request took longer than 10s"
    );
}

#[test]
fn the_config_reads_from_yaml_with_defaults() {
    let config: HttpConfig = serde_norway::from_str(
        "allow: [127.0.0.0/8, '::1']\nallow_hosts: [api.internal]\ntimeout: 300ms\n",
    )
    .unwrap();
    assert_eq!(config.allow.len(), 2);
    assert_eq!(config.allow_hosts, vec!["api.internal".to_owned()]);
    assert_eq!(config.timeout, Duration::from_millis(300));
    assert_eq!(config.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(config.max_response_bytes, 5 * 1024 * 1024);

    let default = HttpConfig::default();
    assert!(default.allow.is_empty() && default.allow_hosts.is_empty());
    let text = serde_norway::to_string(&default).unwrap();
    assert!(text.contains("timeout: 10s"), "{text}");
    let back: HttpConfig = serde_norway::from_str(&text).unwrap();
    assert_eq!(back, default);

    assert!(serde_norway::from_str::<HttpConfig>("alow: []\n").is_err());
    let bad = serde_norway::from_str::<HttpConfig>("allow: [10.0.0.1/8]\n").unwrap_err();
    assert!(bad.to_string().contains("past the prefix"), "{bad}");
}

fn response(content_type: &str, body: &[u8]) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.to_vec(),
        final_url: "http://example.com/".into(),
    }
}

#[test]
fn body_values_are_json_then_text_then_base64() {
    use serde_json::json;
    assert_eq!(
        body_value(&response("application/json", br#"{"a":[1,2]}"#)),
        json!({"a": [1, 2]})
    );
    assert_eq!(
        body_value(&response("text/plain", br#"{"mislabelled":true}"#)),
        json!({"mislabelled": true})
    );
    assert_eq!(
        body_value(&response("application/json", b"{broken")),
        json!("{broken")
    );
    assert_eq!(
        body_value(&response("text/html", b"<p>hi</p>")),
        json!("<p>hi</p>")
    );
    assert_eq!(body_value(&response("text/plain", b"")), json!(""));
    assert_eq!(
        body_value(&response("application/octet-stream", &[0xff, 0x00, 0xfe])),
        json!("/wD+")
    );
}

#[test]
fn base64_matches_the_rfc_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), expected, "{input}");
    }
}

// ---- end to end, on loopback ----

/// What a test server saw of one request.
#[derive(Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// How a test server answers.
#[derive(Clone)]
struct Reply {
    /// Written right away.
    head: Vec<u8>,
    /// Waited before the rest.
    delay: Duration,
    /// Written after the delay.
    rest: Vec<u8>,
}

impl Reply {
    fn now(raw: impl Into<Vec<u8>>) -> Self {
        Self {
            head: raw.into(),
            delay: Duration::ZERO,
            rest: Vec::new(),
        }
    }
}

struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// A raw HTTP/1.1 server on 127.0.0.1, port chosen by the system, answering every request
/// with `reply(port)`, one request per connection.
async fn server(reply: impl Fn(u16) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let (tx, seen) = mpsc::unbounded_channel();
    let counter = Arc::clone(&connections);
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            let reply = reply(port);
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                let _ = tx.send(request);
                let _ = socket.write_all(&reply.head).await;
                tokio::time::sleep(reply.delay).await;
                let _ = socket.write_all(&reply.rest).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Server {
        port,
        connections,
        seen,
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut seen = Seen {
        head,
        body: buffer[head_end..].to_vec(),
    };
    let length: usize = seen
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while seen.body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        seen.body.extend_from_slice(&chunk[..n]);
    }
    Some(seen)
}

fn ok(content_type: &str, body: &str) -> Reply {
    Reply::now(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nx-served-by: test\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

fn redirect(to: &str) -> Reply {
    Reply::now(format!(
        "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
}

fn client(allow: &[&str], allow_hosts: &[&str]) -> HttpClient {
    client_with(allow, allow_hosts, |_| {})
}

fn client_with(
    allow: &[&str],
    allow_hosts: &[&str],
    adjust: impl FnOnce(&mut HttpConfig),
) -> HttpClient {
    let mut config = HttpConfig {
        allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
        allow_hosts: allow_hosts.iter().map(|h| (*h).to_owned()).collect(),
        ..HttpConfig::default()
    };
    adjust(&mut config);
    HttpClient::new(config).unwrap()
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: String::new(),
        url,
        ..HttpRequest::default()
    }
}

#[tokio::test]
async fn loopback_is_refused_unless_allow_listed() {
    let server = server(|_| ok("text/plain", "secret")).await;
    let client = client(&[], &[]);

    let err = client
        .send(get(format!("http://127.0.0.1:{}/", server.port)))
        .await
        .unwrap_err();
    assert_eq!(err, forbidden_error("127.0.0.1", "loopback"));
    assert_eq!(
        err.to_string(),
        "requests to 127.0.0.1 are refused: loopback"
    );
    let err = client
        .send(get(format!("http://[::ffff:127.0.0.1]:{}/", server.port)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HttpError::Forbidden {
                reason: "loopback",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "nothing was sent"
    );
}

#[tokio::test]
async fn localhost_is_refused_after_resolution() {
    let server = server(|_| ok("text/plain", "secret")).await;
    let err = client(&[], &[])
        .send(get(format!("http://localhost:{}/", server.port)))
        .await
        .unwrap_err();
    let HttpError::Forbidden { host, reason } = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert!(host.starts_with("localhost ("), "{host}");
    assert_eq!(*reason, "loopback");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "nothing was sent"
    );

    // Allow-listing the block lets the name through, to the allowed addresses only.
    let response = client(&["127.0.0.1/32"], &[])
        .send(get(format!("http://localhost:{}/", server.port)))
        .await
        .unwrap();
    assert_eq!(response.body, b"secret");
}

#[tokio::test]
async fn get_and_post_work_when_allow_listed() {
    let mut server = server(|_| ok("application/json", r#"{"ok":true,"n":1}"#)).await;
    let client = client(&["127.0.0.0/8"], &[]);

    let response = client
        .send(HttpRequest {
            method: "get".into(),
            url: format!("http://127.0.0.1:{}/items?page=2", server.port),
            headers: vec![("X-Api-Key".into(), "k1".into())],
            body: None,
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("X-Served-By"), Some("test"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        body_value(&response),
        serde_json::json!({"ok": true, "n": 1})
    );
    assert_eq!(
        response.final_url,
        format!("http://127.0.0.1:{}/items?page=2", server.port)
    );
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.request_line(), "GET /items?page=2 HTTP/1.1");
    assert_eq!(seen.header("x-api-key"), Some("k1"));
    assert_eq!(seen.header("user-agent"), Some(DEFAULT_USER_AGENT));

    let response = client
        .send(HttpRequest {
            method: "POST".into(),
            url: format!("http://127.0.0.1:{}/items", server.port),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Some(br#"{"name":"x"}"#.to_vec()),
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.request_line(), "POST /items HTTP/1.1");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.body, br#"{"name":"x"}"#);
}

#[tokio::test]
async fn redirects_are_followed_checked_and_limited() {
    let target = server(|_| ok("text/plain", "arrived")).await;
    let to = format!("http://127.0.0.1:{}/end", target.port);
    let hop = server(move |_| redirect(&to)).await;

    // Allowed all the way.
    let response = client(&["127.0.0.1/32"], &[])
        .send(get(format!("http://127.0.0.1:{}/start", hop.port)))
        .await
        .unwrap();
    assert_eq!(response.body, b"arrived");
    assert_eq!(
        response.final_url,
        format!("http://127.0.0.1:{}/end", target.port)
    );

    // To an IP literal outside the allow-list: refused by the policy, before connecting.
    let v6_target = server(|_| ok("text/plain", "unreachable")).await;
    let to = format!("http://[::1]:{}/", v6_target.port);
    let to_v6 = server(move |_| redirect(&to)).await;
    let err = client(&["127.0.0.1/32"], &[])
        .send(get(format!("http://127.0.0.1:{}/", to_v6.port)))
        .await
        .unwrap_err();
    assert_eq!(err, forbidden_error("::1", "loopback"));

    // To a host name: the resolver checks the new hop. The first host is allowed by name
    // only, so `localhost` gets no pass.
    let to = format!("http://localhost:{}/", target.port);
    let to_name = server(move |_| redirect(&to)).await;
    let before = target.connections.load(Ordering::SeqCst);
    let err = client(&[], &["127.0.0.1"])
        .send(get(format!("http://127.0.0.1:{}/", to_name.port)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::Forbidden { host, reason: "loopback" } if host.starts_with("localhost")),
        "{err}"
    );
    assert_eq!(target.connections.load(Ordering::SeqCst), before);

    // To another scheme: refused by the policy.
    let to_ftp = server(|port| redirect(&format!("ftp://127.0.0.1:{port}/"))).await;
    let err = client(&["127.0.0.1/32"], &[])
        .send(get(format!("http://127.0.0.1:{}/", to_ftp.port)))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::InvalidUrl(_)), "{err}");
    assert_eq!(to_ftp.connections.load(Ordering::SeqCst), 1);
    // A location without an authority is not a redirect to follow at all (tower-http cannot
    // make it a URI, and never asks the policy): the 302 itself comes back.
    let to_file = server(|_| redirect("file:///etc/passwd")).await;
    let response = client(&["127.0.0.1/32"], &[])
        .send(get(format!("http://127.0.0.1:{}/", to_file.port)))
        .await
        .unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("file:///etc/passwd"));

    // In a loop: stopped after the limit.
    let looping = server(|port| redirect(&format!("http://127.0.0.1:{port}/again"))).await;
    let err = client_with(&["127.0.0.1/32"], &[], |c| c.max_redirects = 2)
        .send(get(format!("http://127.0.0.1:{}/", looping.port)))
        .await
        .unwrap_err();
    assert_eq!(err, HttpError::Redirects { limit: 2 });
    assert_eq!(looping.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn sizes_are_capped_both_ways() {
    let big = "x".repeat(4096);
    let body = big.clone();
    let declared = server(move |_| ok("text/plain", &body)).await;
    let body = big.clone();
    // No content-length: the cap has to hold while reading.
    let undeclared = server(move |_| {
        Reply::now(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n{body}"
        ))
    })
    .await;
    let client = client_with(&["127.0.0.1/32"], &[], |c| {
        c.max_response_bytes = 1024;
        c.max_request_bytes = 2048;
    });
    let response_too_large = HttpError::TooLarge {
        direction: Direction::Response,
        limit: 1024,
    };
    for port in [declared.port, undeclared.port] {
        let err = client
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert_eq!(err, response_too_large);
    }

    let request = HttpRequest {
        method: "POST".into(),
        url: format!("http://127.0.0.1:{}/", declared.port),
        headers: Vec::new(),
        body: Some(big.into_bytes()),
    };
    let before = declared.connections.load(Ordering::SeqCst);
    let err = client.send(request).await.unwrap_err();
    assert_eq!(
        err,
        HttpError::TooLarge {
            direction: Direction::Request,
            limit: 2048
        }
    );
    assert_eq!(declared.connections.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn slow_servers_hit_the_time_limit() {
    let limit = Duration::from_millis(300);
    let silent = server(|_| Reply {
        head: Vec::new(),
        delay: Duration::from_secs(5),
        rest: ok("text/plain", "late").head,
    })
    .await;
    // The head arrives, the body never finishes in time: the limit covers reading too.
    let dribbling = server(|_| Reply {
        head: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec(),
        delay: Duration::from_secs(5),
        rest: b"defghij".to_vec(),
    })
    .await;
    let client = client_with(&["127.0.0.1/32"], &[], |c| c.timeout = limit);
    for port in [silent.port, dribbling.port] {
        let started = Instant::now();
        let err = client
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert_eq!(err, HttpError::TimedOut { limit });
        assert_eq!(err.to_string(), "the request took longer than 300ms");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn transport_failures_say_what_happened_without_the_url() {
    // A port nothing listens on any more.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = client(&["127.0.0.1/32"], &[])
        .send(get(format!("http://127.0.0.1:{port}/?token=s3cret")))
        .await
        .unwrap_err();
    let HttpError::Transport(message) = &err else {
        panic!("expected a transport error, got {err}");
    };
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn malformed_requests_are_refused_before_sending() {
    let client = client(&[], &[]);
    let err = client.send(get("not a url".into())).await.unwrap_err();
    assert!(matches!(err, HttpError::InvalidUrl(_)), "{err}");
    let err = client
        .send(HttpRequest {
            method: "TRACE".into(),
            url: "http://127.0.0.1:9/".into(),
            ..HttpRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err, HttpError::InvalidMethod("TRACE".into()));
}

// ---- the original's test host, answered in process ----

#[tokio::test]
async fn the_mock_host_is_answered_in_process_with_its_limits() {
    let client = client(&[], &[]);
    let response = client
        .send(get(
            "https://mock-api.ap-aggregator.local/status/404".to_owned()
        ))
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    // The request limits still apply to it.
    let small = client_with(&[], &[], |c| c.max_request_bytes = 64);
    let mut big = get("https://mock-api.ap-aggregator.local/post".to_owned());
    big.body = Some(vec![b'x'; 100]);
    assert!(matches!(
        small.send(big).await,
        Err(HttpError::TooLarge { .. })
    ));
    // Another host with the same path is not it, and is checked as ever.
    assert_eq!(
        client
            .send(get("https://127.0.0.1/status/200".to_owned()))
            .await,
        Err(forbidden_error("127.0.0.1", "loopback"))
    );
}
