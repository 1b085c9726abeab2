//! Horizontal sharding across exporter processes, in the manner of kube-state-metrics.
//!
//! `--total-shards M` processes with `--shard 0..M-1` watch the same clusters and split the
//! per-topic and per-group work between them: each topic and each consumer group belongs to
//! exactly one shard, chosen by a stable hash of its name ([`name_hash`] modulo M). A shard
//! requests DescribeGroups and OffsetFetch only for its own groups, and topic configs, offsets
//! and replay-window reads only for its own topics plus the topics its groups consume (lag
//! needs their offsets). Series that describe the cluster as a whole (brokers, controller,
//! cluster totals, the delivery probe, the Schema Registry) come from shard 0 only, so that the
//! union of all shards' series is the series set of one unsharded process.
//!
//! The hash must not change between releases or platforms: every process of a deployment has
//! to agree on the owner of a name, including during a rolling upgrade. Rust's `DefaultHasher`
//! promises neither, so a fully specified hash is used (FNV-1a 64 with a finaliser).

use std::fmt;

/// Which share of topics and groups this process owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    total: u32,
}

impl Default for Shard {
    /// The unsharded exporter: one shard that owns everything.
    fn default() -> Self {
        Self { index: 0, total: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

impl Shard {
    /// Shard `index` of `total`; requires `0 ≤ index < total`.
    pub fn new(index: u32, total: u32) -> Result<Self, String> {
        if total == 0 {
            return Err("--total-shards must be at least 1".into());
        }
        if index >= total {
            return Err(format!(
                "--shard {index} is out of range: shards are numbered 0 to {} for --total-shards {total}",
                total - 1
            ));
        }
        Ok(Self { index, total })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn total(self) -> u32 {
        self.total
    }

    /// True when the work is split across more than one process.
    pub fn is_sharded(self) -> bool {
        self.total > 1
    }

    /// Whether this shard owns the topic or group `name`.
    pub fn owns(self, name: &str) -> bool {
        self.total == 1 || owner(name, self.total) == self.index
    }

    /// Whether this shard exports the cluster-wide series (shard 0 does).
    pub fn owns_cluster_wide(self) -> bool {
        self.index == 0
    }
}

/// The shard (of `total`) that owns `name`: [`name_hash`] modulo `total`.
pub fn owner(name: &str, total: u32) -> u32 {
    (name_hash(name) % u64::from(total.max(1))) as u32
}

/// The stable hash of a name: 64-bit FNV-1a of its UTF-8 bytes, then the MurmurHash3 `fmix64`
/// finaliser. FNV-1a alone spreads similar names badly over a few shards: its low k bits
/// depend only on the low k bits of each byte, and a name's last bytes barely reach its high
/// bits. The finaliser makes every output bit depend on every input bit.
pub fn name_hash(name: &str) -> u64 {
    let mut h = fnv1a64(name.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// 64-bit FNV-1a (Fowler–Noll–Vo) of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // Test vectors of the FNV reference implementation.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn owners_are_stable() {
        // Pinned: a change here reassigns names between the shards of a running deployment.
        let owners: Vec<u32> = ["orders", "payments", "orders-consumer", "a", ""]
            .iter()
            .map(|n| owner(n, 4))
            .collect();
        assert_eq!(owners, vec![1, 2, 3, 3, 2]);
        assert_eq!(fnv1a64(b"payments"), 0xe17a_c568_6623_db26);
        assert_eq!(name_hash("payments"), 0x13cb_0d53_44dc_c47a);
    }

    #[test]
    fn every_name_has_exactly_one_owner() {
        for total in 1..=7 {
            let shards: Vec<Shard> = (0..total).map(|i| Shard::new(i, total).unwrap()).collect();
            for i in 0..500 {
                let name = format!("topic-{i}");
                let n = shards.iter().filter(|s| s.owns(&name)).count();
                assert_eq!(n, 1, "{name} with {total} shards");
            }
        }
    }

    #[test]
    fn names_spread_evenly() {
        let total = 4;
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            counts[owner(&format!("orders.v1.tenant-{i}"), total) as usize] += 1;
        }
        for c in counts {
            assert!((2_350..=2_650).contains(&c), "{counts:?}");
        }
        // Names differing only in their last character spread too.
        let owners: std::collections::HashSet<u32> = (b'a'..=b'z')
            .map(|c| owner(&format!("orders-{}", c as char), 4))
            .collect();
        assert_eq!(owners.len(), 4);
    }

    #[test]
    fn one_shard_owns_everything() {
        let s = Shard::default();
        assert!(!s.is_sharded() && s.owns_cluster_wide());
        assert!(s.owns("anything") && s.owns(""));
        assert_eq!(s.to_string(), "0/1");
    }

    #[test]
    fn only_shard_zero_owns_cluster_wide_series() {
        assert!(Shard::new(0, 3).unwrap().owns_cluster_wide());
        assert!(!Shard::new(1, 3).unwrap().owns_cluster_wide());
        assert!(!Shard::new(2, 3).unwrap().owns_cluster_wide());
    }

    #[test]
    fn out_of_range_is_rejected() {
        assert!(Shard::new(0, 0).unwrap_err().contains("at least 1"));
        let e = Shard::new(2, 2).unwrap_err();
        assert!(e.contains("--shard 2") && e.contains("0 to 1"), "{e}");
        assert!(Shard::new(1, 2).is_ok());
    }
}
