//! The node's integration tests, one module per area, in one binary (one link instead of
//! fifteen). Most start a real cluster with `cache_testkit::cluster`; `hit_path`,
//! `single_flight` and `origin` also run parts in this process. Under nextest every test still
//! runs in a process of its own (run one area with `-E 'test(/^disk_faults::/)'`).
//!
//! `hit_path` installs this binary's global allocator, a thread-local allocation counter that
//! defers to the system allocator: the other modules' tests run on it unchanged.

mod cli;
mod configs;
mod disk_faults;
mod gateway;
mod hit_path;
mod hostile;
mod juicefs;
mod membership;
mod node_faults;
mod origin;
mod origin_faults;
mod read_path;
mod replica;
mod security;
mod single_flight;
mod streamed;
mod sync;
mod warmup;
