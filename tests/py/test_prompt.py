"""The interactive prompt, driven through a pseudo-terminal (pexpect) as a
user types: banner, help, \\df from the functions' own documentation,
Ctrl-C cancelling a running query while the session lives on, \\timing,
\\d, \\out rasterising the next result, Tab completion, history across runs."""
import os

import pexpect
import rasterio
from conftest import extent, floodsql_bin

PROMPT = "floodsql> "


def spawn(tmp_path, *args):
    env = dict(os.environ, FLOODSQL_HISTORY=str(tmp_path / "history"), TERM="xterm")
    return pexpect.spawn(floodsql_bin(), ["sql", *args], env=env, encoding="utf-8", timeout=60,
                         dimensions=(50, 250))


def run(p, line, expect):
    p.sendline(line)
    p.expect(expect)
    p.expect(PROMPT)


def test_a_session_at_the_prompt(tiny, tmp_path):
    p = spawn(tmp_path)
    p.expect(r"\\\? for help")
    p.expect(PROMPT)
    run(p, "\\?", r"\\df\s+floodsql's functions")
    run(p, "\\df", "The maximum flood extent")
    run(p, "SELECT 1 + 1 AS two;", r"\| 2 +\|")
    # Ctrl-C cancels a long query; the session and its state live on
    p.sendline("CREATE VIEW answer AS SELECT 42 AS a;")
    p.expect(PROMPT)
    p.sendline("SELECT count(*) FROM generate_series(1, 100000000000);")
    import time
    time.sleep(1.5)
    p.sendintr()
    p.expect("interrupted by SIGINT")
    p.expect(PROMPT)
    assert p.isalive()
    run(p, "SELECT a FROM answer;", r"\| 42 \|")
    run(p, "\\timing", "Timing is on")
    run(p, "SELECT 7;", r"Elapsed \d+\.\d{3} s")
    # no traps: an empty line is nothing (the next prompt is floodsql>, not
    # a continuation), and a backslash command mid-statement runs (the
    # unfinished statement dropped, and said so)
    p.sendline("")
    p.expect(PROMPT)
    p.sendline("SELECT 1")
    p.expect(r"\.\.\.> ")
    run(p, "\\d", r"unfinished statement of 1 line\(s\) was dropped[\s\S]*answer\s+\| VIEW")
    run(p, "\\d answer", r"a\s+\| Int64")
    run(p, "\\nope", r"unknown command \\nope")
    # \out: the next result becomes a COG, equal to `floodsql extent`'s
    out = tmp_path / "prompt.tif"
    run(p, f"\\out {out}", "the next query's result goes to")
    sql = (open(os.path.join(os.path.dirname(__file__), "..", "..", "sql", "max_flood_extent.sql")).read()
           .replace("${source}", f"'{tiny.items_file}'").replace("${collection}", "'GFM'")
           .replace("${bbox}", f"'{tiny.bbox}'")
           .replace("${datetime}", "'2022-09-01T00:00:00Z/2022-10-01T00:00:00Z'")
           .replace("${asset}", "'ensemble_flood_extent'").replace("${chunk}", "1000"))
    sql = " ".join(l for l in sql.splitlines() if not l.startswith("--")) + ";"
    run(p, sql, "flooded pixels")
    ref = tmp_path / "ref.tif"
    extent(tiny.items_file, tiny.bbox, ref)
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        assert (a.read(1) == b.read(1)).all() and a.transform == b.transform
    # Tab completes functions
    p.send("SELECT flood_ma\t")
    p.expect("flood_max_extent")
    p.sendcontrol("c")  # clears the line
    p.expect(PROMPT)
    p.sendline("\\q")
    p.expect(pexpect.EOF)
    p.close()
    assert p.exitstatus == 0
    # history kept across runs
    hist = (tmp_path / "history").read_text()
    assert "SELECT a FROM answer;" in hist, hist
    p = spawn(tmp_path)
    p.expect(PROMPT)
    p.send("\x1b[A\x1b[A")  # up twice: past \q to the \out query
    p.expect("GROUP BY")
    p.sendcontrol("c")
    p.expect(PROMPT)
    p.sendcontrol("d")
    p.expect(pexpect.EOF)


def test_the_prompt_explains_itself(tmp_path):
    """\\d lists the three table functions from the start and \\d NAME
    describes each; \\df fits the terminal, one line per function, and
    \\df NAME gives the whole documentation with its example; \\? offers
    starter queries; a misspelt command gets "did you mean"; Ctrl-C then
    Enter gives a fresh prompt, not a continuation."""
    env = dict(os.environ, FLOODSQL_HISTORY=str(tmp_path / "history"), TERM="xterm")
    p = pexpect.spawn(floodsql_bin(), ["sql"], env=env, encoding="utf-8", timeout=60, dimensions=(50, 100))
    p.expect(PROMPT)
    p.sendline("\\d")
    p.expect(PROMPT)
    listed = p.before
    for f in ("stac_items", "flood_chunks", "regions"):
        assert f in listed, listed
    run(p, "\\d stac_items", r"columns:[\s\S]*properties\s+Utf8")
    run(p, "\\d flood_chunks", r"pixels\s+LargeBinary[\s\S]*example:")
    p.sendline("\\df")
    p.expect(r"\\df NAME shows")
    p.expect(PROMPT)
    lines = [ln for ln in p.before.splitlines() if ln.strip()]
    table = [ln for ln in listed.splitlines() + lines if ln.startswith(("|", "+"))]
    assert table and all(len(ln) <= 100 for ln in table), max(table, key=len)
    run(p, "\\df flood_max_extent", r"flood_max_extent \(aggregate function\)[\s\S]*arguments:")
    run(p, "\\df flood_max_extnt", r"did you mean flood_max_extent\?")
    run(p, "\\dff", r"unknown command \\dff: did you mean \\df\?")
    run(p, "\\?", r"stac_items\('floodsql-demo/catalog/items.json'")
    # Ctrl-C on a running query, then Enter: a fresh prompt
    p.sendline("SELECT count(*) FROM generate_series(1, 100000000000);")
    import time
    time.sleep(1.5)
    p.sendintr()
    p.expect("interrupted by SIGINT: the query was cancelled")
    p.expect(PROMPT)
    p.sendline("")
    p.expect(PROMPT)
    p.sendline("\\q")
    p.expect(pexpect.EOF)
