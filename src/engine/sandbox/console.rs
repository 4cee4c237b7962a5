//! `console`: the one host object of a context. `log`, `info` and `debug` (one function) and
//! `warn` and `error` turn their arguments into one line, as a browser shows them: strings as they
//! are, numbers as JavaScript prints them, errors as `Name: message`, functions as
//! `[Function: name]`, other objects and arrays as JSON (BigInts as strings), joined by spaces.
//!
//! Lines are capped in total ([`Logs`]); past the cap a run's later calls cost next to nothing.
//! The closures hold only Rust data (a JS value held by a Rust closure would be a cycle the
//! collector cannot see), and borrow the lines only to append one, since formatting an argument
//! can run the script's own `toJSON` or getters, which may log in turn.

use std::cell::RefCell;
use std::rc::Rc;

use rquickjs::convert::Coerced;
use rquickjs::function::Rest;
use rquickjs::{Ctx, Error as JsError, Function, Object, Type, Value};

use super::js::{fatal, rust_function, stringify};

/// The captured lines of a run, capped in bytes (each line counts one more, so that empty lines
/// are not free).
#[derive(Debug)]
pub(super) struct Logs {
    lines: Vec<String>,
    used: usize,
    cap: usize,
    full: bool,
}

impl Logs {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            lines: Vec::new(),
            used: 0,
            cap,
            full: false,
        }
    }

    /// Bytes a next line may still take.
    fn room(&self) -> usize {
        if self.full {
            0
        } else {
            self.cap.saturating_sub(self.used).saturating_sub(1)
        }
    }

    fn push(&mut self, mut line: String) {
        if self.full {
            return;
        }
        let room = self.room();
        if line.len() > room || self.used + line.len() + 1 >= self.cap {
            let mut end = room.min(line.len());
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push_str(" … [logs truncated: a run may log ");
            line.push_str(&self.cap.to_string());
            line.push_str(" bytes]");
            self.full = true;
        }
        self.used += line.len() + 1;
        self.lines.push(line);
    }

    pub(super) fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}

/// Defines `console` in the context.
pub(super) fn install<'js>(ctx: &Ctx<'js>, logs: &Rc<RefCell<Logs>>) -> rquickjs::Result<()> {
    let console = Object::new(ctx.clone())?;
    let log = logger(ctx, logs, "")?;
    console.set("log", log.clone())?;
    console.set("info", log.clone())?;
    console.set("debug", log)?;
    console.set("warn", logger(ctx, logs, "[warn] ")?)?;
    console.set("error", logger(ctx, logs, "[error] ")?)?;
    ctx.globals().set("console", console)
}

fn logger<'js>(
    ctx: &Ctx<'js>,
    logs: &Rc<RefCell<Logs>>,
    prefix: &'static str,
) -> rquickjs::Result<Function<'js>> {
    let logs = Rc::clone(logs);
    rust_function(
        ctx,
        move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<()> {
            let room = logs.borrow().room();
            if room == 0 {
                return Ok(());
            }
            let mut line = String::from(prefix);
            for (i, arg) in args.0.into_iter().enumerate() {
                if line.len() > room {
                    break;
                }
                if i > 0 {
                    line.push(' ');
                }
                line.push_str(&text(&ctx, arg)?);
            }
            logs.borrow_mut().push(line);
            Ok(())
        },
    )
}

/// A value as a browser's console shows it. An error raised while formatting falls back to a
/// plainer text, unless the run must stop (deadline, memory): then it is thrown on.
pub(super) fn text<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<String> {
    let shown = match value.type_of() {
        Type::Uninitialized | Type::Undefined => Ok("undefined".to_owned()),
        Type::Null => Ok("null".to_owned()),
        Type::Bool => Ok(value.as_bool().unwrap_or_default().to_string()),
        Type::String => match value.as_string().map(|s| s.to_string()) {
            Some(Ok(text)) => Ok(text),
            // Lone surrogates are not UTF-8: show the string as JSON escapes them.
            _ => stringify(ctx, value.clone()).map(Option::unwrap_or_default),
        },
        Type::Int | Type::Float => coerced(&value),
        Type::BigInt => coerced(&value).map(|digits| digits + "n"),
        Type::Symbol => Ok(match value.as_symbol().map(|s| s.description()) {
            Some(Ok(description)) if !description.is_undefined() => {
                format!("Symbol({})", coerced(&description).unwrap_or_default())
            }
            _ => "Symbol()".to_owned(),
        }),
        Type::Function | Type::Constructor => {
            let name = value
                .as_object()
                .and_then(|f| f.get::<_, Coerced<String>>("name").ok())
                .map(|name| name.0)
                .unwrap_or_default();
            Ok(if name.is_empty() {
                "[Function (anonymous)]".to_owned()
            } else {
                format!("[Function: {name}]")
            })
        }
        Type::Exception => Ok(error_text(&value)),
        _ => {
            stringify(ctx, value.clone()).and_then(|json| json.map_or_else(|| coerced(&value), Ok))
        }
    };
    match shown {
        Ok(text) => Ok(text),
        Err(JsError::Exception) => {
            let exception = ctx.catch();
            if fatal(&exception).is_some() {
                Err(ctx.throw(exception))
            } else {
                Ok(coerced(&value).unwrap_or_else(|_| format!("[{}]", value.type_name())))
            }
        }
        Err(JsError::Allocation) => Err(JsError::Allocation),
        Err(_) => Ok(format!("[{}]", value.type_name())),
    }
}

/// `String(value)`.
fn coerced(value: &Value<'_>) -> rquickjs::Result<String> {
    value.get::<Coerced<String>>().map(|text| text.0)
}

/// `Name: message` of an error object.
fn error_text(value: &Value<'_>) -> String {
    let Some(error) = value.as_object() else {
        return String::new();
    };
    let field = |key: &str| {
        error
            .get::<_, Coerced<String>>(key)
            .map(|text| text.0)
            .unwrap_or_default()
    };
    let (name, message) = (field("name"), field("message"));
    match (name.is_empty(), message.is_empty()) {
        (true, _) => message,
        (false, true) => name,
        (false, false) => format!("{name}: {message}"),
    }
}
