"""deploy/ for real: the image built from deploy/Dockerfile, the cluster of
deploy/compose.yaml started with podman-compose (scheduler + 2 executors in
containers, on their own network), queried from the host with `--cluster`;
then the Kubernetes manifests, rendered (`kubectl kustomize`), run as
containers the way a cluster would run them (no Kubernetes here: see
`KubeEmulation`).

Run by deploy/test-containers.sh, which builds the image and sets
FLOODSQL_IMAGE (and PODMAN_COMPOSE, CONTAINERS_CONF); skipped otherwise, with
that reason in pytest's summary. The tests run in file order: the last one
takes the cluster down and checks that nothing is left."""
import ipaddress
import json
import re
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import DT_RFC, REPO, free_port, make_scene, run, stderr_within

IMAGE = os.environ.get("FLOODSQL_IMAGE")
pytestmark = pytest.mark.skipif(
    not IMAGE, reason="container tests: run deploy/test-containers.sh (builds the image, sets FLOODSQL_IMAGE)")

COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
REPORT = os.environ.get("FLOODSQL_CONTAINER_REPORT")


def podman(*args, check=True, timeout=120):
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p


def report(**figures):
    """Figures for the closing summary of deploy/test-containers.sh."""
    if not REPORT:
        return
    path = Path(REPORT)
    data = json.loads(path.read_text() or "{}") if path.exists() else {}
    data.update(figures)
    path.write_text(json.dumps(data, indent=1))


def _get(url, timeout=2):
    return json.loads(urllib.request.urlopen(url, timeout=timeout).read())


class Compose:
    """deploy/compose.yaml as a podman-compose project of its own."""

    def __init__(self, data):
        self.project = f"floodsqltest{os.getpid()}"
        self.port = free_port()
        self.url = f"df://127.0.0.1:{self.port}"
        self.rest = f"http://127.0.0.1:{self.port}"
        # the scene at the same path inside the containers as on the host, so
        # that the items' local hrefs are valid for the executors
        self.env = dict(os.environ, FLOODSQL_IMAGE=IMAGE, FLOODSQL_PORT=str(self.port),
                        FLOODSQL_DATA=str(data), FLOODSQL_DATA_PATH=str(data))
        self.cmd = [os.environ.get("PODMAN_COMPOSE", "podman-compose"), "-p", self.project,
                    "-f", str(COMPOSE_FILE)]
        self.services = list(yaml.safe_load(COMPOSE_FILE.read_text())["services"])

    def compose(self, *args, check=True):
        p = subprocess.run([*self.cmd, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        return p

    def containers(self, all_states=False):
        """{service: container name} of this project."""
        p = podman("ps", *(["-a"] if all_states else []), "--filter",
                   f"label=io.podman.compose.project={self.project}",
                   "--format", '{{.Names}} {{index .Labels "io.podman.compose.service"}}')
        return {svc: name for name, svc in (ln.split() for ln in p.stdout.splitlines() if ln.strip())}

    def wait_healthy(self, timeout=120):
        """Runs each container's compose health check (`podman healthcheck
        run`: the check podman would schedule with systemd, which this machine
        lacks) until all pass; returns the seconds it took."""
        t0 = time.time()
        pending = set(self.services)
        while pending and time.time() - t0 < timeout:
            names = self.containers()
            for svc in sorted(pending):
                if svc in names and podman("healthcheck", "run", names[svc], check=False).returncode == 0:
                    pending.discard(svc)
            if pending:
                time.sleep(0.5)
        if pending:
            logs = {s: self.logs(s)[-1500:] for s in pending if s in self.containers()}
            raise AssertionError(f"not healthy within {timeout} s: {sorted(pending)}\n{logs}")
        return time.time() - t0

    def logs(self, service):
        names = self.containers(all_states=True)
        p = podman("logs", names[service], check=False)
        return p.stdout + p.stderr


@pytest.fixture(scope="module")
def scene():
    """The medium (tutorial-shaped) scene in a directory the containers'
    non-root user can read (pytest's temp dirs are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="floodsql-compose-"))
    d.chmod(0o755)
    s = make_scene(d / "medium", "--scale", "medium", "--acquisitions", "24")
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    allowed = os.environ.get("FLOODSQL_ALLOWED_PATHS", "")
    os.environ["FLOODSQL_ALLOWED_PATHS"] = f"{allowed},{d}" if allowed else str(d)
    yield s
    os.environ["FLOODSQL_ALLOWED_PATHS"] = allowed
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(scene):
    c = Compose(scene.path.parent)
    t0 = time.time()
    c.compose("up", "-d")
    try:
        healthy = c.wait_healthy()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if len(_get(c.rest + "/api/executors")) == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert len(_get(c.rest + "/api/executors")) == 2, c.logs("scheduler")[-2000:]
        report(seconds_to_healthy=round(time.time() - t0, 1), seconds_health_checks=round(healthy, 1))
        yield c
    finally:
        c.compose("down", "-t", "5", check=False)


def extent(scene, out, *extra):
    t0 = time.time()
    # bounded: a cluster that stalls (a lost task status) fails the test, never hangs CI
    r = run(["extent", "--stac-url", scene.items_file, "--bbox", scene.bbox, "--datetime", DT_RFC,
             "--out", out, *extra], timeout=600)
    return r, time.time() - t0


def test_image_runs_as_non_root_with_the_versioned_binary():
    version = run(["--version"]).stdout.split()[-1]
    p = podman("run", "--rm", IMAGE, "--version")
    assert p.stdout.split()[-1] == version, "the image holds another build than the host's"
    p = podman("run", "--rm", "--entrypoint", "id", IMAGE, "-u")
    assert p.stdout.strip() != "0"
    entry = json.loads(podman("image", "inspect", IMAGE).stdout)[0]["Config"]["Entrypoint"]
    assert entry == ["/usr/local/bin/floodsql"]


def test_query_through_the_compose_cluster_equals_the_local_run(cluster, scene, tmp_path):
    local, remote = tmp_path / "local.tif", tmp_path / "cluster.tif"
    lp, cp = tmp_path / "local.parquet", tmp_path / "cluster.parquet"
    _, t_local = extent(scene, local, "--parquet", lp)
    marks = {s: len(cluster.logs(s)) for s in ("executor-1", "executor-2")}
    r, t_cluster = extent(scene, remote, "--parquet", cp, "--cluster", cluster.url)
    assert local.read_bytes() == remote.read_bytes()
    import pyarrow.parquet as pq
    key = lambda r: (r["y_off"], r["x_off"])  # noqa: E731
    assert sorted(pq.read_table(lp).to_pylist(), key=key) == sorted(pq.read_table(cp).to_pylist(), key=key)
    # the scan ran in both executor containers
    for svc, mark in marks.items():
        text = cluster.logs(svc)[mark:]
        assert f"executor {svc}:50051: [TID " in text and "scan partition" in text, text[-2000:]
    report(query_seconds_local=round(t_local, 2), query_seconds_compose=round(t_cluster, 2))


def test_sql_through_the_compose_cluster_equals_the_local_run(cluster, scene):
    sql = ("SELECT count(*) AS rows, count(DISTINCT datetime) AS slices FROM flood_chunks("
           f"'{scene.items_file}', 'GFM', '{scene.bbox}', '{DT_RFC}', 'ensemble_flood_extent')")
    local = run(["sql", "-c", sql]).stdout
    remote = run(["sql", "-c", sql, "--cluster", cluster.url]).stdout
    assert local == remote and local.strip()


def tasks_done(cluster, before):
    """Successful tasks of the newest job not in `before` (0 while none)."""
    try:
        jobs = [j["job_id"] for j in _get(cluster.rest + "/api/jobs") if j["job_id"] not in before]
        if not jobs:
            return 0
        stages = _get(f"{cluster.rest}/api/job/{jobs[-1]}/stages")["stages"]
        return sum(1 for s in stages for t in s["tasks"] if t and t.get("status") == "Successful")
    except (OSError, KeyError, TypeError, ValueError):
        return 0


def test_losing_an_executor_container_mid_query(cluster, scene, tmp_path):
    """`podman kill` on one executor while the query runs: the result is the
    local one (Ballista re-runs the lost tasks on the other executor) or a
    clear error with nothing written."""
    local = tmp_path / "local.tif"
    extent(scene, local, "--chunk", "100")
    out = tmp_path / "cluster.tif"
    before = {j["job_id"] for j in _get(cluster.rest + "/api/jobs")}
    client = subprocess.Popen(
        [os.environ["FLOODSQL_BIN"], "--quiet", "extent", "--stac-url", str(scene.items_file), "--bbox",
         scene.bbox, "--datetime", DT_RFC, "--out", str(out), "--chunk", "100", "--partitions", "64",
         "--cluster", cluster.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = cluster.containers()["executor-2"]
    deadline = time.time() + 60
    killed = False
    while time.time() < deadline and client.poll() is None:
        if tasks_done(cluster, before) >= 8 and client.poll() is None:
            podman("kill", victim)
            killed = True
            break
        time.sleep(0.05)
    t_kill = time.time()
    err = stderr_within(client, 120, "an executor container was killed")
    print(f"killed: {killed}; client ended {time.time() - t_kill:.1f} s after, exit {client.returncode}: "
          f"{err.strip()[-300:]}")
    assert killed, "the query ended before an executor could be lost"
    if client.returncode == 0:
        assert out.read_bytes() == local.read_bytes()
    else:
        assert "error:" in err and not out.exists(), err
    assert not list(tmp_path.glob(".*.tmp*"))
    report(executor_loss=f"exit {client.returncode} {time.time() - t_kill:.1f} s after the kill")


def test_compose_down_leaves_nothing_running(cluster):
    assert cluster.containers(), "the project's containers are not there to take down"
    cluster.compose("down", "-t", "5")
    assert cluster.containers(all_states=True) == {}
    nets = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [n for n in nets if n.startswith(cluster.project)], nets
    with pytest.raises(OSError):
        urllib.request.urlopen(cluster.rest + "/healthz", timeout=2)


# --- Kubernetes: the rendered manifests, run as containers -----------------

def rendered_manifests():
    """`kubectl kustomize deploy/k8s`; without kubectl, the equivalent for a
    kustomization that only lists resources (refused otherwise)."""
    k8s = REPO / "deploy" / "k8s"
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(k8s)], capture_output=True, text=True, check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d], "kubectl kustomize"
    kust = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    assert set(kust) <= {"apiVersion", "kind", "resources"}, "kustomization needs kubectl to render"
    docs = [d for r in kust["resources"] for d in yaml.safe_load_all((k8s / r).read_text()) if d]
    return docs, "resources concatenated (no kubectl)"


def expand(args, env):
    """Kubernetes' $(VAR) expansion of container args."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), a) for a in args]


class KubeEmulation:
    """The rendered Deployments run with podman as Kubernetes would run them:
    each replica a container with the manifest's args (after $(VAR)
    expansion), env (`status.podIP` = the container's fixed IP), memory limit
    and volumes (`emptyDir` = tmpfs); each Service a network alias of its
    pods; readiness probes run in the containers until they pass; the client
    reaches the scheduler Service through a published port (what `kubectl
    port-forward` gives). Added for the test: the scene, mounted read-only
    at its host path (as a hostPath volume would; real deployments read
    http(s) COGs). Not emulated: scheduling, restarts, CPU requests."""

    def __init__(self, docs, image, data):
        self.data = data
        self.tag = f"floodsqltest{os.getpid()}k8s"
        self.port = free_port()
        self.url = f"df://127.0.0.1:{self.port}"
        self.rest = f"http://127.0.0.1:{self.port}"
        self.image = image
        self.containers = []
        self.service_ips = {}
        net = ipaddress.ip_network(f"10.{90 + os.getpid() % 100}.{os.getpid() % 250}.0/24")
        self.ips = (str(h) for h in list(net.hosts())[9:])
        self.net = self.tag
        podman("network", "create", "--subnet", str(net), self.net)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        self.services = by_kind.get("Service", [])
        self.deployments = by_kind["Deployment"]
        # the scheduler first, as its Service name must resolve for executors
        for dep in sorted(self.deployments, key=lambda d: "scheduler" not in d["metadata"]["name"]):
            for i in range(dep["spec"].get("replicas", 1)):
                self.run_pod(dep, i)

    def aliases(self, labels):
        return [s["metadata"]["name"] for s in self.services
                if s["spec"]["selector"].items() <= labels.items()]

    def run_pod(self, dep, i):
        tpl = dep["spec"]["template"]
        labels = tpl["metadata"]["labels"]
        (c,) = tpl["spec"]["containers"]
        ip = next(self.ips)
        env = {}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
                env[e["name"]] = ip
            else:
                raise AssertionError(f"env {e} not emulated")
        name = f"{self.tag}-{dep['metadata']['name']}-{i}"
        opts = ["--name", name, "--network", self.net, "--ip", ip]
        for a in self.aliases(labels):
            opts += ["--network-alias", a]
            self.service_ips.setdefault(a, ip)
        # Services already running resolve through /etc/hosts as well, as a
        # ClusterIP's DNS record would: podman's DNS (aardvark) here sometimes
        # fails a lookup, and an executor that cannot resolve the scheduler
        # loses a task-status report (Ballista does not resend it: the job
        # then never ends). Seen twice in CI; the Service name stays the one
        # the manifests use.
        for a, a_ip in self.service_ips.items():
            if a_ip != ip:
                opts += ["--add-host", f"{a}:{a_ip}"]
        if "scheduler" in dep["metadata"]["name"]:
            opts += ["-p", f"{self.port}:{c['ports'][0]['containerPort']}"]
        for k, v in env.items():
            opts += ["-e", f"{k}={v}"]
        mem = c.get("resources", {}).get("limits", {}).get("memory")
        if mem:
            opts += ["--memory", mem.replace("Gi", "g").replace("Mi", "m")]
        vols = {v["name"]: v for v in tpl["spec"].get("volumes", [])}
        for m in c.get("volumeMounts", []):
            assert "emptyDir" in vols[m["name"]], f"volume {m['name']} not emulated"
            opts += ["--mount", f"type=tmpfs,destination={m['mountPath']},tmpfs-mode=1777"]
        opts += ["-v", f"{self.data}:{self.data}:ro"]
        podman("run", "-d", *opts, self.image, *expand(c["args"], env))
        self.containers.append((name, c))

    def probe(self, name, c):
        p = c["readinessProbe"]
        if "httpGet" in p:
            cmd = ["curl", "-fsS", f"http://127.0.0.1:{p['httpGet']['port']}{p['httpGet']['path']}"]
        else:
            cmd = ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{p['tcpSocket']['port']}"]
        return podman("exec", name, *cmd, check=False).returncode == 0

    def wait_ready(self, timeout=120):
        t0 = time.time()
        pending = list(self.containers)
        while pending and time.time() - t0 < timeout:
            pending = [(n, c) for n, c in pending if not self.probe(n, c)]
            if pending:
                time.sleep(0.5)
        assert not pending, f"not ready within {timeout} s: {[n for n, _ in pending]}: " + \
            " | ".join(self.logs(n)[-800:] for n, _ in pending)
        return time.time() - t0

    def logs(self, name):
        p = podman("logs", name, check=False)
        return p.stdout + p.stderr

    def stop(self):
        for name, _ in self.containers:
            podman("rm", "-f", "-t", "2", name, check=False)
        podman("network", "rm", "-f", self.net, check=False)


@pytest.fixture(scope="module")
def kube(scene):
    docs, how = rendered_manifests()
    print(f"manifests rendered by {how}")
    k = KubeEmulation(docs, IMAGE, scene.path.parent)
    try:
        k.wait_ready()
        yield k
    finally:
        k.stop()


def test_kubernetes_manifests_use_the_image_entrypoint():
    docs, _ = rendered_manifests()
    entry = json.loads(podman("image", "inspect", IMAGE).stdout)[0]["Config"]["Entrypoint"]
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            # args only: the image's entrypoint (floodsql) runs them
            assert "command" not in c and c["args"][0] in ("scheduler", "executor"), c
            assert c["image"].split(":")[0].endswith("floodsql")
    assert entry == ["/usr/local/bin/floodsql"]


def test_kubernetes_pods_answer_through_the_scheduler_service(kube, scene, tmp_path):
    """Executors registered under their pod IPs through the Service name; the
    client, outside the pod network, gets the local run's bytes through the
    scheduler's port (the embedded Flight proxy)."""
    execs = _get(kube.rest + "/api/executors")
    names = [n for n, _ in kube.containers if "executor" in n]
    assert len(execs) == len(names) == 2, execs
    for e in execs:
        ipaddress.ip_address(e["host"])          # advertised by pod IP, as $(POD_IP) says
    local, remote = tmp_path / "local.tif", tmp_path / "k8s.tif"
    extent(scene, local)
    extent(scene, remote, "--cluster", kube.url)
    assert local.read_bytes() == remote.read_bytes()
    for name, _ in kube.containers:
        if "executor" in name:
            assert "scan partition" in kube.logs(name), f"{name} ran no scan task"
