//! The `--check` report of `cachectl sync`: a table printed as differences are found (nothing
//! held), or one JSON document with the counts and at most [`LISTED`] differences.

use cache_client::sync::Finding;
use serde::Serialize;

/// Differences listed in a JSON report (the counts are always whole).
pub const LISTED: usize = 100_000;
/// Failures named on stderr at the end of a sync.
pub const FAILURES_SHOWN: usize = 20;

#[derive(Debug, Serialize)]
pub struct Difference {
    pub kind: &'static str,
    pub key: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub volume: String,
    pub prefix: String,
    /// Objects in the sources.
    pub found: u64,
    pub same: u64,
    pub missing: u64,
    pub extra: u64,
    pub differing: u64,
    pub differences: Vec<Difference>,
    /// More differences than listed.
    pub truncated: bool,
}

impl CheckReport {
    pub fn new(volume: &str, prefix: &str) -> Self {
        Self {
            volume: volume.to_owned(),
            prefix: prefix.to_owned(),
            found: 0,
            same: 0,
            missing: 0,
            extra: 0,
            differing: 0,
            differences: Vec::new(),
            truncated: false,
        }
    }

    /// Counts `finding`; prints its table row now (`print`) or keeps it for the JSON.
    pub fn add(&mut self, finding: &Finding, print: bool) {
        let row = match finding {
            Finding::Missing { key, size } => {
                self.missing += 1;
                Difference { kind: "missing", key: key.clone(), detail: format!("{size} bytes in the source") }
            }
            Finding::Extra { key, size } => {
                self.extra += 1;
                Difference { kind: "extra", key: key.clone(), detail: format!("{size} bytes, in no source") }
            }
            Finding::Differs { key, difference } => {
                self.differing += 1;
                Difference { kind: "differs", key: key.clone(), detail: difference.to_string() }
            }
            Finding::Failed { .. } => return,
        };
        if print {
            if self.missing + self.extra + self.differing == 1 {
                println!("{:<8} {:<60} DETAIL", "WHAT", "KEY");
            }
            println!("{:<8} {:<60} {}", row.kind, row.key, row.detail);
        } else if self.differences.len() < LISTED {
            self.differences.push(row);
        } else {
            self.truncated = true;
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(self).unwrap_or_default());
            return;
        }
        println!(
            "check {}/{}: {} objects in the sources, {} the same, {} missing, {} extra, {} differing",
            self.volume, self.prefix, self.found, self.same, self.missing, self.extra, self.differing
        );
    }
}
