//! loom models for pool: to be written.
#![cfg(loom)]
