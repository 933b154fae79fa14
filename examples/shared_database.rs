//! A database handle shared by threads with `MultiOpen`.
//!
//! The "database" is a file-backed key/value store: startup opens (creates)
//! the file and loads it, shutdown writes it back. Worker threads each open
//! the shared store, do their writes, and close; the first open loads it,
//! the last close saves it, once per cycle. Then the main thread re-opens
//! it (a second cycle) to read back what the workers wrote.
//!
//! Run: `cargo run --example shared_database`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use multiopen::{MultiOpen, Resource};

/// The configuration: where the store lives. Nothing is opened until the
/// first `open`.
struct Store {
    path: PathBuf,
}

/// The live connection: the loaded map. (A real database handle would be a
/// connection pool or a file descriptor; the shape is the same.)
type Connection = Mutex<BTreeMap<String, String>>;

impl Resource for Store {
    type Handle = Connection;
    type Error = std::io::Error;

    fn startup(&self) -> std::io::Result<Connection> {
        println!("startup: loading {}", self.path.display());
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let map = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Mutex::new(map))
    }

    fn shutdown(&self, connection: Connection) -> std::io::Result<()> {
        let map = connection.into_inner().unwrap_or_else(|e| e.into_inner());
        println!(
            "shutdown: saving {} keys to {}",
            map.len(),
            self.path.display()
        );
        let text: String = map.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&self.path, text)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("multiopen-example-{}.db", std::process::id()));
    let db = Arc::new(MultiOpen::new(Store { path: path.clone() }).with_name("example db"));

    // Open once in the main thread while the workers start, so they share
    // one cycle; each worker holds its own open (an owned guard).
    let main_open = db.open()?;
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let connection = db.open_owned().expect("already open");
            thread::spawn(move || {
                let mut map = connection.lock().unwrap();
                for i in 0..3 {
                    map.insert(
                        format!("worker{worker}.key{i}"),
                        format!("{}", worker * 10 + i),
                    );
                }
                // The guard drops here: this worker's close.
            })
        })
        .collect();
    drop(main_open);
    for w in workers {
        w.join().expect("worker panicked");
    }
    db.join()?; // the last worker's close saved the file
    assert!(db.closed());

    // A second cycle: startup loads what the first cycle saved.
    let connection = db.open()?;
    let keys = connection.lock().unwrap().len();
    println!("re-opened: {keys} keys, cycle {}", db.state().cycle);
    assert_eq!(keys, 12);
    drop(connection);

    // Misuse is an error value, not a panic: there is no detached open.
    let extra = db.close().unwrap_err();
    println!("an extra close says: {extra}");

    std::fs::remove_file(path)?;
    Ok(())
}
