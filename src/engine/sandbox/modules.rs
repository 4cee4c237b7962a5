//! `require()` of the npm packages the original aggregator offers to custom code (lodash, dayjs,
//! uuid), and ES `import` of them rewritten into `require` ([`rewrite_imports`]).
//!
//! The packages are installed with npm, pinned by the project's `js_modules/package.json` and
//! lockfile (`npm ci` in `js_modules/`; `.ci/run` does it), and read once at start-up from the
//! directory `engine.js_modules_dir` names ([`JsModules::load`]): no source of theirs is in this
//! repository. Each package is one self-contained browser build (UMD) that loads with a
//! CommonJS `module`/`exports` pair. When a file is missing the aggregator still starts; a
//! `require` of it then throws an error saying how to install it.
//!
//! In a run, `require` is a host function. A first `require(name)` evaluates the package's
//! source in the run's own fresh context, within the run's time and memory limits like any other
//! code, and keeps its exports for later calls of that run; nothing is shared between runs. uuid
//! needs `crypto.getRandomValues`, which is defined (from the operating system's random source)
//! before a package is evaluated, if the context has no `crypto` yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rquickjs::context::EvalOptions;
use rquickjs::function::Opt;
use rquickjs::{Ctx, Exception, Function, Object, Value};

use super::run::rust_function;

/// The packages and the file of each that is loaded, relative to the modules directory.
pub const PACKAGES: &[(&str, &str)] = &[
    ("lodash", "lodash/lodash.min.js"),
    ("dayjs", "dayjs/dayjs.min.js"),
    ("uuid", "uuid/dist/umd/uuid.min.js"),
];

/// Where a run keeps the exports of the packages it required (a property of its global object).
const CACHE_KEY: &str = "__required_modules__";

/// The most bytes one `crypto.getRandomValues` call fills, as the Web Crypto API allows.
const MAX_RANDOM_BYTES: usize = 65_536;

/// The packages' sources, read once.
#[derive(Clone, Default)]
pub struct JsModules {
    /// Where they were looked for (`None`: nowhere was configured).
    dir: Option<PathBuf>,
    sources: Vec<(&'static str, Arc<str>)>,
}

impl std::fmt::Debug for JsModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsModules")
            .field("dir", &self.dir)
            .field("loaded", &self.loaded())
            .finish()
    }
}

impl PartialEq for JsModules {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir && self.loaded() == other.loaded()
    }
}

impl Eq for JsModules {}

/// The modules directory of the source tree this binary was built from: where `npm ci` in
/// `js_modules/` installs them.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js_modules/node_modules")
}

impl JsModules {
    /// Reads the packages from `dir` (a `node_modules` directory). What is missing is reported
    /// by `require`, and logged here.
    pub fn load(dir: &Path) -> Self {
        let mut sources = Vec::new();
        let mut missing = Vec::new();
        for (name, file) in PACKAGES {
            match std::fs::read_to_string(dir.join(file)) {
                Ok(text) => sources.push((*name, Arc::from(text))),
                Err(_) => missing.push(*name),
            }
        }
        if !missing.is_empty() {
            tracing::warn!(
                dir = %dir.display(),
                missing = ?missing,
                "JavaScript packages for require() are not installed: run `npm ci` in js_modules/ (or set engine.js_modules_dir)"
            );
        }
        Self {
            dir: Some(dir.to_owned()),
            sources,
        }
    }

    /// The names of the packages that were found.
    pub fn loaded(&self) -> Vec<&'static str> {
        self.sources.iter().map(|(name, _)| *name).collect()
    }

    /// The source of `name`, or the message a `require` of it throws.
    pub fn source(&self, name: &str) -> Result<&Arc<str>, String> {
        if let Some((_, source)) = self.sources.iter().find(|(n, _)| *n == name) {
            return Ok(source);
        }
        let known: Vec<&str> = PACKAGES.iter().map(|(n, _)| *n).collect();
        if !known.contains(&name) {
            return Err(format!(
                "require: module not found: {name} (the modules are {})",
                known.join(", ")
            ));
        }
        Err(match &self.dir {
            Some(dir) => format!(
                "require: module {name} is not installed in {}: run `npm ci` in the project's js_modules/ directory, or point engine.js_modules_dir at a node_modules directory holding it",
                dir.display()
            ),
            None => format!(
                "require: module {name} is not available: the sandbox has no modules directory"
            ),
        })
    }
}

/// Defines `require` in the context.
pub(super) fn install<'js>(ctx: &Ctx<'js>, modules: &Arc<JsModules>) -> rquickjs::Result<()> {
    let modules = Arc::clone(modules);
    let require = rust_function(
        ctx,
        move |ctx: Ctx<'js>, name: Opt<Value<'js>>| -> rquickjs::Result<Value<'js>> {
            let Some(name) = name.0.as_ref().and_then(Value::as_string) else {
                return Err(Exception::throw_type(
                    &ctx,
                    "require: module name must be provided",
                ));
            };
            let name = name.to_string()?;
            require(&ctx, &modules, &name)
        },
    )?;
    ctx.globals().set("require", require)
}

fn require<'js>(ctx: &Ctx<'js>, modules: &JsModules, name: &str) -> rquickjs::Result<Value<'js>> {
    let globals = ctx.globals();
    let cache: Object = match globals.get::<_, Option<Object>>(CACHE_KEY)? {
        Some(cache) => cache,
        None => {
            let cache = Object::new(ctx.clone())?;
            globals.set(CACHE_KEY, cache.clone())?;
            cache
        }
    };
    if let Some(exports) = cache.get::<_, Option<Value>>(name)? {
        return Ok(exports);
    }
    let source = modules
        .source(name)
        .map_err(|message| Exception::throw_type(ctx, &message))?;
    ensure_crypto(ctx)?;
    let mut options = EvalOptions::default();
    options.strict = false;
    options.filename = Some(format!("{name}.js"));
    let factory: Function = ctx.eval_with_options(
        format!("(function (module, exports) {{\n{source}\n}})"),
        options,
    )?;
    let module = Object::new(ctx.clone())?;
    let exports = Object::new(ctx.clone())?;
    module.set("exports", exports.clone())?;
    factory.call::<_, ()>((module.clone(), exports))?;
    let exports: Value = module.get("exports")?;
    cache.set(name, exports.clone())?;
    Ok(exports)
}

/// `crypto.getRandomValues`, when the context has no `crypto`: fills an integer typed array from
/// the operating system's random source.
fn ensure_crypto(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    if globals.contains_key("crypto")? {
        return Ok(());
    }
    let random = rust_function(ctx, |ctx: Ctx<'_>, n: usize| {
        if n > MAX_RANDOM_BYTES {
            return Err(Exception::throw_range(
                &ctx,
                "crypto.getRandomValues: at most 65536 bytes at a time",
            ));
        }
        let mut bytes = vec![0u8; n];
        getrandom::fill(&mut bytes)
            .map_err(|e| Exception::throw_internal(&ctx, &format!("no random source: {e}")))?;
        Ok(bytes)
    })?;
    let make: Function = ctx.eval(
        r#"(function (random) {
  return {
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array) || array instanceof DataView ||
          array instanceof Float32Array || array instanceof Float64Array) {
        throw new TypeError("crypto.getRandomValues: an integer typed array is required");
      }
      const bytes = random(array.byteLength);
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(bytes);
      return array;
    },
  };
})"#,
    )?;
    let crypto: Object = make.call((random,))?;
    globals.set("crypto", crypto)
}

/// The source with each ES `import` of a package rewritten as the original does it, or `None`
/// when it has none: `import x from 'm'` and `import * as x from 'm'` become
/// `const x = require('m');`, `import { a, b as c } from 'm'` becomes
/// `const { a, b: c } = require('m');`. Each statement is replaced where it stands (its lines
/// kept, so that errors point at the user's lines); it must start a line, as in the original.
pub fn rewrite_imports(source: &str) -> Option<String> {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut changed = false;
    while !rest.is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        match parse_import(rest) {
            Some((statement, length)) => {
                let consumed = &rest[..length];
                let newlines = consumed.matches('\n').count();
                out.push_str(&statement);
                out.push_str(&"\n".repeat(newlines));
                rest = &rest[length..];
                changed = true;
            }
            None => {
                out.push_str(&rest[..line_end]);
                rest = &rest[line_end..];
            }
        }
    }
    changed.then_some(out)
}

/// An import statement at the start of `text` (after blanks): its `require` form and how many
/// bytes it spans (up to, not including, the line's end).
fn parse_import(text: &str) -> Option<(String, usize)> {
    let start = text.len() - text.trim_start_matches([' ', '\t']).len();
    let after = text[start..].strip_prefix("import")?;
    if !after.starts_with(char::is_whitespace) {
        return None;
    }
    let after = after.trim_start();
    let (binding, after) = if let Some(inner) = after.strip_prefix('{') {
        let close = inner.find('}')?;
        let names = inner[..close].trim();
        if names.is_empty() {
            return None;
        }
        let names: Vec<String> = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| match n.split_once(" as ") {
                Some((from, to)) => format!("{}: {}", from.trim(), to.trim()),
                None => n.to_owned(),
            })
            .collect();
        (format!("{{ {} }}", names.join(", ")), &inner[close + 1..])
    } else if let Some(namespace) = after.strip_prefix('*') {
        let namespace = namespace.trim_start().strip_prefix("as")?;
        if !namespace.starts_with(char::is_whitespace) {
            return None;
        }
        identifier(namespace.trim_start())?
    } else {
        identifier(after)?
    };
    let after = after.trim_start();
    let after = after.strip_prefix("from")?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let module_end = after[1..].find(quote)?;
    let module = &after[1..=module_end];
    if module.is_empty() || module.contains(['\n', '\\']) {
        return None;
    }
    let mut tail = &after[module_end + 2..];
    tail = tail.strip_prefix(';').unwrap_or(tail);
    // Only blanks may follow on the line, as the original's pattern requires.
    let blank = tail.len() - tail.trim_start_matches([' ', '\t', '\r']).len();
    if !(tail[blank..].is_empty() || tail[blank..].starts_with('\n')) {
        return None;
    }
    let consumed = text.len() - tail.len() + blank;
    let indent = &text[..start];
    Some((
        format!("{indent}const {binding} = require('{module}');"),
        consumed,
    ))
}

/// A JavaScript identifier at the start of `text` (the original's `\w+`), and what follows it.
fn identifier(text: &str) -> Option<(String, &str)> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_become_requires_in_place() {
        let source = "import _ from 'lodash';\nimport * as u from \"uuid\"\n  import { v4 as uuidv4, NIL } from 'uuid';\nreturn _.sum([1]);";
        assert_eq!(
            rewrite_imports(source).unwrap(),
            "const _ = require('lodash');\nconst u = require('uuid');\n  const { v4: uuidv4, NIL } = require('uuid');\nreturn _.sum([1]);"
        );
        // Named imports may span lines; the line count stays.
        let source = "import {\n  map,\n  sum\n} from 'lodash';\nreturn sum(map([1], x => x));";
        let rewritten = rewrite_imports(source).unwrap();
        assert_eq!(rewritten.lines().count(), source.lines().count());
        assert!(rewritten.starts_with("const { map, sum } = require('lodash');\n\n\n\n"));
    }

    #[test]
    fn code_without_imports_is_left_alone() {
        for source in [
            "return 1;",
            "const important = 1; return important;",
            "// import _ from 'lodash'\nreturn 1;",
            "x = 1; import _ from 'lodash';",
            "import _ from 'lodash'; return 1;",
            "importx from 'y';",
        ] {
            assert_eq!(rewrite_imports(source), None, "{source}");
        }
    }

    #[test]
    fn a_missing_or_unknown_package_says_what_to_do() {
        let empty = tempfile::tempdir().unwrap();
        let modules = JsModules::load(empty.path());
        assert!(modules.loaded().is_empty());
        let err = modules.source("lodash").unwrap_err();
        assert!(
            err.contains("npm ci") && err.contains("js_modules"),
            "{err}"
        );
        let err = modules.source("left-pad").unwrap_err();
        assert!(err.contains("module not found: left-pad"), "{err}");
    }
}
