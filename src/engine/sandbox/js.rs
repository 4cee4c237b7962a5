//! JavaScript values seen from Rust, the helpers the runtime (`runtime`), `console` and the
//! modules share: a value as JSON text (`stringify`), a Rust function a script may call
//! (`rust_function`), whether a thrown value must end the run (`fatal`), and why a run failed
//! while still inside its context (`Failure`).

use rquickjs::convert::Coerced;
use rquickjs::function::IntoJsFunc;
use rquickjs::{Ctx, Function, Object, Value};

/// Why a run failed, while still inside the context (no JS value escapes it).
pub(super) enum Failure {
    Thrown {
        message: String,
        stack: Option<String>,
    },
    OutOfMemory,
    Interrupted,
    Output(String),
    /// QuickJS could not create a context: the runtime must not be touched again (see
    /// [`super::runtime::MIN_MEMORY_LIMIT`]).
    NoContext,
}

/// `JSON.stringify(value, bigints_as_strings)` as a Rust string; `None` for `undefined`.
pub(super) fn stringify<'js>(
    ctx: &Ctx<'js>,
    value: Value<'js>,
) -> rquickjs::Result<Option<String>> {
    // A fresh replacer each time: a Rust closure must not hold JS values (see the module docs).
    let replacer = rust_function(
        ctx,
        |_key: Value<'js>, value: Value<'js>| -> rquickjs::Result<Value<'js>> {
            if value.is_big_int() {
                let ctx = value.ctx().clone();
                let digits: Coerced<String> = value.get()?;
                rquickjs::String::from_str(ctx, &digits).map(|s| s.into_value())
            } else {
                Ok(value)
            }
        },
    )?;
    match ctx.json_stringify_replacer(value, replacer)? {
        Some(text) => text.to_string().map(Some),
        None => Ok(None),
    }
}

/// A JS function calling `f`, whose prototype is this context's `Function.prototype`.
///
/// rquickjs caches the prototype of its Rust functions per runtime, taken from the context that
/// made the first one, so that a Rust function made in a later context inherits from the first
/// context's `Function.prototype`: from `console.log`, a script would reach the built-ins (and
/// through `Function`, the global object) of a context that outlives it, and share them with
/// every later run on the runtime. Resetting the prototype cuts that path; the cached object
/// itself is then reachable from Rust only.
pub(super) fn rust_function<'js, P, F>(ctx: &Ctx<'js>, f: F) -> rquickjs::Result<Function<'js>>
where
    F: IntoJsFunc<'js, P> + 'js,
{
    let function = Function::new(ctx.clone(), f)?;
    function.set_prototype(Some(&Function::prototype(ctx.clone())))?;
    Ok(function)
}

/// The failure a thrown value means if it must end the run whatever the script does with it:
/// the deadline's uncatchable error, or exhausted memory.
pub(super) fn fatal(value: &Value<'_>) -> Option<Failure> {
    if value.is_uncatchable_error() {
        return Some(Failure::Interrupted);
    }
    // QuickJS throws `null` when it cannot allocate even the error object.
    if value.is_null() {
        return Some(Failure::OutOfMemory);
    }
    let error = value.as_object().filter(|object| object.is_error())?;
    let out_of_memory = property(error, "name").as_deref() == Some("InternalError")
        && property(error, "message").as_deref() == Some("out of memory");
    out_of_memory.then_some(Failure::OutOfMemory)
}

/// A property as a string, if it can be read and converted.
pub(super) fn property(object: &Object<'_>, key: &str) -> Option<String> {
    object
        .get::<_, Option<Coerced<String>>>(key)
        .ok()
        .flatten()
        .map(|text| text.0)
}
