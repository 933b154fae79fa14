//! Property test: random sequences of open / close / detach / object close /
//! finalise / join / re-open from one thread, checked step by step against
//! a plain sequential model of what `MultiOpen` promises. Every error
//! variant is reachable from the generated operations.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use multiopen::{
    CloseError, CloseOptions, CloseOutcome, FinaliseError, MultiOpen, OpenError, OpenGuard, Phase,
    Resource,
};
use proptest::prelude::*;

#[derive(Debug, PartialEq, Eq)]
struct Failure;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure")
    }
}

impl std::error::Error for Failure {}

#[derive(Default)]
struct Flaky {
    fail_startup: AtomicBool,
    fail_shutdown: AtomicBool,
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
}

impl Resource for Flaky {
    type Handle = usize;
    type Error = Failure;

    fn startup(&self) -> Result<usize, Failure> {
        if self.fail_startup.swap(false, SeqCst) {
            return Err(Failure);
        }
        Ok(self.startups.fetch_add(1, SeqCst) + 1)
    }

    fn shutdown(&self, _: usize) -> Result<(), Failure> {
        self.shutdowns.fetch_add(1, SeqCst);
        if self.fail_shutdown.swap(false, SeqCst) {
            return Err(Failure);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Open,
    /// Drop, close, close_final or detach guard `index % len`.
    DropGuard(usize),
    CloseGuard(usize),
    CloseGuardFinal(usize),
    Detach(usize),
    CloseObject {
        enforce_final: bool,
        unopened_ok: bool,
    },
    Finalise,
    Join,
    SetFinaliseLater(bool),
    FailNextStartup,
    FailNextShutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Open),
        2 => any::<usize>().prop_map(Op::DropGuard),
        2 => any::<usize>().prop_map(Op::CloseGuard),
        1 => any::<usize>().prop_map(Op::CloseGuardFinal),
        2 => any::<usize>().prop_map(Op::Detach),
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(enforce_final, unopened_ok)| Op::CloseObject { enforce_final, unopened_ok }),
        1 => Just(Op::Finalise),
        1 => Just(Op::Join),
        1 => any::<bool>().prop_map(Op::SetFinaliseLater),
        1 => Just(Op::FailNextStartup),
        1 => Just(Op::FailNextShutdown),
    ]
}

/// The sequential model.
#[derive(Debug, Default)]
struct Model {
    /// Opens held by guards.
    guards: usize,
    detached: usize,
    cycles: u32,
    shutdowns: u32,
    finalised: u32,
    finalise_later: bool,
    fail_startup: bool,
    fail_shutdown: bool,
}

impl Model {
    fn count(&self) -> usize {
        self.guards + self.detached
    }

    fn is_open(&self) -> bool {
        self.count() > 0
    }

    /// One close of a held open; what the real close must report.
    fn close(&mut self) -> Result<CloseOutcome, CloseError<Failure>> {
        if self.count() > 0 {
            return Ok(CloseOutcome::StillOpen);
        }
        self.shutdowns += 1;
        if !self.finalise_later {
            self.finalised = self.shutdowns;
        }
        if std::mem::take(&mut self.fail_shutdown) {
            Err(CloseError::Shutdown {
                name: "prop".into(),
                error: Failure,
            })
        } else {
            Ok(CloseOutcome::ShutDown)
        }
    }
}

/// Outcomes compared by kind (the error payloads carry names and sites).
fn kind<T: std::fmt::Debug, E: std::fmt::Debug>(r: &Result<T, E>) -> String {
    let text = format!("{r:?}");
    text.split(['(', '{', ' '])
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mo = MultiOpen::new(Flaky::default()).with_name("prop");
    let mut guards: Vec<OpenGuard<'_, Flaky>> = Vec::new();
    let mut model = Model::default();
    for op in ops {
        match op.clone() {
            Op::Open => {
                let opened = mo.open();
                if !model.is_open() && std::mem::take(&mut model.fail_startup) {
                    let failed = matches!(opened, Err(OpenError::Startup { error: Failure, .. }));
                    prop_assert!(failed, "{:?}", opened);
                } else {
                    let guard = opened.expect("open succeeds");
                    if !model.is_open() {
                        model.cycles += 1;
                    }
                    prop_assert_eq!(*guard as u32, model.cycles);
                    guards.push(guard);
                    model.guards += 1;
                }
            }
            Op::DropGuard(i) | Op::CloseGuard(i) | Op::CloseGuardFinal(i) | Op::Detach(i)
                if guards.is_empty() =>
            {
                let _ = i; // nothing to act on
            }
            Op::DropGuard(i) => {
                drop(guards.swap_remove(i % guards.len()));
                model.guards -= 1;
                let _ = model.close();
            }
            Op::CloseGuard(i) => {
                let got = guards.swap_remove(i % guards.len()).close();
                model.guards -= 1;
                let want = model.close();
                prop_assert_eq!(got, want);
            }
            Op::CloseGuardFinal(i) => {
                let got = guards.swap_remove(i % guards.len()).close_final();
                model.guards -= 1;
                let want = match model.close() {
                    Ok(CloseOutcome::StillOpen) => Err(CloseError::NotFinal {
                        name: "prop".into(),
                        still_open: model.count(),
                    }),
                    other => other,
                };
                prop_assert_eq!(got, want);
            }
            Op::Detach(i) => {
                guards.swap_remove(i % guards.len()).detach();
                model.guards -= 1;
                model.detached += 1;
            }
            Op::CloseObject {
                enforce_final,
                unopened_ok,
            } => {
                let options = CloseOptions::new()
                    .enforce_final_close(enforce_final)
                    .unopened_ok(unopened_ok);
                let got = mo.close_with(options);
                let want = if model.detached == 0 {
                    if unopened_ok {
                        Ok(CloseOutcome::NothingOpen)
                    } else if model.cycles == 0 {
                        Err(CloseError::NeverOpened(multiopen::NeverOpenedError {
                            name: "prop".into(),
                        }))
                    } else {
                        Err(CloseError::Unmatched(multiopen::ClosedError {
                            name: "prop".into(),
                            final_close: None,
                        }))
                    }
                } else {
                    model.detached -= 1;
                    match model.close() {
                        Ok(CloseOutcome::StillOpen) if enforce_final => Err(CloseError::NotFinal {
                            name: "prop".into(),
                            still_open: model.count(),
                        }),
                        other => other,
                    }
                };
                prop_assert_eq!(kind(&got), kind(&want), "{:?} vs {:?}", got, want);
                if let (
                    Err(CloseError::NotFinal { still_open: a, .. }),
                    Err(CloseError::NotFinal { still_open: b, .. }),
                ) = (&got, &want)
                {
                    prop_assert_eq!(a, b);
                }
            }
            Op::Finalise => {
                let got = mo.finalise();
                if model.finalised < model.shutdowns {
                    prop_assert!(got.is_ok(), "{:?}", got);
                    model.finalised = model.shutdowns;
                } else if model.cycles == 0 {
                    prop_assert!(matches!(got, Err(FinaliseError::NeverOpened(_))));
                } else if model.is_open() {
                    prop_assert!(
                        matches!(got, Err(FinaliseError::StillOpen { .. })),
                        "{:?}",
                        got
                    );
                } else {
                    prop_assert!(
                        matches!(got, Err(FinaliseError::AlreadyFinalised { .. })),
                        "{:?}",
                        got
                    );
                }
            }
            Op::Join => {
                if model.cycles == 0 {
                    prop_assert!(mo.join().is_err());
                } else if model.finalised >= model.cycles {
                    // Would return at once; otherwise it would (rightly)
                    // block this single thread, so it is not called.
                    prop_assert!(mo.join().is_ok());
                }
            }
            Op::SetFinaliseLater(later) => {
                mo.set_finalise_later(later);
                model.finalise_later = later;
            }
            Op::FailNextStartup => {
                mo.resource().fail_startup.store(true, SeqCst);
                model.fail_startup = true;
            }
            Op::FailNextShutdown => {
                mo.resource().fail_shutdown.store(true, SeqCst);
                model.fail_shutdown = true;
            }
        }
        // After every step the observable state matches the model.
        let state = mo.state();
        prop_assert_eq!(state.open_count, model.count(), "after {:?}", op);
        prop_assert_eq!(state.detached, model.detached);
        prop_assert_eq!(state.cycle, model.cycles);
        let phase = if model.is_open() {
            Phase::Open
        } else if model.cycles > 0 {
            Phase::Closed
        } else {
            Phase::NeverOpened
        };
        prop_assert_eq!(state.phase, phase);
        prop_assert_eq!(mo.closed(), phase == Phase::Closed);
        prop_assert_eq!(mo.resource().shutdowns.load(SeqCst) as u32, model.shutdowns);
    }
    drop(guards);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_the_sequential_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
