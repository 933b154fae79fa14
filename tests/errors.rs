#![cfg(not(loom))]
//! The errors fit the ecosystem: any `Debug + Display + Send + Sync` user
//! error works (anyhow, boxed errors, strings), every error names its
//! object, and a cause is shown once in a chain (the crate's rule: a wrapper
//! writes its direct cause in its `Display` and its `source()` goes on with
//! that cause's own causes), so report printers such as anyhow's `{:#}`
//! never repeat a cause nor, where the chain can be reached, drop one.

use std::error::Error;
use std::fmt;
use std::panic;
use std::sync::Arc;

use anyhow::Context;

use multiopen::{
    BoxError, CloseError, CloseOptions, FinaliseError, FnMultiOpen, JoinError, MultiOpen,
    OpenError, Openable, Resource, RunState, RunStateError,
};

/// Every message in `error`'s `source()` chain, outermost first.
fn chain(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        messages.push(e.to_string());
        next = e.source();
    }
    messages
}

/// The chain rule, checked on one error: no message repeats the message
/// of its source; the object's name is in the top message; each of
/// `causes` appears exactly once in the whole chain and exactly once in
/// anyhow's `{:#}` report.
fn assert_clean<E: Error + Send + Sync + 'static>(error: E, object: &str, causes: &[&str]) {
    let messages = chain(&error);
    for pair in messages.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its source's message {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        messages[0].contains(object),
        "{:?} does not name {object:?}",
        messages[0]
    );
    let report = format!("{:#}", anyhow::Error::from(error));
    for cause in causes {
        assert_eq!(
            messages.join(": ").matches(cause).count(),
            1,
            "cause {cause:?} not shown exactly once in {messages:?}"
        );
        assert_eq!(
            report.matches(cause).count(),
            1,
            "cause {cause:?} not shown exactly once in {report:?}"
        );
    }
}

fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let out = f();
    panic::set_hook(hook);
    out
}

#[test]
fn chain_shows_each_cause_once_for_multi_open_errors() {
    let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    let kind = missing.kind();
    let db = MultiOpen::from_fns(
        move || Err::<(), _>(std::io::Error::new(kind, "no such file")),
        |_| Ok(()),
    )
    .with_name("db");
    let err = db.open().unwrap_err();
    assert!(
        matches!(&err, OpenError::Startup { name, error } if name == "db" && error.kind() == kind)
    );
    assert_clean(err, "db", &["no such file"]);

    let flush = MultiOpen::from_fns(
        || Ok::<_, std::io::Error>(()),
        |()| Err(std::io::Error::other("flush failed")),
    )
    .with_name("journal");
    let err = flush.open().unwrap().close().unwrap_err();
    assert!(matches!(&err, CloseError::Shutdown { name, .. } if name == "journal"));
    assert_clean(err, "journal", &["flush failed"]);

    let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())).with_name("svc");
    let held = mo.open().unwrap();
    let err = mo.open().unwrap().close_final().unwrap_err();
    assert!(matches!(&err, CloseError::NotFinal { still_open: 1, .. }));
    assert_clean(err, "svc", &[]);
    let err = mo.finalise().unwrap_err();
    assert!(matches!(err, FinaliseError::StillOpen { .. }));
    assert_clean(err, "svc", &[]);
    drop(held);
    assert_clean(mo.not_closed().unwrap_err(), "svc", &[]);
    assert_clean(mo.check_opened().unwrap_err(), "svc", &[]);
    let err = mo.close().unwrap_err();
    assert!(matches!(err, CloseError::Unmatched(_)));
    assert_clean(err, "svc", &[]);
    let err = mo.finalise().unwrap_err();
    assert!(matches!(err, FinaliseError::AlreadyFinalised { .. }));
    assert_clean(err, "svc", &[]);

    let never = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())).with_name("idle");
    assert_clean(never.join().unwrap_err(), "idle", &[]);
    assert_clean(never.check_opened().unwrap_err(), "idle", &[]);
    assert_clean(never.finalise().unwrap_err(), "idle", &[]);
    let err = never.close().unwrap_err();
    assert!(matches!(err, CloseError::NeverOpened(_)));
    assert_clean(err, "idle", &[]);
    assert!(never
        .close_with(CloseOptions::new().unopened_ok(true))
        .is_ok());

    // Not reachable in a test's time (2^27 opens), so built by hand: its
    // message still follows the rule.
    let err: OpenError<std::io::Error> = OpenError::TooManyOpens {
        name: "busy".into(),
    };
    assert_clean(err, "busy", &[]);
    // The timed forms' errors (a try during a startup is timing-dependent
    // to reach, so built by hand too; `join`'s is reached).
    let err: OpenError<std::io::Error> = OpenError::TimedOut {
        name: "slow".into(),
        waited: std::time::Duration::from_millis(5),
    };
    assert_clean(err, "slow", &[]);
    let open = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())).with_name("held");
    let held = open.open().unwrap();
    let err = open.try_join().unwrap_err();
    assert!(matches!(err, JoinError::TimedOut { .. }));
    assert_clean(err, "held", &[]);
    drop(held);
}

#[test]
fn chain_shows_each_cause_once_for_run_state_errors() {
    let rs = RunState::new("job");
    assert_clean(rs.stop().unwrap_err(), "job", &[]); // never started
    assert_clean(rs.resume().unwrap_err(), "job", &[]); // not paused
    rs.start().unwrap();
    assert_clean(rs.start().unwrap_err(), "job", &[]); // already running
    rs.on_cancel(|_| panic!("disk full"));
    let err = quiet_panics(|| rs.try_cancel().unwrap_err());
    assert_clean(err, "job", &["disk full"]);
    assert_clean(rs.check().unwrap_err(), "job", &[]); // Cancelled
    let err = rs.pause().unwrap_err();
    assert!(matches!(err, RunStateError::Cancelled(_)));
    assert_clean(err, "job", &[]);
    rs.stop().unwrap();
    assert_clean(rs.stop().unwrap_err(), "job", &[]); // not running

    let rs = RunState::new("loader");
    rs.on_start(|_| panic!("bad config"));
    let err = quiet_panics(|| rs.start().unwrap_err());
    assert!(matches!(err, RunStateError::CallbackPanicked(_)));
    assert_clean(err, "loader", &["bad config"]);
}

/// A user error with a source of its own, like thiserror's `#[from]`.
#[derive(Debug)]
struct Layered(std::io::Error);

impl fmt::Display for Layered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reading the config")
    }
}

impl Error for Layered {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

/// A typed user error: generic code cannot reach its `source()`, so the
/// chain stops at the crate's wrapper (documented); the user error, with its
/// own chain, is one match away.
#[test]
fn chain_of_a_typed_user_error_stops_at_the_wrapper_and_is_one_match_away() {
    let db = MultiOpen::from_fns(
        || Err::<(), _>(Layered(std::io::Error::other("permission denied"))),
        |_| Ok(()),
    )
    .with_name("cfg");
    let err = db.open().unwrap_err();
    assert!(err.source().is_none());
    match &err {
        OpenError::Startup { error, .. } => {
            assert_eq!(error.source().unwrap().to_string(), "permission denied")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_clean(err, "cfg", &["reading the config"]);
}

/// The same error boxed into a `BoxError` (or inside an `io::Error`): the
/// wrapper's `source()` goes on with its causes, each shown once.
#[test]
fn chain_shows_each_cause_once_through_boxed_and_io_errors() {
    let boxed = MultiOpen::from_dyn_fns(
        || Err(Layered(std::io::Error::other("permission denied")).into()),
        |()| Ok(()),
    )
    .with_name("cfg");
    let err = boxed.open().unwrap_err();
    assert_eq!(err.source().unwrap().to_string(), "permission denied");
    assert_clean(err, "cfg", &["reading the config", "permission denied"]);

    let io = MultiOpen::from_fns(
        || {
            Err::<(), _>(std::io::Error::other(Layered(std::io::Error::other(
                "disk gone",
            ))))
        },
        |_| Ok(()),
    )
    .with_name("journal");
    let err = io.open().unwrap_err();
    assert_clean(err, "journal", &["reading the config", "disk gone"]);

    // anyhow context boxed by `?` inside a `from_dyn_fns` closure.
    let ctx = MultiOpen::from_dyn_fns(
        || {
            let n: u8 = "x".parse().context("parsing the port")?;
            Ok(n)
        },
        |_| Ok(()),
    )
    .with_name("port");
    let err = ctx.open().unwrap_err();
    assert_clean(err, "port", &["parsing the port", "invalid digit"]);
    let shut = MultiOpen::from_dyn_fns(
        || Ok(()),
        |()| Err(anyhow::anyhow!("disk full").context("flushing").into()),
    )
    .with_name("log");
    let err = shut.open().unwrap().close().unwrap_err();
    assert_clean(err, "log", &["flushing", "disk full"]);
}

struct AnyhowResource;

impl Resource for AnyhowResource {
    type Handle = u32;
    type Error = anyhow::Error;

    fn startup(&self) -> anyhow::Result<u32> {
        let n: u32 = "not a number".parse().context("parsing the limit")?;
        Ok(n)
    }
}

#[test]
fn any_display_error_works_anyhow() {
    fn open_it(db: &MultiOpen<AnyhowResource>) -> anyhow::Result<u32> {
        Ok(*db.open()?) // `?` converts OpenError<anyhow::Error> into anyhow
    }
    let db = MultiOpen::new(AnyhowResource).with_name("parser");
    let err = open_it(&db).unwrap_err();
    let report = format!("{err:#}");
    assert!(
        report.starts_with("startup of parser failed: parsing the limit: invalid digit"),
        "{report}"
    );
    assert_eq!(report.matches("invalid digit").count(), 1, "{report}");
    assert_eq!(report.matches("parsing the limit").count(), 1, "{report}");
    assert_eq!(format!("{err}"), report, "the chain is in the one message");
    assert_eq!(db.open_count(), 0);
}

#[test]
fn any_display_error_works_boxed_and_string() {
    let boxed = MultiOpen::from_fns(
        || -> Result<u8, BoxError> { Ok("7".parse::<u8>()?) },
        |_| Ok(()),
    );
    assert_eq!(*boxed.open().unwrap(), 7);

    let text =
        MultiOpen::from_fns(|| Err::<(), String>("no route".into()), |_| Ok(())).with_name("link");
    let err = text.open().unwrap_err();
    assert_eq!(err.to_string(), "startup of link failed: no route");
    // `String` is not an `Error`, yet the wrapper is one, usable with `?`.
    let as_dyn: Box<dyn Error + Send + Sync> = Box::new(err);
    assert!(as_dyn.source().is_none());

    struct Port;
    impl Openable for Port {
        type Error = String;
        fn open(&self) -> Result<(), String> {
            Err("port busy".into())
        }
        fn close(&self) -> Result<(), String> {
            Ok(())
        }
    }
    let port = MultiOpen::wrap(Port).with_name("port");
    assert_eq!(
        port.open().unwrap_err().to_string(),
        "startup of port failed: port busy"
    );
}

/// A closure-built `MultiOpen` with no error type named anywhere, in a
/// struct field whose type can be written down.
struct App {
    db: FnMultiOpen<String>,
    typed: FnMultiOpen<u8, std::io::Error>,
}

#[test]
fn closure_built_multi_open_needs_no_turbofish_and_has_a_nameable_type() {
    let db = MultiOpen::from_dyn_fns(|| Ok(String::from("conn")), |_c| Ok(()));
    let typed = MultiOpen::new(multiopen::FnResource::boxed(
        || Ok(1u8),
        |_| Err(std::io::Error::other("flush")),
    ));
    let app = Arc::new(App { db, typed });
    assert_eq!(*app.db.open().unwrap(), "conn");
    let err = app.typed.open().unwrap().close().unwrap_err();
    assert!(matches!(err, CloseError::Shutdown { error, .. } if error.to_string() == "flush"));
    // `?` on any error inside a boxed-error closure converts it.
    let parsed = MultiOpen::from_dyn_fns(|| Ok("x".parse::<u8>()?), |_| Ok(()));
    let err = parsed.open().unwrap_err();
    assert!(err.to_string().contains("invalid digit"), "{err}");
}
