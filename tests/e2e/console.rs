//! The console at `/telemetry`: its session API over plain HTTP, and the page in a real headless
//! browser (Debian's `chromium` through `chromedriver`, driven over WebDriver) against anvil, the
//! aggregator and two operator processes.
//!
//! `CONSOLE_SCREENSHOT=docs/console.png cargo test --test e2e console::` writes the README's
//! screenshot from the browser test.

use std::process::Stdio;
use std::time::{Duration, Instant};

use aggregator::auth::Role;
use aggregator::pb;
use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::network::{Heads, Network, block_trigger, watched_task};
use crate::support::{TestServer, User, code_node, random_u64, run_blocking, task_of, with_key};

// ---- The session API, without a browser ----

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(
    base: &str,
    body: &str,
    content_type: &str,
    origin: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut request = http()
        .post(format!("{base}/telemetry/session"))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    Ok(request.send().await?)
}

async fn error_of(response: reqwest::Response) -> anyhow::Result<(u16, String)> {
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    Ok((
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test]
async fn the_admin_part_opens_only_with_an_admin_api_key_and_closes_with_it() -> anyhow::Result<()>
{
    let mut server = TestServer::start().await?;
    let base = server.http_url();
    let app = &server.running().app;
    let subject = alloy::primitives::Address::repeat_byte(7);
    let (_, admin_key) =
        app.token_issuer
            .api_key(subject, Role::Admin, Duration::from_secs(3600))?;
    let (_, readonly_key) =
        app.token_issuer
            .api_key(subject, Role::ReadOnly, Duration::from_secs(3600))?;

    // The page and its assets are served from the binary, with a policy that loads nothing else.
    let page = http().get(format!("{base}/telemetry")).send().await?;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = page.text().await?;
    assert!(!html.contains("https://"), "no asset from elsewhere");
    for asset in ["console.js", "console.css", "favicon.svg"] {
        let response = http()
            .get(format!("{base}/telemetry/assets/{asset}"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(
            html.contains(&format!("/telemetry/assets/{asset}")),
            "{asset}"
        );
    }
    let missing = http()
        .get(format!("{base}/telemetry/assets/../../etc/passwd"))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    // No session: the admin reads are refused, the session says so.
    let refused = http()
        .get(format!("{base}/telemetry/admin/executions"))
        .send()
        .await?;
    let (status, message) = error_of(refused).await?;
    assert_eq!(status, 401);
    assert!(message.contains("admin API key"), "{message}");
    let status: Value = http()
        .get(format!("{base}/telemetry/session"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(status["admin"], false);

    // What is not an admin API key is refused, each with its reason.
    let json = "application/json";
    let cases = [
        (r#"{"key": ""}"#, json, None, 401, "required"),
        (r#"{}"#, json, None, 401, "required"),
        ("not json", json, None, 400, "not"),
        (r#"{"key": "a.b.c"}"#, json, None, 401, "refused"),
    ];
    for (body, content_type, origin, want, words) in cases {
        let (status, message) = error_of(sign_in(&base, body, content_type, origin).await?).await?;
        assert_eq!(status, want, "{body}: {message}");
        assert!(message.contains(words), "{body}: {message}");
    }
    let body = json!({ "key": readonly_key }).to_string();
    let (status, message) = error_of(sign_in(&base, &body, json, None).await?).await?;
    assert_eq!(status, 403);
    assert!(message.contains("read-only"), "{message}");
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let body = json!({ "key": user.token }).to_string();
    let (status, message) = error_of(sign_in(&base, &body, json, None).await?).await?;
    assert_eq!(status, 401);
    assert!(message.contains("session token"), "{message}");
    let body = json!({ "key": admin_key }).to_string();
    let (status, _) = error_of(sign_in(&base, &body, "text/plain", None).await?).await?;
    assert_eq!(status, 415, "a form post from another site cannot sign in");
    let (status, message) =
        error_of(sign_in(&base, &body, json, Some("https://elsewhere.example")).await?).await?;
    assert_eq!(status, 403, "{message}");

    // The admin key opens a session held in an HttpOnly, SameSite=Strict cookie.
    let response = sign_in(&base, &body, json, Some(&base)).await?;
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str()?.to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/telemetry"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(&admin_key),
        "the cookie is not the key"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let status: Value = response.json().await?;
    assert_eq!(status["admin"], true);
    let listing = http()
        .get(format!("{base}/telemetry/admin/executions"))
        .header("cookie", &cookie)
        .send()
        .await?;
    assert_eq!(listing.status(), 200);
    let listing: Value = listing.json().await?;
    assert_eq!(listing["kind"], "latest");
    let bad_search = http()
        .get(format!(
            "{base}/telemetry/admin/executions?q=robert'); drop"
        ))
        .header("cookie", &cookie)
        .send()
        .await?;
    assert_eq!(error_of(bad_search).await?.0, 400);

    // The event stream carries the public state; the admin events only with the cookie.
    let mut stream = http()
        .get(format!("{base}/telemetry/stream"))
        .send()
        .await?;
    assert_eq!(
        stream.headers()["content-type"].to_str()?,
        "text/event-stream"
    );
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await??
        .unwrap_or_default();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("event: state\ndata: {"), "{first}");
    assert!(!first.contains("event: executions"), "{first}");

    // Revoking the key ends the session at once.
    c.revoke_api_key(with_key(
        pb::RevokeApiKeyReq {
            key: admin_key.clone(),
            jti: String::new(),
        },
        &admin_key,
    ))
    .await?;
    let after = http()
        .get(format!("{base}/telemetry/admin/executions"))
        .header("cookie", &cookie)
        .send()
        .await?;
    let (status, message) = error_of(after).await?;
    assert_eq!(status, 401);
    assert!(message.contains("ended"), "{message}");

    // An open page does not hold up a graceful shutdown.
    tokio::time::timeout(Duration::from_secs(15), server.stop()).await??;
    drop(stream);
    Ok(())
}

// ---- The page in a browser ----

/// `chromedriver` with a headless `chromium` session; both end when dropped.
struct Browser {
    client: Option<Client>,
    _driver: Child,
    _profile: tempfile::TempDir,
}

fn program(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    async fn start() -> anyhow::Result<Self> {
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        for (path, package) in [(&chromium, "chromium"), (&chromedriver, "chromium-driver")] {
            anyhow::ensure!(
                std::path::Path::new(path).exists(),
                "{path} is missing: apt-get install {package} (.ci/run installs it)"
            );
        }
        // Port 0: chromedriver takes a free port itself and says which (no race with other
        // tests for a port picked here).
        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = driver.stdout.take().context("chromedriver's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    return Ok(port);
                }
            }
            anyhow::bail!("chromedriver exited without saying its port")
        })
        .await??;
        // Keep reading what it prints, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir()?;
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // CI runs as root, where chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    // The machine's network is closed: no background connections.
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            match builder
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => anyhow::bail!("chromedriver on {url} did not start a session: {e}"),
            }
        };
        Ok(Self {
            client: Some(client),
            _driver: driver,
            _profile: profile,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }

    async fn script(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.client().execute(script, Vec::new()).await?)
    }

    /// The element's text, read in one step: the page re-renders its lists as the log moves,
    /// so an element found in one WebDriver call may be gone by the next.
    async fn text(&self, css: &str) -> anyhow::Result<String> {
        let text = self
            .script(&format!(
                "const e = document.querySelector({css:?}); return e ? e.innerText : null"
            ))
            .await?;
        text.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {css} on the page"))
    }

    async fn displayed(&self, css: &str) -> anyhow::Result<bool> {
        Ok(self
            .client()
            .find(Locator::Css(css))
            .await?
            .is_displayed()
            .await?)
    }

    /// Clicks the element, found and clicked in one step (see `text`).
    async fn click(&self, css: &str) -> anyhow::Result<()> {
        let clicked = self
            .script(&format!(
                "const e = document.querySelector({css:?}); if (!e) return false; e.click(); return true"
            ))
            .await?;
        anyhow::ensure!(clicked == Value::Bool(true), "no {css} to click");
        Ok(())
    }

    async fn count(&self, css: &str) -> anyhow::Result<usize> {
        Ok(self.client().find_all(Locator::Css(css)).await?.len())
    }

    /// Polls `check` every 50 ms until it holds or `within` passes.
    async fn until(&self, what: &str, within: Duration, check: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.script(check).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let body = self
                    .script("return document.body.innerText")
                    .await
                    .unwrap_or_default();
                anyhow::bail!("the page did not show {what} within {within:?}:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn source(&self) -> anyhow::Result<String> {
        let rendered = self
            .script("return document.documentElement.outerHTML")
            .await?;
        Ok(rendered.as_str().unwrap_or_default().to_owned())
    }

    async fn sign_in(&self, key: &str) -> anyhow::Result<()> {
        let input = self.client().find(Locator::Css("#key")).await?;
        input.clear().await?;
        if !key.is_empty() {
            input.send_keys(key).await?;
        }
        self.click("#signin button[type=submit]").await
    }
}

fn exists(css: &str) -> String {
    format!("return document.querySelector({css:?}) !== null")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_operators_and_executions_live_and_no_secret() -> anyhow::Result<()> {
    let mut net = Network::new(2, |config| {
        // Checkpoints often, so that the operators' cosignatures show within the test.
        config.event_log.checkpoint_interval = Duration::from_millis(300);
    })
    .await?;
    net.start_operator(0, Heads::Subscription).await?;
    net.start_operator(1, Heads::Polling).await?;
    let (mut c, user, wallet) = net.user().await?;
    let base = net.server.http_url();

    // Executions attested by both operators: a block task.
    let blocks = c
        .create_task(user.req(watched_task("every other block", &wallet, block_trigger(2))))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&blocks, 2).await?;
    net.mine(4).await?;
    let block_runs = net.wait_runs(&blocks, 2).await?;

    // A task whose code returns a secret's value and logs it (the engine records both masked;
    // the page must not show the value either way).
    let secret = format!("console-secret-{}", random_u64());
    c.create_secret(user.req(pb::CreateOrUpdateSecretReq {
        name: "console_secret".into(),
        secret: secret.clone(),
        ..Default::default()
    }))
    .await?;
    let leaky = c
        .create_task(user.req(task_of(
            "uses a secret",
            &wallet,
            vec![code_node(
                "code",
                "console.log('token ' + apContext.configVars.console_secret); \
                 return { token: apContext.configVars.console_secret };",
            )],
            None,
        )))
        .await?
        .into_inner()
        .id;
    let first = run_blocking(&mut c, &user, &leaky).await?;
    assert_eq!(
        first.status,
        pb::ExecutionStatus::Success as i32,
        "{first:?}"
    );
    let recorded = format!("{:?}", first.steps);
    assert!(
        !recorded.contains(&secret) && recorded.contains("***"),
        "the run recorded the secret masked: {recorded}"
    );

    let app = net.app();
    let subject = alloy::primitives::Address::repeat_byte(9);
    let (_, admin_key) =
        app.token_issuer
            .api_key(subject, Role::Admin, Duration::from_secs(3600))?;
    let (_, readonly_key) =
        app.token_issuer
            .api_key(subject, Role::ReadOnly, Duration::from_secs(3600))?;

    let browser = Browser::start().await?;
    let outcome = drive(
        &browser,
        &net,
        &mut c,
        &user,
        &base,
        &wallet,
        (&blocks, &block_runs[0].row.id),
        &leaky,
        &secret,
        (&admin_key, &readonly_key),
    )
    .await;
    browser.close().await;
    outcome
}

#[expect(clippy::too_many_arguments, reason = "one scenario's fixtures")]
async fn drive(
    browser: &Browser,
    net: &Network,
    c: &mut pb::aggregator_client::AggregatorClient<tonic::transport::Channel>,
    user: &User,
    base: &str,
    wallet: &str,
    (blocks, block_run): (&str, &str),
    leaky: &str,
    secret: &str,
    (admin_key, readonly_key): (&str, &str),
) -> anyhow::Result<()> {
    let page = browser.client();
    page.goto(&format!("{base}/telemetry")).await?;
    let patience = Duration::from_secs(20);

    // Both operators, connected.
    for keys in &net.keys {
        let address = format!("{:#x}", keys.address());
        browser
            .until(
                &format!("operator {address} connected"),
                patience,
                &exists(&format!(
                    "[data-operator=\"{address}\"][data-connected=\"true\"]"
                )),
            )
            .await?;
    }
    browser
        .until(
            "the executions counted",
            patience,
            "return Number(document.querySelector('#activity-totals .total:nth-child(2) b').textContent.replace(/,/g, '')) >= 3",
        )
        .await?;
    assert_eq!(browser.text("#store-state").await?, "accepted");
    // The transparency log's checkpoints, cosigned by both operators.
    browser
        .until(
            "a checkpoint cosigned by both operators",
            patience,
            "return document.querySelector('#log-checkpoint').textContent.includes('cosigned by 2 operators') \
             && [...document.querySelectorAll('[data-operator]')].every(o => Number(o.dataset.cosigned) > 0)",
        )
        .await?;
    let (size, _) = net
        .app()
        .transparency
        .store()
        .latest_checkpoint()?
        .expect("a checkpoint");
    let shown: u64 = browser
        .text("#log-checkpoint")
        .await?
        .split(' ')
        .next()
        .unwrap_or_default()
        .replace(',', "")
        .parse()?;
    assert!(shown > 0 && shown <= size, "{shown} shown, {size} stored");

    // Counts only: no user, task or wallet in the public part.
    let public = browser.source().await?;
    let owner = user.signer.address();
    for private in [
        wallet.to_lowercase(),
        format!("{owner:#x}"),
        owner.to_checksum(None),
        blocks.to_owned(),
        leaky.to_owned(),
        block_run.to_owned(),
    ] {
        assert!(
            !public.contains(&private),
            "the public page shows {private}"
        );
    }
    // Nothing loaded from elsewhere.
    let loaded = browser
        .script(
            "return performance.getEntriesByType('resource').map(r => r.name)\
             .concat([...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href))",
        )
        .await?;
    for url in loaded.as_array().unwrap() {
        let url = url.as_str().unwrap_or_default();
        assert!(
            url.starts_with(base),
            "{url} is not served by the aggregator"
        );
    }
    // Usable on a phone: nothing wider than the screen.
    page.set_window_size(390, 844).await?;
    browser
        .until(
            "a layout without horizontal scrolling at phone width",
            patience,
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await?;
    page.set_window_size(1280, 1000).await?;

    // The admin part: a missing key, then a read-only one, are refused.
    assert!(!browser.displayed("#admin-panel").await?);
    browser.sign_in("").await?;
    browser
        .until(
            "the refusal of a missing key",
            patience,
            "return document.querySelector('#signin-error').textContent.includes('required')",
        )
        .await?;
    browser.sign_in(readonly_key).await?;
    browser
        .until(
            "the refusal of a read-only key",
            patience,
            "return document.querySelector('#signin-error').textContent.includes('read-only')",
        )
        .await?;
    assert!(!browser.displayed("#admin-panel").await?);
    assert_eq!(browser.count("[data-execution]").await?, 0);
    assert_eq!(
        browser
            .script("return document.querySelector('#key').value")
            .await?,
        json!(""),
        "the key is not left in the form"
    );

    // A valid admin key: the executions, with their steps.
    browser.sign_in(admin_key).await?;
    browser
        .until(
            "the block task's execution",
            patience,
            &exists(&format!("[data-execution=\"{block_run}\"]")),
        )
        .await?;
    assert!(browser.displayed("#admin-panel").await?);
    assert!(!browser.displayed("#signin").await?);
    assert_eq!(
        browser.script("return document.cookie").await?,
        json!(""),
        "the session cookie is HttpOnly"
    );
    browser
        .click(&format!("[data-execution=\"{block_run}\"] > summary"))
        .await?;
    let step = browser
        .text(&format!(
            "[data-execution=\"{block_run}\"] [data-step=\"code\"]"
        ))
        .await?;
    assert!(
        step.contains("success") || step.contains("SUCCESS"),
        "{step}"
    );
    let trigger = browser
        .text(&format!("[data-execution=\"{block_run}\"] .body"))
        .await?;
    assert!(trigger.contains("operators"), "{trigger}");

    // A new execution appears without a reload.
    browser
        .script("window.__console_marker = 'still here'; return true")
        .await?;
    let run = run_blocking(c, user, leaky).await?;
    let finished = Instant::now();
    browser
        .until(
            "the new execution, finished",
            Duration::from_secs(2),
            // The stream may first show it queued or running (a listing pushed between the
            // events of the run), then again once it finished.
            &exists(&format!(
                "[data-execution=\"{}\"]:not([data-status=\"pending\"]):not([data-status=\"running\"])",
                run.execution_id
            )),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}\n(it finished {:?} ago in the log)", finished.elapsed())
        })?;
    eprintln!(
        "the new execution appeared {:?} after it finished",
        finished.elapsed()
    );
    assert_eq!(
        browser.script("return window.__console_marker").await?,
        json!("still here"),
        "the page was not reloaded"
    );
    let selector = format!("[data-execution=\"{}\"]", run.execution_id);
    browser.click(&format!("{selector} > summary")).await?;
    let steps = browser.text(&format!("{selector} .body")).await?;
    assert!(
        steps.contains("token ***"),
        "the step's log, masked: {steps}"
    );
    assert!(
        steps.contains(r#"{"token":"***"}"#),
        "the step's output, masked: {steps}"
    );

    // The task's timeline, as replay prints it.
    browser.click(&format!("{selector} .links a")).await?;
    browser
        .until(
            "the timeline",
            patience,
            "return document.querySelectorAll('#timeline [data-event]').length > 0",
        )
        .await?;
    let timeline = browser.text("#timeline").await?;
    for event in [
        "TaskCreated",
        "TaskTriggered",
        "StepRecorded",
        "ExecutionFinished",
    ] {
        assert!(timeline.contains(event), "{event} in {timeline}");
    }

    // Never a secret value: not the owner's secret, not the keys used to sign in.
    let shown = browser.source().await?;
    for (what, value) in [
        ("the secret", secret),
        ("the admin key", admin_key),
        ("the read-only key", readonly_key),
    ] {
        assert!(!shown.contains(value), "the page shows {what}");
    }

    // With the executions open at desktop width, nothing is wider than the window either.
    browser
        .until(
            "a layout without horizontal scrolling at desktop width",
            patience,
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await?;

    if let Ok(path) = std::env::var("CONSOLE_SCREENSHOT") {
        browser.click("#timeline button").await?;
        page.set_window_size(1280, 2100).await?;
        browser.script("window.scrollTo(0, 0); return true").await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::write(&path, page.screenshot().await?)?;
    }

    // Signing out closes the admin part; the public part stays live.
    browser.click("#signout").await?;
    browser
        .until(
            "the sign-in form again",
            patience,
            "return document.querySelector('#admin-panel').hidden === true",
        )
        .await?;
    assert_eq!(browser.count("[data-execution]").await?, 0);
    Ok(())
}
