//! Helpers shared by several test files (`mod common;` in each; each file
//! uses a part, hence the `dead_code` allowance).
#![allow(dead_code)]

pub mod blocked;
pub mod child;

use std::sync::Mutex;

/// Runs `f` with the panic hook silenced (panics on purpose, such as
/// callbacks that panic). Serialised, so that one caller's restore cannot
/// put back another's silent hook.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}
