//! The node's network, built so that nothing can leave the machine:
//!
//! - a bridge with the node's address (the node IP; the API server listens there too) and no
//!   uplink; pods get addresses on it from host-local IPAM and no default route, only the pod
//!   subnet and the Service range via the bridge address; no masquerade;
//! - forwarding on the bridge only (the CNI bridge plugin's `isGateway` would turn on the
//!   global `ip_forward`), and a FORWARD rule dropping anything that enters from or leaves to
//!   another interface;
//! - the Service range routed into the bridge, so a Service address kube-proxy did not
//!   translate can never follow the host's default route;
//! - the API server's and the kubelet's ports reachable only from `lo` and the bridge.
//!
//! Every change is undone by `teardown.sh`: the sysctls touched here or by the kubelet are
//! saved first.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::Error;
use crate::node::guard::write;

pub(crate) const BRIDGE: &str = "swnode0";
pub(crate) const NODE_IP: &str = "10.244.0.1";
pub(crate) const POD_SUBNET: &str = "10.244.0.0/24";
pub(crate) const SERVICE_RANGE: &str = "10.96.0.0/16";
const FORWARD_CHAIN: &str = "STALLWATCH-NODE-FWD";
const INPUT_CHAIN: &str = "STALLWATCH-NODE-IN";
/// The kubelet's port: only the API server (on this machine) calls it.
pub(crate) const KUBELET_PORT: u16 = 10250;

/// Sysctls the node or the kubelet changes (the kubelet sets the kernel/vm ones on start).
const SYSCTLS: [&str; 9] = [
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];

/// Runs a command, its stderr in the error.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    if !out.status.success() {
        return Err(Error::Start(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn set_sysctl(key: &str, value: &str) -> Result<(), Error> {
    std::fs::write(sysctl_path(key), value)
        .map_err(|e| Error::io(format!("setting {key}={value}"), e))
}

/// Saves the sysctls, then builds the bridge, the routes and the iptables guards.
pub(crate) fn setup(dir: &Path) -> Result<(), Error> {
    let saved: Vec<String> = SYSCTLS
        .iter()
        .filter_map(|k| {
            let v = std::fs::read_to_string(sysctl_path(k)).ok()?;
            Some(format!("{k}={}", v.trim()))
        })
        .collect();
    write(&dir.join("sysctls.saved"), &(saved.join("\n") + "\n"))?;
    write(&dir.join("pod-subnet-prefix"), "10.244.0.")?;

    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE],
    )?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    set_sysctl(&format!("net.ipv4.conf.{BRIDGE}.forwarding"), "1")?;
    // Service replies between two pods of the one bridge must pass iptables (conntrack).
    set_sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
    run(
        "ip",
        &["route", "add", SERVICE_RANGE, "dev", BRIDGE, "src", NODE_IP],
    )?;

    run("iptables", &["-N", FORWARD_CHAIN])?;
    run(
        "iptables",
        &[
            "-A",
            FORWARD_CHAIN,
            "-i",
            BRIDGE,
            "-o",
            BRIDGE,
            "-j",
            "RETURN",
        ],
    )?;
    run("iptables", &["-A", FORWARD_CHAIN, "-j", "DROP"])?;
    run("iptables", &["-I", "FORWARD", "1", "-j", FORWARD_CHAIN])?;
    run("iptables", &["-N", INPUT_CHAIN])?;
    run("iptables", &["-I", "INPUT", "1", "-j", INPUT_CHAIN])?;
    guard_port(KUBELET_PORT)
}

/// Lets only `lo` and the bridge reach `port` on this machine.
pub(crate) fn guard_port(port: u16) -> Result<(), Error> {
    let port = port.to_string();
    for iface in ["lo", BRIDGE] {
        run(
            "iptables",
            &[
                "-A",
                INPUT_CHAIN,
                "-p",
                "tcp",
                "--dport",
                &port,
                "-i",
                iface,
                "-j",
                "RETURN",
            ],
        )?;
    }
    run(
        "iptables",
        &[
            "-A",
            INPUT_CHAIN,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "DROP",
        ],
    )?;
    Ok(())
}

/// The CNI configuration: the bridge plugin without gateway or masquerade, host-local IPAM
/// with the Service range as the only extra route, its state in the node's directory.
pub(crate) fn cni_config(dir: &Path) -> Result<(), Error> {
    let conf_dir = dir.join("cni/net.d");
    std::fs::create_dir_all(&conf_dir).map_err(|e| Error::io("creating cni/net.d", e))?;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "stallwatch-node",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": false,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{
                    "subnet": POD_SUBNET,
                    "rangeStart": "10.244.0.10",
                    "rangeEnd": "10.244.0.250",
                    "gateway": NODE_IP,
                }]],
                "routes": [{"dst": SERVICE_RANGE, "gw": NODE_IP}],
                "dataDir": dir.join("cni/ipam"),
            },
        }],
    });
    write(
        &conf_dir.join("10-stallwatch.conflist"),
        &serde_json::to_string_pretty(&conf).expect("JSON"),
    )
}
