"""Static checks of deploy/: no registry or Kubernetes here, so the files are
checked against the CLI they drive (flags accepted, ports consistent)."""
import re
import subprocess

import pytest
import yaml
from conftest import REPO, floodsql_bin

DEPLOY = REPO / "deploy"


def help_flags(role):
    out = subprocess.run([floodsql_bin(), role, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


def flags(args):
    return {a.split("=")[0] for a in args if a.startswith("--")}


def flag_value(args, name):
    for a in args:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def k8s_docs():
    docs = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def test_compose_runs_a_scheduler_and_two_healthy_executors():
    c = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    svcs = c["services"]
    sched = svcs["scheduler"]
    assert sched["command"][0] == "scheduler"
    assert flags(sched["command"]) <= help_flags("scheduler")
    sport = port_of(flag_value(sched["command"], "--bind"))
    assert [str(p).rsplit(":", 1)[1] for p in sched["ports"]] == [str(sport)]
    assert "--flight-proxy" in sched["command"]       # clients outside the network
    assert any("/healthz" in str(t) and str(sport) in str(t) for t in sched["healthcheck"]["test"])
    execs = {k: v for k, v in svcs.items() if k.startswith("executor")}
    assert len(execs) == 2
    for name, e in execs.items():
        cmd = e["command"]
        assert cmd[0] == "executor" and flags(cmd) <= help_flags("executor"), name
        assert flag_value(cmd, "--scheduler") == f"scheduler:{sport}"
        assert flag_value(cmd, "--external-host") == name
        fport = port_of(flag_value(cmd, "--bind"))
        assert int(flag_value(cmd, "--grpc-port")) != fport
        assert str(fport) in " ".join(e["healthcheck"]["test"])
        assert e["depends_on"]["scheduler"]["condition"] == "service_healthy"


def test_dockerfile_is_multistage_with_gdal_runtime_and_the_cli_ports():
    d = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", d, re.M)
    assert len(froms) >= 2 and froms[0][1] == "build"
    assert "libgdal-dev" in d and "libgdal32" in d and "gdal-data" in d
    assert "cargo build --release --locked" in d
    # the binary: built in the image (default) or a host-built one; bases are arguments
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", d, re.M))
    assert args["BINARY"] == "build" and "prebuilt) install" in d
    assert args["RUST_IMAGE"].endswith("rust:1.95-bookworm")
    assert args["RUNTIME_IMAGE"].endswith("debian:bookworm-slim")
    assert "COPY --from=build" in d and re.search(r"^RUN floodsql --version", d, re.M)
    assert re.search(r"^USER (?!root)\w+", d, re.M)
    assert re.search(r"^ENTRYPOINT \[\"/usr/local/bin/floodsql\"\]", d, re.M)
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.*)$", d, re.M) for p in line.split()}
    assert {50050, 50051, 50052} <= exposed
    # every path the build copies exists
    for src in re.findall(r"^COPY (?!--)(.+) \S+$", d, re.M):
        for p in src.split():
            # deploy/prebuilt/: put there by deploy/test-containers.sh
            assert (REPO / p).exists() or p.startswith("deploy/prebuilt/"), p


def test_kubernetes_manifests_match_the_cli():
    docs = k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "floodsql-scheduler") in kinds
    assert ("Service", "floodsql-scheduler") in kinds
    assert ("Deployment", "floodsql-executor") in kinds
    for d in docs:
        assert d["apiVersion"] and d["kind"] and d["metadata"]["name"]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    sched = by[("Deployment", "floodsql-scheduler")]["spec"]
    assert sched["selector"]["matchLabels"].items() <= sched["template"]["metadata"]["labels"].items()
    c = sched["template"]["spec"]["containers"][0]
    assert c["args"][0] == "scheduler" and flags(c["args"]) <= help_flags("scheduler")
    assert "--flight-proxy" in c["args"]       # the client behind a port-forward
    sport = port_of(flag_value(c["args"], "--bind"))
    assert [p["containerPort"] for p in c["ports"]] == [sport]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": sport}
    svc = by[("Service", "floodsql-scheduler")]["spec"]
    assert svc["selector"].items() <= sched["template"]["metadata"]["labels"].items()
    assert svc["ports"][0]["targetPort"] == sport
    ex = by[("Deployment", "floodsql-executor")]["spec"]
    assert isinstance(ex["replicas"], int) and ex["replicas"] >= 2
    assert ex["selector"]["matchLabels"].items() <= ex["template"]["metadata"]["labels"].items()
    c = ex["template"]["spec"]["containers"][0]
    assert c["args"][0] == "executor" and flags(c["args"]) <= help_flags("executor")
    assert flag_value(c["args"], "--scheduler") == f"floodsql-scheduler:{svc['ports'][0]['port']}"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["flight"] == port_of(flag_value(c["args"], "--bind"))
    assert ports["grpc"] == int(flag_value(c["args"], "--grpc-port"))
    assert c["readinessProbe"]["tcpSocket"]["port"] == ports["flight"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert flag_value(c["args"], "--work-dir") in mounts
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for r in kust["resources"]:
        assert (DEPLOY / "k8s" / r).exists()


@pytest.mark.parametrize("role,args,needle", [
    ("executor", ["--scheduler", "nohostport"], "invalid scheduler address"),
    ("executor", ["--scheduler", "127.0.0.1:1", "--memory-limit", "lots"], "invalid memory limit"),
    ("executor", ["--scheduler", "127.0.0.1:1", "--bind", "127.0.0.1:5", "--grpc-port", "5"], "two ports"),
    ("scheduler", ["--bind", "nonsense"], "invalid value"),
])
def test_roles_refuse_bad_arguments(role, args, needle):
    p = subprocess.run([floodsql_bin(), role, *args], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and needle in p.stderr, p.stderr
