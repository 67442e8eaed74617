//! The real binary on bad input: a clear message, a non-zero exit, no output.

use assert_cmd::Command;
use predicates::prelude::*;

use crate::common::tiny_scene;

fn floodsql() -> Command {
    let mut c = Command::cargo_bin("floodsql").unwrap();
    c.arg("--quiet");
    c
}

fn extent_fails(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.tif");
    let scene = tiny_scene();
    let items = scene.dir.join("items.json");
    let mut base: Vec<String> = vec!["extent".into(), "--out".into(), out.display().to_string()];
    if !args.contains(&"--stac-url") {
        base.extend(["--stac-url".into(), items.display().to_string()]);
    }
    if !args.contains(&"--bbox") {
        base.extend(["--bbox".into(), scene.bbox.clone()]);
    }
    base.extend(args.iter().map(|s| s.to_string()));
    floodsql()
        .args(&base)
        .assert()
        .failure()
        .stderr(predicate::str::contains(needle))
        .stderr(predicate::str::contains("panicked").not());
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temp files left"
    );
}

#[test]
fn malformed_bbox() {
    extent_fails(&["--bbox", "1,2,3"], "invalid bbox '1,2,3'");
    extent_fails(&["--bbox", "10,0,5,1"], "MINX must be < MAXX");
    extent_fails(&["--bbox", "0,0,200,1"], "longitudes");
}

#[test]
fn an_output_named_for_another_format() {
    // refused before the query runs: nothing is written, not even q.tif
    extent_fails(
        &["--png", "q.tif"],
        "--png writes a PNG picture, not a .tif file (name it .png)",
    );
    extent_fails(
        &["--parquet", "q.png"],
        "--parquet writes Parquet, not a .png",
    );
    assert!(!std::path::Path::new("q.tif").exists());
}

#[test]
fn every_command_refuses_an_output_named_for_another_format() {
    // series, zonal and polygons check their outputs' names as extent does,
    // before any work: exit 1, one line naming the flag, nothing written
    let scene = tiny_scene();
    let items = scene.dir.join("items.json").display().to_string();
    let regions = scene.dir.join("regions.geojson").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let scan = ["--stac-url", &items, "--bbox", &scene.bbox];
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            [&["series"][..], &scan, &["--png", &at("s.csv")]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--png writes a PNG picture, not a .csv file (name it .png)",
        ),
        (
            [&["series"][..], &scan, &["--csv", &at("s.parquet")]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--csv writes CSV, not a .parquet file (name it .csv)",
        ),
        (
            [
                &["zonal"][..],
                &scan,
                &["--regions", &regions, "--parquet", &at("z.csv")],
            ]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "--parquet writes Parquet, not a .csv file (name it .parquet)",
        ),
        (
            ["polygons", &at("r.tif"), "--geojson", &at("p.parquet")]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--geojson writes GeoJSON, not a .parquet file (name it .geojson)",
        ),
    ];
    for (args, needle) in cases {
        floodsql()
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(needle))
            .stderr(predicate::str::contains("panicked").not());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?}"
        );
    }
}

#[test]
fn malformed_datetime() {
    extent_fails(
        &["--datetime", "last tuesday"],
        "invalid datetime 'last tuesday'",
    );
    extent_fails(
        &["--datetime", "2022-10-01/2022-09-01"],
        "start is after end",
    );
}

#[test]
fn unknown_asset() {
    extent_fails(
        &["--asset", "nope"],
        "no item of the search has asset 'nope'",
    );
}

#[test]
fn missing_catalogue_and_bad_url() {
    extent_fails(&["--stac-url", "/nonexistent/items.json"], "no such file");
    extent_fails(&["--stac-url", "http://127.0.0.1:9/"], "127.0.0.1:9");
}

#[test]
fn no_items() {
    extent_fails(
        &["--datetime", "2001-01-01/2001-02-01"],
        "no STAC items found",
    );
}

#[test]
fn bad_chunk_size() {
    extent_fails(&["--chunk", "3"], "invalid chunk size '3': must be within");
}

#[test]
fn bad_sql() {
    floodsql()
        .args(["sql", "-c", "SELEC 1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("SQL syntax error"));
    floodsql()
        .args(["sql", "-c", "SELECT * FROM no_such_table"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no_such_table"));
    floodsql()
        .args(["sql", "-c", "SELECT * FROM flood_chunks('x')"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("argument 3 (bbox) is required"));
}

#[test]
fn missing_output_directory() {
    let scene = tiny_scene();
    floodsql()
        .args([
            "extent",
            "--stac-url",
            &scene.dir.join("items.json").display().to_string(),
            "--bbox",
            &scene.bbox,
            "--out",
            "/nonexistent-dir/x.tif",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "invalid output directory '/nonexistent-dir': does not exist",
        ));
}

#[test]
fn print_sql_shows_the_canonical_query() {
    let scene = tiny_scene();
    let dir = tempfile::tempdir().unwrap();
    floodsql()
        .args([
            "extent",
            "--stac-url",
            &scene.dir.join("items.json").display().to_string(),
            "--bbox",
            &scene.bbox,
            "--out",
            &dir.path().join("x.tif").display().to_string(),
            "--print-sql",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("flood_max_extent(pixels)"))
        .stdout(predicate::str::contains("FROM flood_chunks('"));
}
