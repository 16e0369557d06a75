"""The chart against the binaries' CLIs, as their --help prints them (not their Rust source):
every env var the chart sets on the operator is one `transit-operator run` reads, and the
NetworkPolicy's sidecar admin port is the port `transit-sidecar run` listens on."""

from __future__ import annotations

from . import binaries
from .common import require
from .manifests import container_env, operator_env_vars
from .render import Rendered


def check_cli(rendered: list[Rendered]) -> None:
    require(rendered, "no rendered chart")
    operator_env = binaries.env_vars(binaries.run("transit-operator", "run", "--help"))
    require(operator_env, "`transit-operator run --help` lists no `[env: NAME=]`")
    documented = set(operator_env_vars())
    require(documented <= operator_env,
            f"docs/architecture.md lists {sorted(documented - operator_env)}, which "
            f"`transit-operator run --help` does not")
    # The operator starts the sidecar with no SIDECAR_ADMIN_ADDR, so its default is the port.
    admin_addr = binaries.option_default(binaries.run("transit-sidecar", "run", "--help"),
                                         "--admin-addr")
    admin_port = int(admin_addr.rsplit(":", 1)[1])
    for r in rendered:
        c = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        extra = {e["name"] for e in r.effective.get("extraEnv") or []}
        unknown_env = sorted(set(container_env(c)) - operator_env - extra)
        require(not unknown_env, f"[{r.name}] the chart sets {unknown_env}, which "
                                 f"`transit-operator run` does not read (--help)")
        chart_port = r.effective["networkPolicy"]["sidecarAdminPort"]
        require(chart_port == admin_port,
                f"[{r.name}] networkPolicy.sidecarAdminPort {chart_port} != the port "
                f"`transit-sidecar run` listens on by default ({admin_addr})")
