//! Real network faults on loopback for one broker port, with `tc`.
//!
//! [`PortThrottle`] shapes every IPv4 packet to or from one TCP port on `lo` down to a tiny
//! rate with an HTB class and two u32 filters, so a broker stays alive and registered (its
//! controller connection uses another port) while clients reach it only through a trickle:
//! requests to it time out, as behind a saturated or failing link. Other traffic on `lo` is
//! not classified and bypasses the shaping (HTB's direct queue), so brokers of other clusters
//! on the same host are not affected. On drop, also while a test panics, the rate is raised
//! first (queued packets are delivered, not dropped) and then the qdisc is removed.
//!
//! Needs root (CAP_NET_ADMIN), `tc`, and a kernel with the HTB qdisc and u32 classifier; where
//! any of these is missing [`PortThrottle::start`] says why, for the test to skip.

use std::process::Command;

/// Handle of the root qdisc; fixed and unusual so a leftover of an aborted run is recognised.
const HANDLE: &str = "7e57:";
const CLASS: &str = "7e57:1";

/// A rate limit on one loopback port, lifted on drop.
#[derive(Debug)]
pub struct PortThrottle {
    port: u16,
}

fn tc(args: &[&str]) -> Result<(), String> {
    let out = Command::new("tc")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run tc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`tc {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl PortThrottle {
    /// Limits traffic to and from `port` on `lo` to `kbit` kilobits per second.
    /// `Err` explains why the kernel or the host does not allow it.
    pub fn start(port: u16, kbit: u32) -> Result<PortThrottle, String> {
        // A leftover of an aborted run of this very fault has our handle; anything else on
        // `lo` belongs to someone else and is left alone (the add below then fails).
        let shown = Command::new("tc")
            .args(["qdisc", "show", "dev", "lo"])
            .output()
            .map_err(|e| format!("cannot run tc: {e}"))?;
        if String::from_utf8_lossy(&shown.stdout).contains(&format!("htb {HANDLE} root")) {
            tc(&["qdisc", "del", "dev", "lo", "root", "handle", HANDLE])?;
        }
        tc(&["qdisc", "add", "dev", "lo", "root", "handle", HANDLE, "htb"])?;
        let guard = PortThrottle { port };
        let rate = format!("{kbit}kbit");
        tc(&[
            "class", "add", "dev", "lo", "parent", HANDLE, "classid", CLASS, "htb", "rate", &rate, "ceil", &rate,
            "burst", "1600",
        ])?;
        let port_s = port.to_string();
        for dir in ["dport", "sport"] {
            tc(&[
                "filter", "add", "dev", "lo", "parent", HANDLE, "protocol", "ip", "prio", "1", "u32", "match", "ip",
                dir, &port_s, "0xffff", "flowid", CLASS,
            ])?;
        }
        Ok(guard)
    }

    /// The throttled port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortThrottle {
    /// Lifts the limit the way a congested link recovers: the rate goes up first, so the queued
    /// packets are delivered rather than dropped with the qdisc, then the qdisc goes.
    fn drop(&mut self) {
        let _ = tc(&[
            "class", "change", "dev", "lo", "parent", HANDLE, "classid", CLASS, "htb", "rate", "10gbit", "ceil",
            "10gbit",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        if let Err(e) = tc(&["qdisc", "del", "dev", "lo", "root", "handle", HANDLE]) {
            eprintln!("kafka-harness: removing the throttle of port {}: {e}", self.port);
        }
    }
}
