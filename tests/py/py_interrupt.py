"""A SIGINT sent to this process by a timer thread while
floodsql.max_flood_extent(...).write() runs (the medium scene, small chunks:
long enough): what happened, as a JSON line.

usage: py_interrupt.py API_URL BBOX DATETIME OUT_DIR [df://CLUSTER REST_URL]
(on a cluster the signal comes once the job runs on the scheduler)
"""
import json
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import floodsql

# Python turns SIGINT into KeyboardInterrupt only if the signal was not
# ignored when it started, and a process started in the background by a
# non-interactive shell (`cmd &`, as CI runners may start the suite) inherits
# it ignored: Ctrl-C's handler is installed here, as in a terminal
signal.signal(signal.SIGINT, signal.default_int_handler)

api, bbox, dt, out = sys.argv[1:5]
cluster, rest = (sys.argv[5:7] + [None, None])[:2]
out = Path(out)
out.mkdir(parents=True, exist_ok=True)
con = floodsql.connect(cluster, partitions=32 if cluster else None)
r = con.sql(floodsql._SQL["max_flood_extent"],
            # smaller chunks on a cluster: its job must outlast the wait
            # below for a Running job (each time the reads got faster, the
            # job sometimes completed before the signal: 200 px, then 100 px
            # and 50 px once reads ran on their own runtime)
            floodsql._scan_params(api, bbox, dt, "GFM", "ensemble_flood_extent", 25 if cluster else 200),
            progress=False)


def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


sent = {}


def jobs():
    import urllib.request
    return json.loads(urllib.request.urlopen(rest + "/api/jobs", timeout=2).read())


before = {j["job_id"] for j in jobs()} if rest else set()


def interrupt():
    if rest:
        # once the job runs on the cluster
        deadline = time.time() + 60
        while time.time() < deadline and not [j for j in jobs()
                                              if j["job_id"] not in before and j["status"] == "Running"]:
            time.sleep(0.05)
        time.sleep(0.2)
    else:
        # once the scan has read pixels (a file is being staged) or after 2 s
        deadline = time.time() + 2
        while time.time() < deadline and not any(out.iterdir()):
            time.sleep(0.01)
        time.sleep(0.3)
    sent["at"] = time.time()
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt, daemon=True).start()
raised = None
try:
    r.write(tif=out / "extent.tif", png=out / "extent.png")
except KeyboardInterrupt:
    raised = "KeyboardInterrupt"
returned = time.time()
c0 = cpu()
time.sleep(1.0)
after = cpu() - c0
new_jobs = [j for j in jobs() if j["job_id"] not in before] if rest else []
if rest:
    # the scheduler settles the cancelled job
    deadline = time.time() + 30
    while time.time() < deadline and any(j["status"] in ("Queued", "Running") for j in new_jobs):
        time.sleep(0.2)
        new_jobs = [j for j in jobs() if j["job_id"] not in before]
print(json.dumps({
    "raised": raised,
    "cluster_jobs": [j["status"] for j in new_jobs],
    "seconds_to_raise": returned - sent.get("at", returned),
    "files_left": sorted(p.name for p in out.iterdir()),
    "cpu_seconds_after": round(after, 3),
}))
