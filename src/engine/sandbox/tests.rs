use std::time::Duration;

use serde_json::{Map, Value as Json, json};

use super::*;

/// A pool of `threads` workers with the defaults otherwise.
fn pool(threads: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        threads,
        ..SandboxConfig::default()
    })
}

fn globals(value: Json) -> Map<String, Json> {
    match value {
        Json::Object(map) => map,
        _ => Map::new(),
    }
}

fn body(source: &str) -> Script {
    Script::body(source)
}

fn value(sandbox: &Sandbox, script: Script) -> Json {
    match sandbox.run_blocking(script) {
        Ok(outcome) => outcome.value,
        Err(e) => panic!("the run failed: {e:?}"),
    }
}

fn exception(sandbox: &Sandbox, script: Script) -> (String, Option<String>) {
    match sandbox.run_blocking(script) {
        Err(SandboxError::Exception { message, stack }) => (message, stack),
        other => panic!("expected an exception, got {other:?}"),
    }
}

#[test]
fn returns_every_json_type() {
    let sandbox = pool(1);
    let cases = [
        ("return 42;", json!(42)),
        ("return -1.5;", json!(-1.5)),
        ("return 'text';", json!("text")),
        ("return true;", json!(true)),
        ("return false;", json!(false)),
        ("return null;", json!(null)),
        ("return undefined;", json!(null)),
        ("let x = 1;", json!(null)),
        (
            "return [1, 'a', null, [true]];",
            json!([1, "a", null, [true]]),
        ),
        (
            "return { a: { b: [1, 2] }, c: 'd', e: undefined };",
            json!({ "a": { "b": [1, 2] }, "c": "d" }),
        ),
        ("return NaN;", json!(null)),
        ("return [Infinity, -Infinity, -0];", json!([null, null, 0])),
        (
            "return new Date(Date.UTC(2024, 0, 2, 3, 4, 5));",
            json!("2024-01-02T03:04:05.000Z"),
        ),
        (
            "return 12345678901234567890n;",
            json!("12345678901234567890"),
        ),
        (
            "return { big: 2n ** 70n };",
            json!({ "big": "1180591620717411303424" }),
        ),
        ("return function f() {};", json!(null)),
        ("return Symbol('s');", json!(null)),
        ("return [function () {}, Symbol()];", json!([null, null])),
        ("return new Map([[1, 2]]);", json!({})),
        ("return { toJSON() { return 'custom'; } };", json!("custom")),
        ("return 'é ✓ 𝄞';", json!("é ✓ 𝄞")),
        ("return new Uint8Array([1, 2]);", json!({ "0": 1, "1": 2 })),
    ];
    for (source, expected) in cases {
        assert_eq!(value(&sandbox, body(source)), expected, "{source}");
    }
}

#[test]
fn expressions_see_their_globals() {
    let sandbox = pool(1);
    let script = Script {
        globals: globals(json!({ "a": { "b": 5 }, "c": "yes" })),
        ..Script::expression("a.b > 3 && c")
    };
    assert_eq!(value(&sandbox, script), json!("yes"));
    // An object literal is an expression too, and a trailing line comment does not break it.
    assert_eq!(
        value(&sandbox, Script::expression("{ n: 1 } // note")),
        json!({ "n": 1 })
    );
}

#[test]
fn globals_are_fresh_for_every_run() {
    // One worker: both runs use the same runtime.
    let sandbox = pool(1);
    let first = Script {
        globals: globals(json!({ "input": [1, 2, 3] })),
        ..body(
            "globalThis.leak = 1; implicit = 2; Object.prototype.polluted = 3; return input.length;",
        )
    };
    assert_eq!(value(&sandbox, first), json!(3));
    let second = body(
        "return [typeof leak, typeof implicit, typeof input, typeof ({}).polluted, typeof console.log];",
    );
    assert_eq!(
        value(&sandbox, second),
        json!([
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "function"
        ])
    );
}

#[tokio::test]
async fn nothing_one_owner_s_run_changes_is_seen_by_another_owner_s_next_runs() {
    // Given one worker (every run on the same runtime, its contexts prepared ahead) and a run of
    // one owner that changes everything a script can reach: globals, the built-ins' prototypes
    // and methods, the global object's own prototype, and jobs it leaves for later.
    let sandbox = pool(1);
    let tamper = body(
        "globalThis.leak = 1; implicit = 2; var declared = 3; \
         Object.prototype.polluted = 'yes'; \
         Array.prototype.map = function () { return 'hijacked'; }; \
         JSON.stringify = function () { return '\"hijacked\"'; }; \
         Function.prototype.call = null; \
         Object.setPrototypeOf(globalThis, { inherited: 1 }); \
         Object.freeze(Object.prototype); \
         Promise.resolve().then(function () { globalThis.later = 1; }); \
         Promise.prototype.then = function () { globalThis.hooked = 1; }; \
         return [1, 2].map(function (x) { return x; });",
    );
    let tampered = as_owner("0xmallory", sandbox.run(tamper)).await;
    assert_eq!(tampered.map(|o| o.value), Ok(json!("hijacked")));
    // When another owner's runs follow on the same worker, several of them (the garbage of
    // the first is not always collected before the next starts),
    for _ in 0..5 {
        let probe = body(
            "const o = {}; o.mine = 1; \
             return [typeof leak, typeof implicit, typeof declared, typeof ({}).polluted, \
                     [1, 2].map(function (x) { return x * 2; }), typeof Function.prototype.call, \
                     typeof inherited, typeof later, typeof hooked, o.mine, \
                     typeof setTimeout, typeof setInterval, \
                     Object.isFrozen(Object.prototype)];",
        );
        let seen = as_owner("0xalice", sandbox.run(probe)).await;
        // then they see none of it: pristine built-ins, no globals, no jobs, and no timers at all.
        assert_eq!(
            seen.map(|o| o.value),
            Ok(json!([
                "undefined",
                "undefined",
                "undefined",
                "undefined",
                [2, 4],
                "function",
                "undefined",
                "undefined",
                "undefined",
                1,
                "undefined",
                "undefined",
                false
            ]))
        );
    }
}

#[test]
fn globals_are_data_and_names_must_be_identifiers() {
    let sandbox = pool(1);
    let sneaky = "'); throw new Error('injected'); ('";
    let script = Script {
        globals: globals(json!({ "s": sneaky, "$x": 1, "_y": [null], "név": true })),
        ..body("return [s, $x, _y, név];")
    };
    assert_eq!(value(&sandbox, script), json!([sneaky, 1, [null], true]));
    for name in [
        "a-b",
        "1a",
        "",
        "a b",
        "__proto__",
        "return",
        "undefined",
        "x;y",
    ] {
        let mut map = Map::new();
        map.insert(name.to_owned(), json!(1));
        let script = Script {
            globals: map,
            ..body("return 1;")
        };
        match sandbox.run_blocking(script) {
            Err(SandboxError::Input(why)) => assert!(why.contains("not an identifier"), "{why}"),
            other => panic!("{name:?} was accepted: {other:?}"),
        }
    }
    assert!(matches!(
        sandbox.run_blocking(body("return '\0';")),
        Err(SandboxError::Input(_))
    ));
}

#[test]
fn console_lines_are_captured_as_a_browser_shows_them() {
    let sandbox = pool(1);
    let outcome = sandbox
        .run_blocking(body(
            r#"
            console.log('plain', 42, 1.5, true, null, undefined);
            console.info({ a: [1, 'x'], n: 10n });
            console.debug([1, 2], 5n);
            console.warn(new TypeError('careful'));
            console.error(function named() {}, () => 1, Symbol('s'));
            const cyclic = {}; cyclic.self = cyclic;
            console.log(cyclic);
            console.log();
            return 'done';
            "#,
        ))
        .map_err(|e| e.to_string());
    let Ok(outcome) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(outcome.value, json!("done"));
    assert_eq!(
        outcome.logs,
        vec![
            "plain 42 1.5 true null undefined",
            r#"{"a":[1,"x"],"n":"10"}"#,
            "[1,2] 5n",
            "[warn] TypeError: careful",
            "[error] [Function: named] [Function (anonymous)] Symbol(s)",
            "[object Object]",
            "",
        ]
    );
}

#[test]
fn logs_are_capped() {
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        max_log_bytes: 1000,
        ..SandboxConfig::default()
    });
    let outcome = sandbox.run_blocking(body(
        "for (let i = 0; i < 100000; i++) console.log('line ' + i); return 'finished';",
    ));
    let Ok(outcome) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(outcome.value, json!("finished"));
    let bytes: usize = outcome.logs.iter().map(|line| line.len() + 1).sum();
    assert!(bytes <= 1000 + 100, "{bytes} bytes of logs");
    assert_eq!(outcome.logs.first().map(String::as_str), Some("line 0"));
    assert!(
        outcome
            .logs
            .last()
            .is_some_and(|line| line.contains("logs truncated")),
        "{:?}",
        outcome.logs.last()
    );
}

#[test]
fn thrown_errors_keep_their_message_and_line() {
    let sandbox = pool(1);
    let (message, stack) = exception(
        &sandbox,
        body("const a = 1;\nconst b = 2;\n  throw new TypeError('boom');"),
    );
    assert!(message.starts_with("TypeError: boom"), "{message}");
    // QuickJS points at the constructor call.
    assert!(message.ends_with("(line 3, column 13)"), "{message}");
    assert!(stack.is_some_and(|s| s.contains("code:3:13")));

    // On the first line, columns are the user's, not the wrapper's.
    let (message, stack) = exception(&sandbox, body("throw new Error('first')"));
    assert_eq!(message, "Error: first (line 1, column 11)");
    assert!(stack.is_some_and(|s| s.contains("code:1:11")));
    let (message, _) = exception(&sandbox, Script::expression("nope"));
    assert_eq!(
        message,
        "ReferenceError: nope is not defined (line 1, column 1)"
    );

    // Errors raised by the engine itself carry their name too; the wrapper's call is not a frame.
    let (message, stack) = exception(&sandbox, body("let o = null;\nreturn o.field;"));
    assert_eq!(
        message,
        "TypeError: cannot read property 'field' of null (line 2, column 8)"
    );
    assert_eq!(stack.as_deref(), Some("    at <anonymous> (code:2:8)\n"));
    let (_, stack) = exception(
        &sandbox,
        body("function inner() { throw new Error('deep'); }\ninner();"),
    );
    assert_eq!(
        stack.as_deref(),
        Some("    at inner (code:1:30)\n    at <anonymous> (code:2:1)\n")
    );

    // Thrown values that are not errors are shown as the console shows them.
    let (message, stack) = exception(&sandbox, body("throw 'plain';"));
    assert_eq!((message.as_str(), stack), ("plain", None));
    let (message, _) = exception(&sandbox, body("throw { code: 7 };"));
    assert_eq!(message, r#"{"code":7}"#);

    // A stack overflow is an error the script could catch, not a crash.
    let (message, _) = exception(
        &sandbox,
        body("function f() { return f() + 1; } return f();"),
    );
    assert!(message.starts_with("RangeError: "), "{message}");
    assert_eq!(value(&sandbox, body("return 1;")), json!(1));
}

#[test]
fn syntax_errors_are_exceptions_with_their_position() {
    let sandbox = pool(1);
    for script in [
        body("return (;"),
        body("let x = ;"),
        Script::expression("1 +"),
        Script::expression(""),
        // Closing the wrapper early leaves the rest unparseable.
        body("}); ("),
        body("await 1;"),
    ] {
        let source = script.source.clone();
        let (message, _) = exception(&sandbox, script);
        assert!(message.starts_with("SyntaxError: "), "{source}: {message}");
        assert!(message.contains("(line "), "{source}: {message}");
    }
}

#[test]
fn an_endless_loop_is_stopped_and_the_worker_serves_the_next_run() {
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        time_limit: Duration::from_millis(200),
        ..SandboxConfig::default()
    });
    for source in [
        "while (true) {}",
        // The deadline's error cannot be caught.
        "for (;;) { try { while (true) {} } catch (e) {} } ",
        // Nor can it be escaped through a `finally`, a regex or a `toJSON` of the result.
        "try { while (true) {} } finally { return 1; }",
        "return /(a+)+$/.test('a'.repeat(40) + 'b');",
        "return { toJSON() { for (;;) {} } };",
        "console.log({ toJSON() { for (;;) {} } });",
        "return Promise.resolve().then(function again() { return Promise.resolve().then(again); });",
    ] {
        let started = std::time::Instant::now();
        let result = sandbox.run_blocking(body(source));
        let took = started.elapsed();
        match result {
            Err(e @ SandboxError::TimedOut { limit }) => {
                assert_eq!(limit, Duration::from_millis(200));
                assert!(!e.to_string().to_lowercase().contains("timeout"), "{e}");
            }
            other => panic!("{source}: {other:?}"),
        }
        assert!(took < Duration::from_secs(2), "{source} took {took:?}");
        assert_eq!(value(&sandbox, body("return 'next';")), json!("next"));
    }
}

#[test]
fn a_script_limit_tighter_than_the_pool_s_applies() {
    let sandbox = pool(1);
    let script = Script {
        time_limit: Some(Duration::from_millis(50)),
        ..body("while (true) {}")
    };
    assert_eq!(
        sandbox.run_blocking(script),
        Err(SandboxError::TimedOut {
            limit: Duration::from_millis(50)
        })
    );
}

#[test]
fn a_memory_bomb_is_stopped_and_the_worker_serves_the_next_run() {
    let limit = 16 * 1024 * 1024;
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        memory_limit: limit,
        ..SandboxConfig::default()
    });
    for source in BOMBS {
        match sandbox.run_blocking(body(source)) {
            Err(e @ SandboxError::OutOfMemory { .. }) => {
                assert_eq!(e, SandboxError::OutOfMemory { limit });
            }
            other => panic!("{source}: {other:?}"),
        }
        assert_eq!(value(&sandbox, body("return 'next';")), json!("next"));
    }
    // A script may catch the error, drop what it held and carry on. (What it catches is `null`
    // when QuickJS could not allocate the error object either.)
    let caught = value(
        &sandbox,
        body(
            "let a = []; try { while (true) a.push('x'.repeat(1024) + a.length); } \
             catch (e) { a = null; return String(e); }",
        ),
    );
    assert!(
        caught == json!("InternalError: out of memory") || caught == json!("null"),
        "{caught}"
    );
}

#[test]
fn nothing_of_the_host_is_reachable() {
    let sandbox = pool(1);
    let missing = body(
        "return [typeof module, typeof exports, typeof process, typeof std, \
         typeof os, typeof print, typeof setTimeout, typeof fetch, typeof XMLHttpRequest, \
         typeof scriptArgs, typeof performance, typeof WeakRef, typeof navigator, typeof Deno, \
         typeof Bun, typeof crypto, new Function('return typeof std')()];",
    );
    let Json::Array(types) = value(&sandbox, missing) else {
        panic!("not an array");
    };
    assert!(types.iter().all(|t| t == "undefined"), "{types:?}");

    // `import()` has no loader to load with: its promise rejects.
    let (message, _) = exception(&sandbox, body("return import('x');"));
    assert!(message.contains("could not load module"), "{message}");
    let (message, _) = exception(&sandbox, body("import fs from 'fs';"));
    assert!(message.starts_with("SyntaxError"), "{message}");

    // `require` is there, and gives the npm packages only (see the tests of `modules`).
    assert_eq!(
        value(&sandbox, body("return typeof require;")),
        json!("function")
    );

    // The global object holds the ECMAScript built-ins, `console` and `require`, nothing else.
    let standard = [
        "Object",
        "Function",
        "Array",
        "Number",
        "parseFloat",
        "parseInt",
        "Infinity",
        "NaN",
        "undefined",
        "Boolean",
        "String",
        "Symbol",
        "Date",
        "Promise",
        "RegExp",
        "Error",
        "AggregateError",
        "EvalError",
        "RangeError",
        "ReferenceError",
        "SyntaxError",
        "TypeError",
        "URIError",
        "InternalError",
        "SuppressedError",
        "globalThis",
        "JSON",
        "Math",
        "Intl",
        "ArrayBuffer",
        "SharedArrayBuffer",
        "Atomics",
        "Uint8Array",
        "Int8Array",
        "Uint16Array",
        "Int16Array",
        "Uint32Array",
        "Int32Array",
        "Float16Array",
        "Float32Array",
        "Float64Array",
        "Uint8ClampedArray",
        "BigUint64Array",
        "BigInt64Array",
        "DataView",
        "Map",
        "BigInt",
        "Set",
        "WeakMap",
        "WeakSet",
        "Proxy",
        "Reflect",
        "decodeURI",
        "decodeURIComponent",
        "encodeURI",
        "encodeURIComponent",
        "escape",
        "unescape",
        "eval",
        "isFinite",
        "isNaN",
        "Iterator",
        "queueMicrotask",
        "DisposableStack",
        "AsyncDisposableStack",
        "console",
        "require",
    ];
    let Json::Array(names) = value(
        &sandbox,
        body("return Reflect.ownKeys(globalThis).map(String);"),
    ) else {
        panic!("not an array");
    };
    let unexpected: Vec<_> = names
        .iter()
        .filter_map(Json::as_str)
        .filter(|name| !standard.contains(name) && !name.starts_with("Symbol("))
        .collect();
    assert!(unexpected.is_empty(), "unexpected globals: {unexpected:?}");

    // `Atomics.wait` cannot block the worker.
    let (message, _) = exception(
        &sandbox,
        body("return Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10000);"),
    );
    assert!(message.contains("TypeError"), "{message}");
}

#[test]
fn the_result_is_capped_and_must_be_json() {
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        max_output_bytes: 1000,
        ..SandboxConfig::default()
    });
    // 998 characters and two quotes: exactly the cap.
    assert_eq!(
        value(&sandbox, body("return 'x'.repeat(998);")),
        json!("x".repeat(998))
    );
    match sandbox.run_blocking(body("return 'x'.repeat(999);")) {
        Err(SandboxError::Output(why)) => assert!(why.contains("1001 bytes"), "{why}"),
        other => panic!("{other:?}"),
    }
    match sandbox.run_blocking(body("const o = {}; o.o = o; return o;")) {
        Err(SandboxError::Output(why)) => assert!(why.contains("circular"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn promises_are_settled_before_the_result_is_taken() {
    let sandbox = pool(1);
    assert_eq!(
        value(
            &sandbox,
            body("return Promise.resolve(2).then((x) => x * 21);")
        ),
        json!(42)
    );
    let outcome = sandbox.run_blocking(body(
        "queueMicrotask(() => console.log('later')); console.log('now'); return 1;",
    ));
    assert_eq!(
        outcome.map(|o| o.logs),
        Ok(vec!["now".to_owned(), "later".to_owned()])
    );
    let (message, _) = exception(&sandbox, body("return Promise.reject(new Error('no'));"));
    assert!(message.starts_with("Error: no"), "{message}");
    assert!(matches!(
        sandbox.run_blocking(body("return new Promise(() => {});")),
        Err(SandboxError::Output(why)) if why.contains("never settled")
    ));
}

#[test]
fn an_outcome_says_how_long_the_run_took() {
    let sandbox = pool(1);
    let Ok(outcome) = sandbox.run_blocking(body("return 1;")) else {
        panic!("the run failed");
    };
    assert!(outcome.elapsed > Duration::ZERO && outcome.elapsed < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_runs_on_two_threads_all_complete() {
    let sandbox = pool(2);
    let runs = (0..400).map(|i| {
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            let script = Script {
                globals: globals(json!({ "i": i })),
                ..body("let s = 0; for (let k = 0; k < 1000; k++) s += k; console.log(i); return i * 2;")
            };
            sandbox.run(script).await
        })
    });
    let results = futures_join(runs).await;
    for (i, result) in results.into_iter().enumerate() {
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            other => panic!("run {i}: {other:?}"),
        };
        assert_eq!(outcome.value, json!(i * 2));
        assert_eq!(outcome.logs, vec![i.to_string()]);
    }
}

/// Awaits every handle in order.
async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<std::result::Result<T, tokio::task::JoinError>> {
    let handles: Vec<_> = handles.collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await);
    }
    results
}

#[test]
fn error_messages_never_say_timeout() {
    let errors = [
        SandboxError::TimedOut {
            limit: Duration::from_secs(5),
        },
        SandboxError::OutOfMemory {
            limit: DEFAULT_MEMORY_LIMIT,
        },
        SandboxError::Output("is too large".to_owned()),
        SandboxError::Closed,
    ];
    for error in errors {
        assert!(
            !error.to_string().to_lowercase().contains("timeout"),
            "{error}"
        );
    }
    assert_eq!(
        SandboxError::TimedOut {
            limit: Duration::from_secs(5)
        }
        .to_string(),
        "the script ran longer than its 5s limit and was stopped"
    );
    assert_eq!(
        SandboxError::OutOfMemory {
            limit: DEFAULT_MEMORY_LIMIT
        }
        .to_string(),
        "the script used more than its 64 MiB memory limit and was stopped"
    );
}

#[test]
fn the_memory_limit_is_per_run_not_per_runtime() {
    // Each run keeps ~6 MiB of cyclic garbage in its global object, which only the collector
    // frees: were it not collected between runs, the third run would pass the 16 MiB limit.
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        memory_limit: 16 * 1024 * 1024,
        ..SandboxConfig::default()
    });
    let source = "globalThis.keep = []; \
                  for (let i = 0; i < 6 * 1024; i++) { const o = { s: 'x'.repeat(900) + i }; o.self = o; keep.push(o); } \
                  return keep.length;";
    for _ in 0..10 {
        assert_eq!(value(&sandbox, body(source)), json!(6 * 1024));
    }
}

#[test]
fn a_runtime_left_with_queued_jobs_asks_to_be_replaced() {
    let engine = match runtime::Runtime::new(&SandboxConfig::default()) {
        Ok(engine) => engine,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        engine.run(&body("return 1;")).map(|o| o.value),
        Ok(json!(1))
    );
    assert_eq!(engine.recycle(), None);
    let endless = Script {
        time_limit: Some(Duration::from_millis(50)),
        ..body("(function again() { Promise.resolve().then(again); })();")
    };
    assert!(matches!(
        engine.run(&endless),
        Err(SandboxError::TimedOut { .. })
    ));
    assert_eq!(engine.recycle(), Some("promise jobs were left queued"));
}

/// The bombs of `a_memory_bomb_is_stopped_and_the_worker_serves_the_next_run`.
const BOMBS: [&str; 4] = [
    "const a = []; while (true) a.push('x'.repeat(1024) + a.length);",
    "return 'x'.repeat(100 * 1024 * 1024).length;",
    "const o = {}; for (let i = 0; ; i++) o['k' + i] = [i];",
    "const big = Array.from({ length: 400000 }, (_, i) => ({ i, s: 'abcdefgh' })); return JSON.stringify(big).length;",
];

#[test]
fn a_runtime_that_ran_out_of_memory_can_be_freed_without_aborting() {
    // `JS_FreeRuntime` aborts the process if objects survive; `dispose` checks before freeing.
    let config = SandboxConfig {
        memory_limit: 16 * 1024 * 1024,
        ..SandboxConfig::default()
    };
    for bomb in BOMBS {
        let engine = match runtime::Runtime::new(&config) {
            Ok(engine) => engine,
            Err(e) => panic!("{e}"),
        };
        assert!(matches!(
            engine.run(&body(bomb)),
            Err(SandboxError::OutOfMemory { .. })
        ));
        assert!(engine.dispose(), "{bomb} left objects behind");
    }
}

#[test]
fn a_tiny_memory_limit_is_raised_to_the_floor() {
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        memory_limit: 1000,
        ..SandboxConfig::default()
    });
    assert_eq!(value(&sandbox, body("return 1;")), json!(1));
    assert_eq!(
        sandbox.run_blocking(body(BOMBS[0])),
        Err(SandboxError::OutOfMemory {
            limit: runtime::MIN_MEMORY_LIMIT
        })
    );
    assert_eq!(value(&sandbox, body("return 2;")), json!(2));
}

#[test]
fn console_functions_lead_to_nothing_of_another_run() {
    // rquickjs caches the prototype of its Rust functions per runtime, taken from the first
    // context that made one: left so, `console.log` would reach an older run's built-ins.
    let sandbox = pool(1);
    let first = body(
        "Object.getPrototypeOf(console.log).stash = 'run 1'; \
         console.log.constructor('return globalThis')().stash = 'run 1'; \
         Object.getPrototypeOf(console.log).constructor.prototype.stash2 = 'run 1'; \
         return [Object.getPrototypeOf(console.log) === Function.prototype, \
                 console.log.constructor === Function, console.log instanceof Function];",
    );
    assert_eq!(value(&sandbox, first), json!([true, true, true]));
    let second = body(
        "return [typeof Object.getPrototypeOf(console.log).stash, \
                 typeof console.log.constructor('return globalThis')().stash, \
                 typeof Function.prototype.stash2];",
    );
    assert_eq!(
        value(&sandbox, second),
        json!(["undefined", "undefined", "undefined"])
    );
}

#[test]
fn console_may_be_reentered_from_the_script_it_formats() {
    let sandbox = pool(1);
    let outcome = sandbox.run_blocking(body(
        "const o = { toJSON() { console.log('inner'); return 'o'; } }; \
         console.log(o); \
         const deep = { toJSON() { console.log(deep); return 1; } }; \
         console.log(deep); \
         return 'done';",
    ));
    let Ok(outcome) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(outcome.value, json!("done"));
    assert_eq!(outcome.logs.first().map(String::as_str), Some("inner"));
    assert_eq!(outcome.logs.get(1).map(String::as_str), Some("\"o\""));
}

#[test]
fn a_time_limit_too_large_to_represent_means_none() {
    let sandbox = Sandbox::new(SandboxConfig {
        threads: 1,
        time_limit: Duration::MAX,
        ..SandboxConfig::default()
    });
    assert_eq!(value(&sandbox, body("return 1;")), json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_whose_caller_gave_up_before_it_started_is_not_run() {
    let sandbox = pool(1);
    let busy = Script {
        time_limit: Some(Duration::from_millis(400)),
        ..body("while (true) {}")
    };
    let slow = Script {
        time_limit: Some(Duration::from_secs(3)),
        ..body("while (true) {}")
    };
    let started = std::time::Instant::now();
    let first = tokio::spawn({
        let sandbox = sandbox.clone();
        async move { sandbox.run(busy).await }
    });
    // Queued behind the first, then abandoned.
    let abandoned = tokio::spawn({
        let sandbox = sandbox.clone();
        async move { sandbox.run(slow).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    abandoned.abort();
    assert!(matches!(
        first.await,
        Ok(Err(SandboxError::TimedOut { .. }))
    ));
    assert_eq!(
        sandbox.run(body("return 'next';")).await.map(|o| o.value),
        Ok(json!("next"))
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

// ---- require() of the npm packages ----

fn with_modules() -> Sandbox {
    let dir = super::default_modules_dir();
    let modules = JsModules::load(&dir);
    assert_eq!(
        modules.loaded(),
        ["lodash", "dayjs", "uuid"],
        "the npm packages are not installed in {}: run `npm ci` in js_modules/",
        dir.display()
    );
    Sandbox::new(SandboxConfig {
        threads: 1,
        modules: std::sync::Arc::new(modules),
        ..SandboxConfig::default()
    })
}

#[tokio::test]
async fn lodash_dayjs_and_uuid_are_required_as_in_the_original() {
    let sandbox = with_modules();
    let out = sandbox
        .run(Script::body(
            r#"
            const _ = require('lodash');
            const dayjs = require('dayjs');
            const { v4: uuidv4 } = require('uuid');
            const date = dayjs('2023-12-25');
            return {
              sum: _.sum([1, 2, 3]),
              grouped: _.groupBy([1, 2, 3], n => n % 2 ? 'odd' : 'even'),
              formatted: date.format('YYYY-MM-DD'),
              later: date.add(7, 'days').format('YYYY-MM-DD'),
              id: uuidv4(),
              same: require('lodash') === _,
            };"#,
        ))
        .await
        .unwrap();
    let v = out.value;
    assert_eq!(v["sum"], 6);
    assert_eq!(
        v["grouped"],
        serde_json::json!({"odd": [1, 3], "even": [2]})
    );
    assert_eq!(v["formatted"], "2023-12-25");
    assert_eq!(v["later"], "2024-01-01");
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(id.as_bytes()[14], b'4', "a version 4 uuid: {id}");
    assert_eq!(v["same"], true, "a second require gives the same exports");
}

#[tokio::test]
async fn es_imports_are_rewritten_into_requires() {
    let sandbox = with_modules();
    let source = super::rewrite_imports(
        "import _ from 'lodash';\nimport { v4 as uuidv4 } from 'uuid';\nreturn [_.max([3, 9, 2]), typeof uuidv4];",
    )
    .unwrap();
    let out = sandbox.run(Script::body(source)).await.unwrap();
    assert_eq!(out.value, serde_json::json!([9, "function"]));
}

#[tokio::test]
async fn required_code_runs_within_the_limits_and_runs_stay_apart() {
    let sandbox = with_modules();
    // A package evaluated in one run is not there in the next; a change to it neither.
    let first = sandbox
        .run(Script::body(
            "const _ = require('lodash'); _.sum = () => 42; return _.sum([1]);",
        ))
        .await
        .unwrap();
    assert_eq!(first.value, 42);
    let second = sandbox
        .run(Script::body("return require('lodash').sum([1, 2]);"))
        .await
        .unwrap();
    assert_eq!(second.value, 3);
    // The time limit covers code that uses a package.
    let err = sandbox
        .run(Script {
            time_limit: Some(Duration::from_millis(200)),
            ..Script::body("const _ = require('lodash'); while (true) { _.range(10); }")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::TimedOut { .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_and_missing_packages_throw_what_to_do() {
    let sandbox = with_modules();
    let err = sandbox
        .run(Script::body("return require('left-pad');"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("module not found: left-pad"),
        "{err}"
    );
    // No modules directory configured: `require` says how to install them, and can be caught.
    let bare = pool(1);
    let out = bare
        .run(Script::body(
            "try { require('lodash'); } catch (e) { return e.message; }",
        ))
        .await
        .unwrap();
    assert!(
        out.value.as_str().unwrap().contains("not available"),
        "{out:?}"
    );
    let empty = tempfile::tempdir().unwrap();
    let missing = Sandbox::new(SandboxConfig {
        threads: 1,
        modules: std::sync::Arc::new(JsModules::load(empty.path())),
        ..SandboxConfig::default()
    });
    let err = missing
        .run(Script::body("return require('dayjs');"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("npm ci"), "{err}");
}

#[tokio::test]
async fn crypto_get_random_values_fills_integer_arrays_only() {
    let sandbox = with_modules();
    let out = sandbox
        .run(Script::body(
            r#"require('uuid');
            const a = crypto.getRandomValues(new Uint8Array(32));
            let bad = '';
            try { crypto.getRandomValues(new Float64Array(2)); } catch (e) { bad = e.name; }
            let big = '';
            try { crypto.getRandomValues(new Uint8Array(70000)); } catch (e) { big = e.name; }
            return [a.length, a.some(x => x !== 0), bad, big];"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        out.value,
        serde_json::json!([32, true, "TypeError", "RangeError"])
    );
}
