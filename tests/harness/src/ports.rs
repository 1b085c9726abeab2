//! Free-port allocation and small randomness helpers.
//!
//! Brokers bind their ports some seconds after the harness picked them, so a
//! port must stay free in between. Ports are therefore drawn at random from
//! below the kernel's ephemeral range: the kernel never hands those out for
//! outgoing connections (including the ones our own clients open meanwhile),
//! and random choice keeps concurrent test processes from converging on the
//! same numbers. Within one process a registry of handed-out ports rules out
//! collisions between tests running on parallel threads outright.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{HarnessError, Result};

/// Ports handed out by this process and not yet released.
fn registry() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Lowest port the harness uses; below are many well-known service ports.
const LOWEST: u16 = 20_000;

/// Range to draw from: `[LOWEST, start of ephemeral range)`, or a fixed
/// window if the ephemeral range cannot be read or leaves too little room.
fn candidate_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
    match ephemeral_start {
        Some(start) if start >= LOWEST + 2_000 => (LOWEST, start),
        _ => (LOWEST, 32_000),
    }
}

/// Reserves `n` distinct ports that are currently free on 127.0.0.1.
///
/// The ports stay reserved in this process until [`release`] is called.
pub(crate) fn allocate(n: usize) -> Result<Vec<u16>> {
    let (lo, hi) = candidate_range();
    let span = u32::from(hi - lo);
    let mut taken = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0u32;
    while out.len() < n {
        attempts += 1;
        if attempts > 10_000 {
            for p in &out {
                taken.remove(p);
            }
            return Err(HarnessError::InvalidArgument(format!(
                "could not find {n} free ports in {lo}..{hi}"
            )));
        }
        let port = lo + (random_u32() % span) as u16;
        if taken.contains(&port) || !is_free(port) {
            continue;
        }
        taken.insert(port);
        out.push(port);
    }
    Ok(out)
}

/// Returns ports to the pool once their cluster is gone.
pub(crate) fn release(ports: &[u16]) {
    let mut taken = registry().lock().unwrap_or_else(|e| e.into_inner());
    for p in ports {
        taken.remove(p);
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Fills `buf` from the kernel's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let rc = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if rc > 0 {
            filled += rc as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// A uniformly random `u32`.
pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    random_bytes(&mut b);
    u32::from_le_bytes(b)
}

/// A fresh KRaft cluster id: 16 random bytes in unpadded URL-safe base64,
/// the format `kafka-storage random-uuid` prints. Generated here to save a
/// JVM start.
pub(crate) fn random_cluster_id() -> String {
    loop {
        let mut bytes = [0u8; 16];
        random_bytes(&mut bytes);
        let id = URL_SAFE_NO_PAD.encode(bytes);
        // Kafka's own generator avoids a leading '-' because the id is often
        // passed on command lines where it would read as an option.
        if !id.starts_with('-') && bytes.iter().any(|&b| b > 1) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_have_kafka_shape() {
        for _ in 0..100 {
            let id = random_cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
        }
    }

    #[test]
    fn allocated_ports_are_distinct_until_released() {
        let a = allocate(6).unwrap();
        let b = allocate(6).unwrap();
        let all: HashSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 12);
        release(&a);
        release(&b);
    }
}
