//! loom models for run_state: to be written.
#![cfg(loom)]
