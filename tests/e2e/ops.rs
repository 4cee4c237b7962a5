//! The operations kit in `ops/`: the alerting rules pass `promtool` (Debian's `prometheus`
//! package) and their unit tests, and every metric the Grafana dashboard and the rules name is
//! one a running aggregator exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::network::{Heads, Network, block_trigger, watched_task};

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops")
}

fn promtool(args: &[&str]) -> anyhow::Result<String> {
    let program = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let output = std::process::Command::new(&program)
        .args(args)
        .current_dir(ops())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "{program} did not start ({e}): apt-get install prometheus (.ci/run installs it)"
            )
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(output.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() -> anyhow::Result<()> {
    let checked = promtool(&["check", "rules", "alerts.yml"])?;
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    promtool(&["check", "config", "prometheus.yml"])?;
    let tested = promtool(&["test", "rules", "alerts.test.yml"])?;
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a unit test in which it fires.
    let rules: Value = serde_norway::from_str(&std::fs::read_to_string(ops().join("alerts.yml"))?)?;
    let tests: Value =
        serde_norway::from_str(&std::fs::read_to_string(ops().join("alerts.test.yml"))?)?;
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|case| case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|case| case["alertname"].as_str())
        .collect();
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["alert"].as_str().unwrap_or_default();
            assert!(fired.contains(name), "no unit test fires {name}");
        }
    }
    Ok(())
}

/// PromQL words that are not metric names: keywords and aggregation operators (which may be
/// followed by `by (...)` rather than by their parenthesis).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregations, keywords, label names (inside `{}` or a `by (...)` list) or variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop strings, label matchers and ranges first.
    let mut plain = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for ch in expr.chars() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '\'' | '`' if depth_brace == 0 => quote = Some(ch),
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => plain.push(ch),
        }
        if ch == '}' || ch == ']' {
            plain.push(' ');
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            // A number or a duration (`0.99`, `5m`, `1e3`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let variable = start > 0 && chars[start - 1] == '$';
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            let keyword = KEYWORDS.contains(&word.to_ascii_lowercase().as_str());
            if keyword
                && [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
            {
                // The label list that follows.
                grouping = true;
            } else if !keyword && !called && !variable && !grouping {
                names.insert(word);
            }
            continue;
        }
        if c == ')' {
            grouping = false;
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, method) (rate(grpc_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["grpc_request_duration_seconds_bucket".to_owned()])
    );
    let names = metric_names(
        r#"sum by (instance) (increase(a_total{outcome="failed"}[15m])) / sum by (instance) (increase(a_total[15m])) > 0.25 and b >= 20 or on() c offset 5m"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_total".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    assert_eq!(
        metric_names("scalar(max(x)) - max by (operator) (y)"),
        BTreeSet::from(["x".to_owned(), "y".to_owned()])
    );
}

/// Every PromQL expression of the dashboard (panels and variables) and of the rules.
fn expressions() -> anyhow::Result<Vec<String>> {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        ops().join("grafana/aggregator.json"),
    )?)?;
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        assert!(ids.insert(panel["id"].as_u64()), "panel ids are unique");
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap_or_default().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let definition = variable["definition"].as_str().unwrap_or_default();
        // label_values(metric, label): the metric.
        if let Some(inner) = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
        {
            exprs.push(
                inner
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            );
        }
    }
    let rules: Value = serde_norway::from_str(&std::fs::read_to_string(ops().join("alerts.yml"))?)?;
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            exprs.push(rule["expr"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(exprs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_rules_name_is_exported() -> anyhow::Result<()> {
    let mut names = BTreeSet::new();
    for expr in expressions()? {
        assert!(!expr.is_empty());
        names.extend(metric_names(&expr));
    }
    // `up` is Prometheus's own, for every target it scrapes.
    names.remove("up");
    assert!(names.len() >= 18, "the dashboard and rules name {names:?}");

    // An aggregator with two operators, and a firing they attest: every kind of metric moves.
    let mut net = Network::new(2, |_| {}).await?;
    net.start_operator(0, Heads::Subscription).await?;
    net.start_operator(1, Heads::Polling).await?;
    let (mut c, user, wallet) = net.user().await?;
    let id = c
        .create_task(user.req(watched_task("metrics", &wallet, block_trigger(1))))
        .await?
        .into_inner()
        .id;
    net.wait_watched(&id, 2).await?;
    net.mine(1).await?;
    net.wait_runs(&id, 1).await?;

    let text = reqwest::get(format!("{}/metrics", net.server.http_url()))
        .await?
        .text()
        .await?;
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = names.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named in ops/ but not exported: {missing:?}\n{text}"
    );
    // Every metric carries its help text (a histogram's, a summary's series share their base's).
    let described: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let undescribed: Vec<&String> = exported
        .iter()
        .filter(|name| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| described.contains(base))
                .unwrap_or(name);
            !described.contains(base)
        })
        .collect();
    assert!(
        undescribed.is_empty(),
        "exported without a # HELP line (describe them in telemetry/catalog.rs): {undescribed:?}"
    );
    Ok(())
}
