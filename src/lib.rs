//! Lock-free, loom-checked resource-management primitives for heavily
//! threaded programs (thread pools, servers, pipelines), after the Python
//! package `cs.resources`.
//!
//! The tour below (`src/tour.md`) is the crate's front page: which type
//! for which need, one example each, the feature flags and where to go next.
// The tour's examples would run against loom's mocks, which panic outside a
// model, when the doctests are collected under `--cfg loom`; see below.
#![cfg_attr(not(all(doctest, loom_build)), doc = include_str!("tour.md"))]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The `cfg(not(all(doctest, loom_build)))` on every item is build plumbing
// (see below), not something a reader of the docs needs to see.
#![cfg_attr(docsrs, doc(auto_cfg(hide(doctest, loom_build))))]
#![warn(missing_docs)]

// Under `RUSTFLAGS="--cfg loom"` the library is built on loom's mocks, which
// panic outside a loom model. rustdoc does not see RUSTFLAGS, so it would run
// the doctests against them; `build.rs` sets `loom_build` for rustdoc too, and
// doctest collection then skips the API, the tour and the README. The loom
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
mod timer;
#[cfg(not(all(doctest, loom_build)))]
mod unwind;

/// Under loom only, for the loom models: runs every pending timer task now,
/// on the calling model thread (loom has no timer thread and no clock);
/// returns how many ran. See the timer module's doc.
#[cfg(loom)]
#[doc(hidden)]
pub use timer::fire_timers as loom_fire_timers;

/// Under loom only, for the loom models: a deadline-runner pool of the
/// model's own (the crate's is not built under loom) and its counts. See
/// `src/timer/runner.rs`.
#[cfg(loom)]
#[doc(hidden)]
pub use timer::runner::{LoomRunnerCounts, LoomRunners};

#[cfg(not(all(doctest, loom_build)))]
pub use error::{
    BoxError, CloseError, CloseHow, CloseSite, ClosedError, FinaliseError, JoinError,
    NeverOpenedError, NotOpenedError, OpenError,
};
#[cfg(not(all(doctest, loom_build)))]
pub use error::{CallbackPanicked, Cancelled, RunStateError, WaitTimedOut};
#[cfg(not(all(doctest, loom_build)))]
pub use multi_open::{
    CloseOptions, CloseOutcome, DynFnResource, FnMultiOpen, FnResource, JoinFuture, MultiOpen,
    MultiOpenState, OpenFuture, OpenGuard, Openable, OwnedOpenFuture, OwnedOpenGuard, Phase,
    Resource, Wrapped,
};
#[cfg(not(all(doctest, loom_build)))]
pub use pool::{
    GetFuture, GetOwnedFuture, OwnedPoolGuard, Pool, PoolBuilder, PoolError, PoolGuard, PoolStats,
    PoolStatus,
};
#[cfg(all(not(all(doctest, loom_build)), feature = "signal", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
pub use run_state::SignalCanceller;
#[cfg(not(all(doctest, loom_build)))]
pub use run_state::{
    CallbackId, CancelReason, CurrentGuard, DropGuard, HasRunState, LocalRunGuard, OwnedDropGuard,
    OwnedRunGuard, RunEvent, RunGuard, RunHandle, RunPhase, RunState, SpawnError, UntilCancelled,
    UntilCancelledExt,
};
#[cfg(not(all(doctest, loom_build)))]
pub use run_state::{Cancellation, RunUntilCancelled, WaitCancelled, WaitStopped};

/// The README's examples, run as doctests (`cargo test --doc`); not part of
/// the API.
#[cfg(all(doctest, not(loom_build)))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
