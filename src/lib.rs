//! Lock-free, loom-checked resource-management primitives for heavily
//! threaded programs, after the Python package `cs.resources`.
//!
//! - [`MultiOpen`]: one shared resource opened by many threads: the first
//!   [`open`](MultiOpen::open) runs startup, the last close runs shutdown,
//!   [`join`](MultiOpen::join) waits for that; it can cycle many times.
//!
//! Every state lives in atomics; nothing on a hot path takes a lock (open
//! and close on an open object are one atomic read-modify-write each);
//! threads that must wait sleep on a futex and are woken by the transition
//! they wait for. The same code, built with `RUSTFLAGS="--cfg loom"`, is
//! model-checked by the loom models in `loom-tests/`.
#![cfg_attr(
    not(all(doctest, loom_build)),
    doc = r#"
```
use multiopen::MultiOpen;

let db = MultiOpen::from_fns(
    || Ok::<_, std::io::Error>(String::from("connection")),
    |_conn| Ok(()),
);
std::thread::scope(|s| {
    for _ in 0..4 {
        s.spawn(|| {
            let conn = db.open().expect("startup works");
            assert_eq!(*conn, "connection");
        });
    }
});
assert!(db.closed()); // the last guard dropped ran shutdown
```
"#
)]
#![warn(missing_docs)]

// Under `RUSTFLAGS="--cfg loom"` the library is built on loom's mocks, which
// panic outside a loom model. rustdoc does not see RUSTFLAGS, so it would run
// the doctests against them; `build.rs` sets `loom_build` for rustdoc too, and
// doctest collection then skips the API and the crate example above. The loom
// models are the tests there.

#[cfg(not(all(doctest, loom_build)))]
pub mod error;
#[cfg(not(all(doctest, loom_build)))]
pub mod multi_open;
#[cfg(not(all(doctest, loom_build)))]
mod sync;

#[cfg(not(all(doctest, loom_build)))]
pub use error::{
    CloseError, CloseHow, CloseSite, ClosedError, FinaliseError, NeverOpenedError, NotOpenedError,
    OpenError,
};
#[cfg(not(all(doctest, loom_build)))]
pub use multi_open::{
    CloseOptions, CloseOutcome, FnResource, MultiOpen, MultiOpenState, OpenGuard, Openable,
    OwnedOpenGuard, Phase, Resource, Wrapped,
};
