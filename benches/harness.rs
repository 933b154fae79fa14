//! Shared measuring helpers for the criterion benches: to be written.
