//! A buffer pool shared by threads with `Pool`.
//!
//! Eight threads each encode 1,000 records into a scratch buffer taken from
//! one pool. Buffers are made only when none is idle, go back to the pool
//! when the guard drops, and are cleared on the way back by a reset hook,
//! so no thread sees another's bytes. At most `max_size` idle buffers are
//! kept; the rest are dropped. The stats show how often a buffer was reused.
//!
//! Run: `cargo run --example buffer_pool`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use multiopen::Pool;

fn main() {
    let made = Arc::new(AtomicUsize::new(0));
    let buffers = {
        let made = Arc::clone(&made);
        Arc::new(
            Pool::builder(move || {
                made.fetch_add(1, Ordering::Relaxed);
                Vec::<u8>::with_capacity(4096) // the expensive part, done rarely
            })
            .max_size(4) // keep at most 4 idle buffers
            .reset(|buf| buf.clear()) // runs on every return
            .build(),
        )
    };

    let workers: Vec<_> = (0..8u32)
        .map(|worker| {
            let buffers = Arc::clone(&buffers);
            thread::spawn(move || {
                let mut bytes = 0;
                for record in 0..1_000u32 {
                    let mut buf = buffers.instance(); // an idle buffer, or a new one
                    assert!(buf.is_empty(), "the reset hook cleared it");
                    // "Encode" a record: worker id, record number, payload.
                    buf.extend_from_slice(&worker.to_le_bytes());
                    buf.extend_from_slice(&record.to_le_bytes());
                    buf.extend(std::iter::repeat_n(b'x', (record % 64) as usize));
                    bytes += buf.len();
                    // `buf` drops here: cleared, then back into the pool
                    // (or dropped if 4 are already idle).
                }
                bytes
            })
        })
        .collect();
    let bytes: usize = workers
        .into_iter()
        .map(|w| w.join().expect("worker panicked"))
        .sum();

    let s = buffers.stats();
    println!("encoded {bytes} bytes in 8,000 records");
    println!(
        "buffers made {} (factory ran {} times), reused {} times: {:.2} % of instances",
        s.created,
        made.load(Ordering::Relaxed),
        s.reused,
        100.0 * s.reused as f64 / 8_000.0
    );
    println!(
        "returned to the pool {}, dropped because it was full {}, idle now {}, out now {}",
        s.returned, s.dropped_full, s.idle, s.out
    );
    println!("{s:?}");

    // The books balance at rest: every instance was a new or a reused
    // buffer, every guard went back or was dropped, every buffer made is
    // idle or gone.
    assert_eq!(s.created + s.reused, 8_000);
    assert_eq!(s.returned + s.dropped_full, 8_000);
    assert_eq!(s.created, s.retired() + s.idle);
    assert_eq!((s.out, s.created), (0, made.load(Ordering::Relaxed)));
    assert!(s.idle <= buffers.max_size());
}
