//! One file per `cachectl` command: its flags, and what it does with the client.

pub mod drain;
pub mod gateway;
pub mod get;
pub mod status;
pub mod sync;
mod sync_report;
pub mod warmup;
