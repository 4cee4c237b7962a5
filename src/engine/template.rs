//! `{{ expression }}` templates in node configs.
//!
//! An expression is evaluated against the run's variables (see `vars`): a plain path
//! (`blockTrigger.data.blockNumber`, `settings.recipients[0]`, `apContext.configVars["key"]`) is
//! looked up directly; anything else runs in the sandbox as a JavaScript expression. Strings take
//! the value as text (objects and arrays as JSON). A failing template fails its step with a message
//! that names the template and the field.
//!
//! As the original reads them: `a.items.0.x` indexes the array (`a.items[0].x`), and `null` (or a
//! missing value) renders as `undefined` in text. Custom code sources, branch conditions and
//! filter expressions take templates too (their nodes render them).

use serde_json::{Map, Value};

use events::task::{
    BalanceConfig, ContractReadConfig, ContractWriteConfig, EthTransferConfig, GraphqlQueryConfig,
    LoopRunner, MethodCall, NodeConfig, RestApiConfig,
};

use super::sandbox::{Sandbox, Script, ScriptKind};

/// Renders templates against a set of variables.
pub struct Templates<'a> {
    pub vars: &'a Map<String, Value>,
    pub sandbox: &'a Sandbox,
}

/// One piece of a template string.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'t> {
    Text(&'t str),
    Expr(&'t str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        if !before.is_empty() {
            out.push(Piece::Text(before));
        }
        let after = after.get(2..).unwrap_or_default();
        let end = after
            .find("}}")
            .ok_or_else(|| format!("an unclosed {{{{ in {text:?}"))?;
        let (expr, tail) = after.split_at(end);
        out.push(Piece::Expr(expr.trim()));
        rest = tail.get(2..).unwrap_or_default();
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// A path step: `.name`, `[3]`, `["name"]`.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `ident(.ident | [n] | ["s"] | ['s'])*`; `None` when it is not a plain path.
fn path(expr: &str) -> Option<(String, Vec<Step>)> {
    let mut chars = expr.char_indices().peekable();
    let ident = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| -> Option<String> {
        let mut s = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                s.push(c);
                chars.next();
            } else {
                break;
            }
        }
        (!s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit())).then_some(s)
    };
    let root = ident(&mut chars)?;
    let mut steps = Vec::new();
    while let Some((_, c)) = chars.next() {
        match c {
            // `.0`: an index, as the original reads it.
            '.' if chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                let mut digits = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    digits.push(d);
                    chars.next();
                }
                steps.push(Step::Index(digits.parse().ok()?));
            }
            '.' => steps.push(Step::Key(ident(&mut chars)?)),
            '[' => {
                let mut inner = String::new();
                loop {
                    let (_, c) = chars.next()?;
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                let inner = inner.trim();
                if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else if inner.len() >= 2
                    && ((inner.starts_with('"') && inner.ends_with('"'))
                        || (inner.starts_with('\'') && inner.ends_with('\'')))
                {
                    steps.push(Step::Key(inner.get(1..inner.len() - 1)?.to_owned()));
                } else {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some((root, steps))
}

fn lookup<'v>(vars: &'v Map<String, Value>, root: &str, steps: &[Step]) -> Option<&'v Value> {
    let mut value = vars.get(root)?;
    for step in steps {
        value = match (step, value) {
            (Step::Key(k), Value::Object(o)) => o.get(k)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            (Step::Key(k), Value::Array(a)) if k == "length" => return None,
            _ => return None,
        };
    }
    Some(value)
}

/// A value as text in a string field: strings as they are, null as `undefined` (as the original
/// renders it), the rest as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "undefined".to_owned(),
        other => other.to_string(),
    }
}

/// `a.items.0.x` as JavaScript reads it: `a.items[0].x`. Only after a name, `]` or `)`, so that
/// numbers (`1.5`) are left alone; text in quotes is left alone too.
fn dot_index(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len() + 4);
    let chars: Vec<char> = expr.chars().collect();
    let mut quote: Option<char> = None;
    // Whether the token just before is a name (not a number), a `]` or a `)`.
    let mut after_name = false;
    let mut in_number = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '.' && after_name && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            let mut j = i + 1;
            let mut digits = String::new();
            while let Some(&d) = chars.get(j).filter(|d| d.is_ascii_digit()) {
                digits.push(d);
                j += 1;
            }
            out.push('[');
            out.push_str(&digits);
            out.push(']');
            i = j;
            after_name = true;
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                after_name = false;
                in_number = false;
            }
            c if c.is_ascii_digit() && !after_name => in_number = true,
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                if !in_number {
                    after_name = true;
                }
            }
            ']' | ')' => {
                after_name = true;
                in_number = false;
            }
            '.' if in_number => {}
            _ => {
                after_name = false;
                in_number = false;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

impl Templates<'_> {
    /// The value of one expression.
    pub async fn value(&self, expr: &str) -> Result<Value, String> {
        if let Some((root, steps)) = path(expr) {
            if let Some(value) = lookup(self.vars, &root, &steps) {
                return Ok(value.clone());
            }
            if !self.vars.contains_key(&root) {
                return Err(format!("{root} is not defined"));
            }
        }
        let outcome = self
            .sandbox
            .run(Script {
                kind: ScriptKind::Expression,
                source: dot_index(expr),
                globals: self.vars.clone(),
                time_limit: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(outcome.value)
    }

    /// Renders a string field; strings without `{{` come back unchanged.
    pub async fn text(&self, field: &str, text: &str) -> Result<String, String> {
        if !text.contains("{{") {
            return Ok(text.to_owned());
        }
        let mut out = String::with_capacity(text.len());
        for piece in pieces(text).map_err(|e| format!("{field}: {e}"))? {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(e) => {
                    let value = self
                        .value(e)
                        .await
                        .map_err(|why| format!("template {{{{ {e} }}}} in {field}: {why}"))?;
                    out.push_str(&as_text(&value));
                }
            }
        }
        Ok(out)
    }

    async fn texts(&self, field: &str, texts: &[String]) -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            out.push(self.text(field, t).await?);
        }
        Ok(out)
    }

    async fn calls(&self, calls: &[MethodCall]) -> Result<Vec<MethodCall>, String> {
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            let call_data = match &call.call_data {
                Some(data) => Some(self.text("call_data", data).await?),
                None => None,
            };
            out.push(MethodCall {
                method_name: call.method_name.clone(),
                call_data,
                apply_to_fields: call.apply_to_fields.clone(),
                method_params: self.texts("method_params", &call.method_params).await?,
            });
        }
        Ok(out)
    }

    async fn eth_transfer(&self, c: &EthTransferConfig) -> Result<EthTransferConfig, String> {
        Ok(EthTransferConfig {
            destination: self.text("destination", &c.destination).await?,
            amount: self.text("amount", &c.amount).await?,
        })
    }

    async fn contract_write(&self, c: &ContractWriteConfig) -> Result<ContractWriteConfig, String> {
        let mut out = c.clone();
        out.contract_address = self.text("contract_address", &c.contract_address).await?;
        out.call_data = self.text("call_data", &c.call_data).await?;
        out.method_calls = self.calls(&c.method_calls).await?;
        if let Some(v) = &c.value {
            out.value = Some(self.text("value", v).await?);
        }
        if let Some(v) = &c.gas_limit {
            out.gas_limit = Some(self.text("gas_limit", v).await?);
        }
        Ok(out)
    }

    async fn contract_read(&self, c: &ContractReadConfig) -> Result<ContractReadConfig, String> {
        Ok(ContractReadConfig {
            contract_address: self.text("contract_address", &c.contract_address).await?,
            contract_abi: c.contract_abi.clone(),
            method_calls: self.calls(&c.method_calls).await?,
        })
    }

    async fn graphql(&self, c: &GraphqlQueryConfig) -> Result<GraphqlQueryConfig, String> {
        let mut variables = c.variables.clone();
        for (name, value) in &mut variables {
            *value = self.text(&format!("variables.{name}"), value).await?;
        }
        Ok(GraphqlQueryConfig {
            url: self.text("url", &c.url).await?,
            query: self.text("query", &c.query).await?,
            variables,
        })
    }

    async fn rest(&self, c: &RestApiConfig) -> Result<RestApiConfig, String> {
        let mut headers = c.headers.clone();
        for (name, value) in &mut headers {
            *value = self.text(&format!("headers.{name}"), value).await?;
        }
        Ok(RestApiConfig {
            url: self.text("url", &c.url).await?,
            headers,
            body: self.text("body", &c.body).await?,
            method: self.text("method", &c.method).await?,
            options: c.options.clone(),
        })
    }

    async fn balance(&self, c: &BalanceConfig) -> Result<BalanceConfig, String> {
        let mut out = c.clone();
        out.address = self.text("address", &c.address).await?;
        out.chain = self.text("chain", &c.chain).await?;
        out.token_addresses = self.texts("token_addresses", &c.token_addresses).await?;
        Ok(out)
    }

    /// A node's config with its templates rendered. Code (custom code, branch and filter
    /// expressions) is left for the sandbox; a loop's runner is rendered per iteration.
    pub async fn node(&self, config: &NodeConfig) -> Result<NodeConfig, String> {
        Ok(match config {
            NodeConfig::EthTransfer(c) => NodeConfig::EthTransfer(self.eth_transfer(c).await?),
            NodeConfig::ContractWrite(c) => {
                NodeConfig::ContractWrite(self.contract_write(c).await?)
            }
            NodeConfig::ContractRead(c) => NodeConfig::ContractRead(self.contract_read(c).await?),
            NodeConfig::GraphqlQuery(c) => NodeConfig::GraphqlQuery(self.graphql(c).await?),
            NodeConfig::RestApi(c) => NodeConfig::RestApi(self.rest(c).await?),
            NodeConfig::Balance(c) => NodeConfig::Balance(self.balance(c).await?),
            other => other.clone(),
        })
    }

    /// A loop runner's config with its templates rendered (per iteration).
    pub async fn runner(&self, runner: &LoopRunner) -> Result<LoopRunner, String> {
        Ok(match runner {
            LoopRunner::EthTransfer(c) => LoopRunner::EthTransfer(self.eth_transfer(c).await?),
            LoopRunner::ContractWrite(c) => {
                LoopRunner::ContractWrite(self.contract_write(c).await?)
            }
            LoopRunner::ContractRead(c) => LoopRunner::ContractRead(self.contract_read(c).await?),
            LoopRunner::GraphqlDataQuery(c) => LoopRunner::GraphqlDataQuery(self.graphql(c).await?),
            LoopRunner::RestApi(c) => LoopRunner::RestApi(self.rest(c).await?),
            LoopRunner::CustomCode(c) => LoopRunner::CustomCode(c.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_expressions() {
        assert_eq!(
            pieces("a {{ x.y }} b{{z}}").unwrap(),
            vec![
                Piece::Text("a "),
                Piece::Expr("x.y"),
                Piece::Text(" b"),
                Piece::Expr("z")
            ]
        );
        assert!(pieces("a {{ x").is_err());
    }

    #[test]
    fn plain_paths_resolve_without_the_sandbox() {
        let vars: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "t": {"data": {"n": 5, "list": [1, {"k": "v"}]}},
            "apContext": {"configVars": {"api-key": "s"}}
        }))
        .unwrap();
        let (root, steps) = path("t.data.list[1].k").unwrap();
        assert_eq!(lookup(&vars, &root, &steps), Some(&Value::from("v")));
        let (root, steps) = path("apContext.configVars[\"api-key\"]").unwrap();
        assert_eq!(lookup(&vars, &root, &steps), Some(&Value::from("s")));
        let (root, steps) = path("t.data.list.1.k").unwrap();
        assert_eq!(
            lookup(&vars, &root, &steps),
            Some(&Value::from("v")),
            "the original's dot-index"
        );
        assert!(path("a + b").is_none());
        assert!(path("f(x)").is_none());
        assert_eq!(as_text(&serde_json::json!({"a": 1})), "{\"a\":1}");
        assert_eq!(as_text(&Value::Null), "undefined");
    }

    #[test]
    fn dot_indexes_become_brackets_and_numbers_stay() {
        assert_eq!(dot_index("a.items.0.x > 1.5"), "a.items[0].x > 1.5");
        assert_eq!(dot_index("f(x).2 + 'a.0'"), "f(x)[2] + 'a.0'");
        assert_eq!(dot_index("x1.10"), "x1[10]");
        assert_eq!(dot_index("0.5 * n"), "0.5 * n");
    }
}
