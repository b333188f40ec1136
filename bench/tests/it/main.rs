//! The bench crate's integration tests in one binary: the checker (`check`) and the load engine
//! (`load`) of `cache-bench`, each against real parts in this process.

mod busy_fills;
mod check;
mod load;
mod slow_link;
mod slow_origin;
