//! Errors a library caller can inspect: floodsql's errors cross DataFusion
//! with their type (`DataFusionError::External`), so a program embedding
//! floodsql tells a refused href from a timeout from a bad bbox by kind,
//! not by reading messages.

use datafusion::error::DataFusionError;
use floodsql::error::{Error, ErrorKind};

use crate::common::tiny_scene;

/// Runs `sql` (statements separated by `;`) in a fresh local session; the
/// error of the first statement that fails.
async fn fails(sql: &str) -> DataFusionError {
    let ctx = floodsql::session::new_context(Some(2)).unwrap();
    for stmt in sql.split(';').filter(|s| !s.trim().is_empty()) {
        let r = async { ctx.sql(stmt).await?.collect().await }.await;
        if let Err(e) = r {
            return e;
        }
    }
    panic!("no statement failed: {sql}");
}

#[tokio::test]
async fn a_refused_href_is_a_refusal_naming_its_location() {
    // the tiny scene's catalogue with one asset moved to a host nobody allowed
    let scene = tiny_scene();
    let text = std::fs::read_to_string(scene.dir.join("items.json")).unwrap();
    let mut fc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let href = &mut fc["features"][0]["assets"]["ensemble_flood_extent"]["href"];
    *href = "https://evil.example/steal.tif".into();
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.json");
    std::fs::write(&items, fc.to_string()).unwrap();
    // the scene's own COGs are allowed (they are not below this catalogue)
    let e = fails(&format!(
        "SET floodsql.allowed_paths = '{}'; \
         SELECT count(*) FROM flood_chunks('{}', 'GFM', '{}', NULL, 'ensemble_flood_extent')",
        scene.dir.display(),
        items.display(),
        scene.bbox
    ))
    .await;
    // the outer error names the item, its root is the refusal
    let outer = Error::find(&e).unwrap_or_else(|| panic!("no floodsql error in {e:?}"));
    assert!(matches!(outer, Error::InItem { .. }), "{outer:?}");
    match Error::find_root(&e) {
        Some(Error::Refused(r)) => {
            assert_eq!(r.location, "https://evil.example/steal.tif");
            assert!(r.rule.contains("evil.example"), "{}", r.rule);
        }
        other => panic!("not a refusal: {other:?}"),
    }
    assert_eq!(outer.kind(), ErrorKind::Data);
}

#[tokio::test]
async fn a_silent_catalogue_is_a_timeout() {
    // a server that accepts connections and never answers
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/search", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let e = fails(&format!(
        "SET floodsql.http_timeout = 1; SELECT * FROM stac_items('{url}', 'GFM', '0,0,1,1')"
    ))
    .await;
    match Error::find_root(&e) {
        Some(
            t @ Error::Timeout {
                location, seconds, ..
            },
        ) => {
            assert!(
                url.starts_with(location.as_str()) || location.starts_with(&url),
                "{location}"
            );
            assert_eq!(*seconds, 1);
            assert_eq!(t.kind(), ErrorKind::Data);
        }
        other => panic!("not a timeout: {other:?} ({e})"),
    }
}

#[tokio::test]
async fn a_bad_bbox_is_a_user_error_naming_it() {
    let scene = tiny_scene();
    let e = fails(&format!(
        "SELECT * FROM flood_chunks('{}', 'GFM', '10,20,30', NULL, 'ensemble_flood_extent')",
        scene.dir.join("items.json").display()
    ))
    .await;
    match Error::find(&e) {
        Some(b @ Error::BadBbox(value, _)) => {
            assert_eq!(value, "10,20,30");
            assert_eq!(b.kind(), ErrorKind::User);
        }
        other => panic!("not a bad bbox: {other:?} ({e})"),
    }
}
