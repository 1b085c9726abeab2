//! Real network faults on loopback for one broker port, with `tc`.
//!
//! A [`PortFault`] classifies IPv4 packets to or from one TCP port on `lo` into an HTB class
//! with u32 filters, so a broker stays alive and registered (its controller connection uses
//! another port) while clients and followers reach it only through that class. Other traffic
//! on `lo` is not classified and bypasses it (HTB's direct queue), so brokers of other
//! clusters on the same host are not affected.
//!
//! - [`PortFault::throttle`]: the class is shaped down to a tiny rate, as behind a saturated
//!   or failing link; requests to the broker time out. On drop, also while a test panics,
//!   the rate is raised first (queued packets are delivered, not dropped) and then the qdisc
//!   is removed.
//! - [`PortFault::cut`]: every packet the broker sends from that port is dropped (a FIFO of
//!   length 0), as when a link in between is cut or a firewall drops: the clients' packets
//!   leave, nothing comes back, connection attempts and requests go unanswered. Only the
//!   broker's side is dropped because on loopback the sender's own kernel does the dropping,
//!   and Linux treats a packet its own qdisc refused as local congestion: it retries every
//!   0.5 s without the exponential backoff a remote loss causes, so cutting the clients' side
//!   would show them a kinder fault than a real one. On drop the qdisc is removed.
//!
//! Needs root (CAP_NET_ADMIN), `tc`, and a kernel with the HTB qdisc and u32 classifier; where
//! any of these is missing the constructors say why, for the test to skip.

use std::process::Command;

/// Handle of the root qdisc; fixed and unusual so a leftover of an aborted run is recognised.
const HANDLE: &str = "7e57:";
const CLASS: &str = "7e57:1";
/// Handle of the dropping FIFO under the class of [`PortFault::cut`].
const DROP_HANDLE: &str = "7e58:";

/// A fault on one loopback port, lifted on drop.
#[derive(Debug)]
pub struct PortFault {
    port: u16,
    throttled: bool,
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

impl PortFault {
    /// Limits traffic to and from `port` on `lo` to `kbit` kilobits per second.
    /// `Err` explains why the kernel or the host does not allow it.
    pub fn throttle(port: u16, kbit: u32) -> Result<PortFault, String> {
        let rate = format!("{kbit}kbit");
        Self::start(
            port,
            true,
            &["htb", "rate", &rate, "ceil", &rate, "burst", "1600"],
            None,
            &["dport", "sport"],
        )
    }

    /// Drops every packet sent from `port` on `lo`: nothing the broker sends arrives.
    /// `Err` explains why the kernel or the host does not allow it.
    pub fn cut(port: u16) -> Result<PortFault, String> {
        Self::start(
            port,
            false,
            &["htb", "rate", "10gbit", "ceil", "10gbit", "quantum", "60000"],
            Some(&["pfifo", "limit", "0"]),
            &["sport"],
        )
    }

    fn start(
        port: u16,
        throttled: bool,
        class: &[&str],
        leaf: Option<&[&str]>,
        directions: &[&str],
    ) -> Result<PortFault, String> {
        // A leftover of an aborted run of these faults has our handle; anything else on `lo`
        // belongs to someone else and is left alone (the add below then fails).
        let shown = Command::new("tc")
            .args(["qdisc", "show", "dev", "lo"])
            .output()
            .map_err(|e| format!("cannot run tc: {e}"))?;
        if String::from_utf8_lossy(&shown.stdout).contains(&format!("htb {HANDLE} root")) {
            tc(&["qdisc", "del", "dev", "lo", "root", "handle", HANDLE])?;
        }
        tc(&["qdisc", "add", "dev", "lo", "root", "handle", HANDLE, "htb"])?;
        let guard = PortFault { port, throttled };
        let mut args = vec!["class", "add", "dev", "lo", "parent", HANDLE, "classid", CLASS];
        args.extend_from_slice(class);
        tc(&args)?;
        if let Some(leaf) = leaf {
            let mut args = vec!["qdisc", "add", "dev", "lo", "parent", CLASS, "handle", DROP_HANDLE];
            args.extend_from_slice(leaf);
            tc(&args)?;
        }
        let port_s = port.to_string();
        for dir in directions {
            tc(&[
                "filter", "add", "dev", "lo", "parent", HANDLE, "protocol", "ip", "prio", "1", "u32", "match", "ip",
                dir, &port_s, "0xffff", "flowid", CLASS,
            ])?;
        }
        Ok(guard)
    }

    /// The port the fault is on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortFault {
    /// Lifts the fault. A throttle is lifted the way a congested link recovers: the rate goes
    /// up first, so the queued packets are delivered rather than dropped with the qdisc.
    fn drop(&mut self) {
        if self.throttled {
            let _ = tc(&[
                "class", "change", "dev", "lo", "parent", HANDLE, "classid", CLASS, "htb", "rate", "10gbit", "ceil",
                "10gbit",
            ]);
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if let Err(e) = tc(&["qdisc", "del", "dev", "lo", "root", "handle", HANDLE]) {
            eprintln!("kafka-harness: removing the fault on port {}: {e}", self.port);
        }
    }
}
