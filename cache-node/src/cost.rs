//! What a volume's origins cost, estimated from what this node sent them (`metrics::OriginOp`
//! counts) and the prices in `[[volume.origin]]`. Plain arithmetic, no I/O.
//!
//! - spent, per origin: bytes (read and written) / 2^30 × `price_per_gb` + requests / 1000 ×
//!   `price_per_1000_requests`, where requests are GETs (answered, "no such object" or failed),
//!   HEADs and PUTs;
//! - saved, per volume with a regional copy: the GETs the regional copy answered, priced as the
//!   first source would have charged for them, minus what the regional copy charged for them.
//!   (What the copies themselves cost is in the regional copy's and the source's `spent`.)

use cache_client::config::OriginConfig;
use cache_proto::wire::OriginUse;

const GIB: f64 = (1u64 << 30) as f64;

/// The prices of one origin, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginPrice {
    pub url: String,
    pub replica: bool,
    pub per_gb: f64,
    pub per_1000_requests: f64,
}

impl From<&OriginConfig> for OriginPrice {
    fn from(o: &OriginConfig) -> Self {
        Self {
            url: o.url.clone(),
            replica: o.replica,
            per_gb: o.price_per_gb,
            per_1000_requests: o.price_per_1000_requests,
        }
    }
}

impl OriginPrice {
    /// Cost of `requests` requests moving `bytes` bytes.
    pub fn cost(&self, requests: u64, bytes: u64) -> f64 {
        bytes as f64 / GIB * self.per_gb + requests as f64 / 1000.0 * self.per_1000_requests
    }

    /// What this origin's counts cost.
    pub fn spent(&self, u: &OriginUse) -> f64 {
        self.cost(u.gets + u.gets_missing + u.gets_failed + u.heads + u.puts, u.get_bytes + u.put_bytes)
    }
}

/// Money saved by the regional copy's reads (origin 0 with `replica`) against the first source
/// (origin 1): 0 for a volume without a regional copy.
pub fn saved(prices: &[OriginPrice], uses: &[OriginUse]) -> f64 {
    match (prices, uses) {
        ([replica, source, ..], [read, ..]) if replica.replica => {
            source.cost(read.gets, read.get_bytes) - replica.cost(read.gets, read.get_bytes)
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(replica: bool, per_gb: f64, per_1000_requests: f64) -> OriginPrice {
        OriginPrice { url: String::new(), replica, per_gb, per_1000_requests }
    }

    #[test]
    fn spent_counts_every_request_and_both_directions() {
        let p = price(true, 2.0, 1.0);
        let u = OriginUse {
            gets: 500,
            gets_missing: 300,
            heads: 100,
            puts: 100,
            get_bytes: 1 << 30,
            put_bytes: 1 << 29,
            ..OriginUse::default()
        };
        assert!((p.spent(&u) - (3.0 + 1.0)).abs() < 1e-9, "{}", p.spent(&u));
    }

    #[test]
    fn saved_prices_regional_reads_at_the_source() {
        let prices = [price(true, 0.0, 0.4), price(false, 0.02, 0.4)];
        let read = OriginUse { gets: 1000, get_bytes: 10 << 30, ..OriginUse::default() };
        assert!((saved(&prices, &[read.clone(), OriginUse::default()]) - 0.2).abs() < 1e-9);
        let plain = [price(false, 0.0, 0.4), price(false, 0.02, 0.4)];
        assert_eq!(saved(&plain, &[read, OriginUse::default()]), 0.0);
    }
}
