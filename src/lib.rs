//! Lock-free, loom-checked resource-management primitives for heavily
//! threaded programs, after the Python package `cs.resources`.
//!
//! - [`MultiOpen`]: one shared resource opened by many threads: the first
//!   [`open`](MultiOpen::open) runs startup, the last close runs shutdown,
//!   [`join`](MultiOpen::join) waits for that; it can cycle many times.
//! - [`Pool`]: reusable objects (buffers, sessions) handed out by
//!   [`instance`](Pool::instance) and put back when the guard drops; take
//!   and return are one compare-and-swap and one store each, on a front
//!   slot of the calling thread's own, before a lock-free queue.
//! - [`RunState`]: a task that starts, may be cancelled, and stops:
//!   [`cancelled`](RunState::cancelled) is one atomic load, cheap to poll
//!   from a hot loop; [`cancel`](RunState::cancel) wakes every thread in
//!   [`sleep`](RunState::sleep) or paused; timestamps, callbacks, a guard.
//!
//! Every state lives in atomics; nothing on a hot path takes a lock (open
//! and close on an open object are one atomic read-modify-write each);
//! threads that must wait sleep on a futex and are woken by the transition
//! they wait for. The same code, built with `RUSTFLAGS="--cfg loom"`, is
//! model-checked by the loom models in `loom-tests/`.
//!
//! The README follows: the quick tour, each primitive, the measured
//! comparisons, the Python-to-Rust name map and how correctness is checked.
//! Its examples run as doctests.
#![cfg_attr(not(all(doctest, loom_build)), doc = include_str!("../README.md"))]
#![warn(missing_docs)]

// Under `RUSTFLAGS="--cfg loom"` the library is built on loom's mocks, which
// panic outside a loom model. rustdoc does not see RUSTFLAGS, so it would run
// the doctests against them; `build.rs` sets `loom_build` for rustdoc too, and
// doctest collection then skips the API and the README above. The loom
// models are the tests there.

#[cfg(not(all(doctest, loom_build)))]
pub mod error;
#[cfg(not(all(doctest, loom_build)))]
pub mod multi_open;
#[cfg(not(all(doctest, loom_build)))]
pub mod pool;
#[cfg(not(all(doctest, loom_build)))]
pub mod run_state;
#[cfg(not(all(doctest, loom_build)))]
mod sync;

#[cfg(not(all(doctest, loom_build)))]
pub use error::{CallbackPanicked, Cancelled, RunStateError};
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
#[cfg(not(all(doctest, loom_build)))]
pub use pool::{OwnedPoolGuard, Pool, PoolBuilder, PoolGuard, PoolStats};
#[cfg(all(not(all(doctest, loom_build)), feature = "signal", unix))]
pub use run_state::SignalCanceller;
#[cfg(not(all(doctest, loom_build)))]
pub use run_state::{
    CallbackId, HasRunState, OwnedRunGuard, RunEvent, RunGuard, RunPhase, RunState, UntilCancelled,
    UntilCancelledExt,
};
