//! Coordinate reference systems as STAC items give them (`proj:wkt2` in WKT1
//! or WKT2, `proj:projjson`, `proj:code`, `proj:epsg`), made usable by the
//! PROJ this floodsql links against.
//!
//! Equi7Grid, GFM's grid, comes in two spellings: production items carry a
//! legacy WKT1 ("Azimuthal_Equidistant", no EPSG code); catalogues written by
//! `equi7grid` ≥ 1.0 carry EPSG:27701–27707, whose WKT2 names EPSG method 1125
//! "Azimuthal Equidistant". PROJ learnt that method and those codes in 9.2;
//! Debian bookworm ships PROJ 9.1, which parses such a WKT2 but cannot compute
//! it ("Unsupported conversion method"). Where the installed PROJ cannot,
//! this module
//!
//! * rewrites method 1125 to EPSG method 9832 ("Modified Azimuthal
//!   Equidistant"), which PROJ 9.1 computes with the same ellipsoidal
//!   `+proj=aeqd` that PROJ ≥ 9.2 uses for 1125, in WKT2 and in PROJJSON;
//! * knows EPSG:27701–27707 by their EPSG parameters.
//!
//! Both are checked against PROJ 9.5's answers (pyproj) to the millimetre in
//! the unit tests. Any other CRS the installed PROJ cannot compute is refused
//! with its name.

use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};

use crate::error::{Error, Result};

/// Equi7Grid's continental CRSs, EPSG:27701–27707: (code, continent,
/// latitude and longitude of natural origin, false easting, false northing),
/// as in the EPSG dataset.
const EQUI7: [(u32, &str, f64, f64, f64, f64); 7] = [
    (27701, "Africa", 8.5, 21.5, 5621452.020, 5990638.423),
    (27702, "Antarctica", -90.0, 0.0, 3714266.977, 3402016.506),
    (27703, "Asia", 47.0, 94.0, 4340913.848, 4812712.923),
    (27704, "Europe", 53.0, 24.0, 5837287.820, 2121415.696),
    (
        27705,
        "North America",
        52.0,
        -97.5,
        8264722.177,
        4867518.353,
    ),
    (27706, "Oceania", -19.5, 131.5, 6988408.536, 7654884.537),
    (
        27707,
        "South America",
        -14.0,
        -60.5,
        7257179.236,
        5592024.446,
    ),
];

/// Equi7Grid Asia as GFM's production items give it (`proj:wkt2`): a legacy
/// WKT1 with no EPSG code.
pub const EQUI7_AS_LEGACY_WKT: &str = r#"PROJCS["Azimuthal_Equidistant",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0],UNIT["Degree",0.0174532925199433]],PROJECTION["Azimuthal_Equidistant"],PARAMETER["latitude_of_center",47],PARAMETER["longitude_of_center",94],PARAMETER["false_easting",4340913.84808],PARAMETER["false_northing",4812712.92347],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH]]"#;

/// The WKT2 of EPSG:27703 as PROJ ≥ 9.2 writes it (pyproj 3.7.2, PROJ 9.5:
/// `CRS.from_epsg(27703).to_wkt("WKT2_2019")`): what newer catalogues give.
pub const EQUI7_AS_WKT2: &str = r#"PROJCRS["WGS 84 / Equi7 Asia",BASEGEOGCRS["WGS 84",ENSEMBLE["World Geodetic System 1984 ensemble",MEMBER["World Geodetic System 1984 (Transit)"],MEMBER["World Geodetic System 1984 (G730)"],MEMBER["World Geodetic System 1984 (G873)"],MEMBER["World Geodetic System 1984 (G1150)"],MEMBER["World Geodetic System 1984 (G1674)"],MEMBER["World Geodetic System 1984 (G1762)"],MEMBER["World Geodetic System 1984 (G2139)"],MEMBER["World Geodetic System 1984 (G2296)"],ELLIPSOID["WGS 84",6378137,298.257223563,LENGTHUNIT["metre",1]],ENSEMBLEACCURACY[2.0]],PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433]],ID["EPSG",4326]],CONVERSION["Equi7 projection - Asia",METHOD["Azimuthal Equidistant",ID["EPSG",1125]],PARAMETER["Latitude of natural origin",47,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8801]],PARAMETER["Longitude of natural origin",94,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8802]],PARAMETER["False easting",4340913.848,LENGTHUNIT["metre",1],ID["EPSG",8806]],PARAMETER["False northing",4812712.923,LENGTHUNIT["metre",1],ID["EPSG",8807]]],CS[Cartesian,2],AXIS["(E)",east,ORDER[1],LENGTHUNIT["metre",1]],AXIS["(N)",north,ORDER[2],LENGTHUNIT["metre",1]],USAGE[SCOPE["Continental mapping of raster data."],AREA["Asia including Maldives and British Indian Ocean Territory."],BBOX[-10.8,31.45,83.67,-168.43]],ID["EPSG",27703]]"#;

/// The PROJJSON of EPSG:27703 as PROJ 9.5 writes it (pyproj 3.7.2:
/// `CRS.from_epsg(27703).to_json()`).
pub const EQUI7_AS_PROJJSON: &str = r#"{"$schema":"https://proj.org/schemas/v0.7/projjson.schema.json","type":"ProjectedCRS","name":"WGS 84 / Equi7 Asia","base_crs":{"name":"WGS 84","datum_ensemble":{"name":"World Geodetic System 1984 ensemble","members":[{"name":"World Geodetic System 1984 (Transit)","id":{"authority":"EPSG","code":1166}},{"name":"World Geodetic System 1984 (G730)","id":{"authority":"EPSG","code":1152}},{"name":"World Geodetic System 1984 (G873)","id":{"authority":"EPSG","code":1153}},{"name":"World Geodetic System 1984 (G1150)","id":{"authority":"EPSG","code":1154}},{"name":"World Geodetic System 1984 (G1674)","id":{"authority":"EPSG","code":1155}},{"name":"World Geodetic System 1984 (G1762)","id":{"authority":"EPSG","code":1156}},{"name":"World Geodetic System 1984 (G2139)","id":{"authority":"EPSG","code":1309}},{"name":"World Geodetic System 1984 (G2296)","id":{"authority":"EPSG","code":1383}}],"ellipsoid":{"name":"WGS 84","semi_major_axis":6378137,"inverse_flattening":298.257223563},"accuracy":"2.0","id":{"authority":"EPSG","code":6326}},"coordinate_system":{"subtype":"ellipsoidal","axis":[{"name":"Geodetic latitude","abbreviation":"Lat","direction":"north","unit":"degree"},{"name":"Geodetic longitude","abbreviation":"Lon","direction":"east","unit":"degree"}]},"id":{"authority":"EPSG","code":4326}},"conversion":{"name":"Equi7 projection - Asia","method":{"name":"Azimuthal Equidistant","id":{"authority":"EPSG","code":1125}},"parameters":[{"name":"Latitude of natural origin","value":47,"unit":"degree","id":{"authority":"EPSG","code":8801}},{"name":"Longitude of natural origin","value":94,"unit":"degree","id":{"authority":"EPSG","code":8802}},{"name":"False easting","value":4340913.848,"unit":"metre","id":{"authority":"EPSG","code":8806}},{"name":"False northing","value":4812712.923,"unit":"metre","id":{"authority":"EPSG","code":8807}}]},"coordinate_system":{"subtype":"Cartesian","axis":[{"name":"Easting","abbreviation":"E","direction":"east","unit":"metre"},{"name":"Northing","abbreviation":"N","direction":"north","unit":"metre"}]},"scope":"Continental mapping of raster data.","area":"Asia including Maldives and British Indian Ocean Territory.","bbox":{"south_latitude":-10.8,"west_longitude":31.45,"north_latitude":83.67,"east_longitude":-168.43},"id":{"authority":"EPSG","code":27703}}"#;

/// The method PROJ < 9.2 computes as the same `+proj=aeqd`.
const AEQD_9832: &str = r#"METHOD["Modified Azimuthal Equidistant",ID["EPSG",9832]]"#;

/// A CRS from what the items give, in traditional GIS axis order (x = east
/// or longitude), usable by the installed PROJ.
pub(crate) fn spatial_ref(crs: &str) -> Result<SpatialRef> {
    let reason = match parse(crs) {
        Ok(srs) => match srs.to_proj4() {
            Ok(_) => return Ok(gis_order(srs)),
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    if let Some(srs) = fallback(crs).and_then(|d| parse(&d).ok()) {
        if srs.to_proj4().is_ok() {
            return Ok(gis_order(srs));
        }
    }
    Err(Error::Crs {
        crs: describe(crs),
        message: format!("the installed PROJ cannot use it ({reason})"),
    })
}

/// Do two CRSs name the same projection (GDAL's comparison, which finds
/// GFM's legacy WKT and EPSG:27703 equal, as pyproj does)?
pub(crate) fn same(a: &str, b: &str) -> Result<bool> {
    Ok(spatial_ref(a)? == spatial_ref(b)?)
}

fn gis_order(mut srs: SpatialRef) -> SpatialRef {
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    srs
}

/// GDAL's reading of a WKT (1 or 2), PROJJSON or user string (`EPSG:27703`).
fn parse(crs: &str) -> std::result::Result<SpatialRef, String> {
    let t = crs.trim_start();
    if t.starts_with(|c: char| c.is_ascii_uppercase()) && t.contains('[') {
        SpatialRef::from_wkt(crs)
    } else {
        SpatialRef::from_definition(crs)
    }
    .map_err(|e| e.to_string())
}

/// An equivalent definition the installed PROJ can compute, if this module
/// knows one.
fn fallback(crs: &str) -> Option<String> {
    let t = crs.trim();
    if let Some(code) = epsg_code(t) {
        return EQUI7
            .iter()
            .find(|e| e.0 == code)
            .map(|&(_, name, lat, lon, fe, fn_)| equi7_wkt2(name, lat, lon, fe, fn_));
    }
    if t.starts_with('{') {
        return projjson_aeqd(t);
    }
    wkt2_aeqd(t)
}

/// `EPSG:27703`, `urn:ogc:def:crs:EPSG::27703`, `.../def/crs/EPSG/0/27703`.
fn epsg_code(t: &str) -> Option<u32> {
    if t.contains('[') || t.starts_with('{') || !t.to_ascii_uppercase().contains("EPSG") {
        return None;
    }
    let digits = t.rsplit(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// The WKT2 of an Equi7 CRS with method 9832 (no root EPSG ID: written into
/// a GeoTIFF it becomes explicit parameters any reader can use).
fn equi7_wkt2(name: &str, lat: f64, lon: f64, fe: f64, fn_: f64) -> String {
    format!(
        r#"PROJCRS["WGS 84 / Equi7 {name}",BASEGEOGCRS["WGS 84",DATUM["World Geodetic System 1984",ELLIPSOID["WGS 84",6378137,298.257223563,LENGTHUNIT["metre",1]]],PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433]],ID["EPSG",4326]],CONVERSION["Equi7 projection - {name}",{AEQD_9832},PARAMETER["Latitude of natural origin",{lat},ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8801]],PARAMETER["Longitude of natural origin",{lon},ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8802]],PARAMETER["False easting",{fe},LENGTHUNIT["metre",1],ID["EPSG",8806]],PARAMETER["False northing",{fn_},LENGTHUNIT["metre",1],ID["EPSG",8807]]],CS[Cartesian,2],AXIS["(E)",east,ORDER[1],LENGTHUNIT["metre",1]],AXIS["(N)",north,ORDER[2],LENGTHUNIT["metre",1]]]"#
    )
}

/// Index of the `]` closing the `[` at `open` (quotes respected).
fn closing(s: &str, open: usize) -> Option<usize> {
    let (mut depth, mut quoted) = (0usize, false);
    for (i, c) in s[open..].char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '(' if !quoted => depth += 1,
            ']' | ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Is this METHOD node EPSG method 1125 (by name or by ID)?
fn is_aeqd_1125(node: &str) -> bool {
    let n: String = node
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let named = n
        .split_once('[')
        .is_some_and(|(_, rest)| rest.starts_with("\"azimuthalequidistant\""));
    named || n.contains("[\"epsg\",1125]") || n.contains("[\"epsg\",\"1125\"]")
}

/// A WKT2 with method 1125 rewritten to 9832 and its root ID dropped (the
/// installed PROJ does not know the code; see [`equi7_wkt2`]).
fn wkt2_aeqd(wkt: &str) -> Option<String> {
    let upper = wkt.to_ascii_uppercase();
    let mut out = None;
    for kw in ["METHOD[", "PROJECTION["] {
        let mut from = 0;
        while let Some(i) = upper[from..].find(kw) {
            let start = from + i;
            let end = closing(wkt, start + kw.len() - 1)?;
            if is_aeqd_1125(&wkt[start..=end]) {
                out = Some(format!("{}{AEQD_9832}{}", &wkt[..start], &wkt[end + 1..]));
                break;
            }
            from = end;
        }
        if out.is_some() {
            break;
        }
    }
    out.map(|w| without_root_id(&w))
}

/// The WKT without its top-level `ID[...]`/`AUTHORITY[...]` nodes.
fn without_root_id(wkt: &str) -> String {
    let Some(open) = wkt.find('[') else {
        return wkt.to_string();
    };
    let upper = wkt.to_ascii_uppercase();
    let mut out = String::with_capacity(wkt.len());
    let (mut depth, mut quoted, mut skip_to) = (0usize, false, 0usize);
    let mut last = 0;
    let bytes = wkt.as_bytes();
    let mut i = open;
    while i < wkt.len() {
        let c = bytes[i] as char;
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 1 && i >= skip_to => {
                let rest = upper[i + 1..].trim_start();
                let at = i + 1 + (upper[i + 1..].len() - rest.len());
                let node_open = rest.find('[').map(|b| at + b);
                if rest.starts_with("ID[") || rest.starts_with("AUTHORITY[") {
                    if let Some(end) = node_open.and_then(|o| closing(wkt, o)) {
                        out.push_str(&wkt[last..i]);
                        last = end + 1;
                        skip_to = end + 1;
                        i = end + 1;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&wkt[last..]);
    out
}

/// A PROJJSON with method 1125 rewritten to 9832 and its root id dropped.
fn projjson_aeqd(text: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    let method = v.get_mut("conversion")?.get_mut("method")?;
    let name = method.get("name").and_then(|n| n.as_str()).unwrap_or("");
    let code = method.pointer("/id/code").and_then(|c| {
        c.as_u64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    if !name.eq_ignore_ascii_case("Azimuthal Equidistant") && code != Some(1125) {
        return None;
    }
    *method = serde_json::json!({
        "name": "Modified Azimuthal Equidistant",
        "id": {"authority": "EPSG", "code": 9832}
    });
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        o.remove("ids");
    }
    Some(v.to_string())
}

/// The name a map's caption gives its CRS: Equi7Grid's zones by their name
/// and code whichever spelling the items use (GFM's legacy WKT names only
/// "Azimuthal_Equidistant"), any other CRS by its own name and authority
/// code when it has one.
pub(crate) fn map_name(crs: &str) -> String {
    let Ok(srs) = spatial_ref(crs) else {
        return describe(crs).trim_matches('\'').to_string();
    };
    let name = srs.name().unwrap_or_else(|| describe(crs));
    if name.contains("Azimuthal") || name.contains("Equi7") {
        // compared with the definitions this module knows (no lookup in a
        // PROJ database that may not have the codes)
        for (code, continent, lat, lon, fe, fn_) in EQUI7 {
            if same(crs, &equi7_wkt2(continent, lat, lon, fe, fn_)).unwrap_or(false) {
                return format!("Equi7 {continent} (EPSG:{code})");
            }
        }
    }
    match (srs.auth_name(), srs.auth_code()) {
        (Some(auth), Ok(code)) => format!("{name} ({auth}:{code})"),
        _ => name,
    }
}

/// A short name for messages: the CRS's own name, or its code.
pub(crate) fn describe(crs: &str) -> String {
    let t = crs.trim();
    if t.starts_with('{') {
        if let Some(n) = serde_json::from_str::<serde_json::Value>(t)
            .ok()
            .and_then(|v| v.get("name").and_then(|n| n.as_str().map(str::to_string)))
        {
            return format!("'{n}'");
        }
    }
    if let Some(q) = t.find('"') {
        if let Some(len) = t[q + 1..].find('"') {
            return format!("'{}'", &t[q + 1..q + 1 + len]);
        }
    }
    format!("'{}'", t.chars().take(80).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::spatial_ref::CoordTransform;

    fn project(crs: &str, lon: f64, lat: f64) -> (f64, f64) {
        let mut wgs = SpatialRef::from_epsg(4326).unwrap();
        wgs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let dst = spatial_ref(crs).unwrap();
        let t = CoordTransform::new(&wgs, &dst).unwrap();
        let (mut x, mut y, mut z) = ([lon], [lat], [0.0]);
        t.transform_coords(&mut x, &mut y, &mut z).unwrap();
        (x[0], y[0])
    }

    /// PROJ 9.5's answers (pyproj 3.7.2, `Transformer.from_crs(4326, code,
    /// always_xy=True)`), to the millimetre.
    const PROJ95: [(u32, f64, f64, f64, f64); 9] = [
        (27703, 68.0, 27.0, 1741756.8425, 2983781.6143),
        (27703, 94.0, 47.0, 4340913.8480, 4812712.9230),
        (27703, 140.0, 10.0, 9590637.9489, 1999460.1274),
        (27701, 30.0, -5.0, 6572804.7010, 4502736.5929),
        (27704, 10.0, 48.0, 4797430.8279, 1664954.1731),
        (27705, -120.0, 30.0, 6065579.6212, 2734110.4753),
        (27706, 150.0, -35.0, 8691462.1630, 5820952.1203),
        (27707, -70.0, -30.0, 6329221.9151, 3794593.9541),
        (27702, 0.0, -70.0, 3714266.9770, 5635001.5075),
    ];

    #[test]
    fn equi7_codes_and_wkt2_agree_with_a_newer_proj() {
        for &(code, lon, lat, x, y) in &PROJ95 {
            let (px, py) = project(&format!("EPSG:{code}"), lon, lat);
            assert!(
                (px - x).abs() < 1e-3 && (py - y).abs() < 1e-3,
                "EPSG:{code} ({lon}, {lat}): ({px:.4}, {py:.4}) vs PROJ 9.5 ({x}, {y})"
            );
        }
        for &(_, lon, lat, x, y) in PROJ95.iter().filter(|p| p.0 == 27703) {
            let (px, py) = project(EQUI7_AS_WKT2, lon, lat);
            assert!((px - x).abs() < 1e-3 && (py - y).abs() < 1e-3, "{px} {py}");
        }
    }

    #[test]
    fn map_names() {
        assert_eq!(map_name(EQUI7_AS_LEGACY_WKT), "Equi7 Asia (EPSG:27703)");
        assert_eq!(map_name(EQUI7_AS_WKT2), "Equi7 Asia (EPSG:27703)");
        assert_eq!(map_name("EPSG:27704"), "Equi7 Europe (EPSG:27704)");
        assert_eq!(map_name("EPSG:32642"), "WGS 84 / UTM zone 42N (EPSG:32642)");
    }

    #[test]
    fn legacy_wkt_and_wkt2_name_the_same_projection() {
        // the legacy WKT's false easting/northing carry 0.08 mm more digits
        let legacy = project(EQUI7_AS_LEGACY_WKT, 68.0, 27.0);
        let wkt2 = project(EQUI7_AS_WKT2, 68.0, 27.0);
        assert!((legacy.0 - wkt2.0).abs() < 1e-3 && (legacy.1 - wkt2.1).abs() < 1e-3);
    }

    #[test]
    fn projjson_and_urn_forms() {
        for crs in [
            EQUI7_AS_PROJJSON,
            "urn:ogc:def:crs:EPSG::27703",
            "epsg:27703",
        ] {
            let (x, y) = project(crs, 68.0, 27.0);
            assert!(
                (x - 1741756.8425).abs() < 1e-3 && (y - 2983781.6143).abs() < 1e-3,
                "{crs}"
            );
        }
    }

    #[test]
    fn a_crs_proj_cannot_compute_is_refused_by_name() {
        let bad = EQUI7_AS_WKT2
            .replace("Azimuthal Equidistant", "Floodsql Imaginary Projection")
            .replace("ID[\"EPSG\",1125]", "ID[\"EPSG\",99999]");
        let e = spatial_ref(&bad).unwrap_err().to_string();
        assert!(
            e.contains("'WGS 84 / Equi7 Asia'") && e.contains("PROJ"),
            "{e}"
        );
        let e = spatial_ref("EPSG:999999").unwrap_err().to_string();
        assert!(e.contains("EPSG:999999"), "{e}");
    }

    #[test]
    fn legacy_wkt_and_epsg_27703_are_the_same_crs_other_zones_are_not() {
        for other in [EQUI7_AS_WKT2, "EPSG:27703", EQUI7_AS_PROJJSON] {
            assert!(same(EQUI7_AS_LEGACY_WKT, other).unwrap(), "{other}");
        }
        assert!(!same(EQUI7_AS_LEGACY_WKT, "EPSG:27704").unwrap());
        assert!(!same(EQUI7_AS_LEGACY_WKT, "EPSG:32642").unwrap());
        // a false easting 2 mm away is another CRS
        let moved = EQUI7_AS_LEGACY_WKT.replace("4340913.84808", "4340913.85008");
        assert!(!same(EQUI7_AS_LEGACY_WKT, &moved).unwrap());
    }

    #[test]
    fn root_id_is_dropped_nested_ids_kept() {
        let w = r#"PROJCRS["a",BASEGEOGCRS["b",ID["EPSG",4326]],ID["EPSG",27703]]"#;
        assert_eq!(
            without_root_id(w),
            r#"PROJCRS["a",BASEGEOGCRS["b",ID["EPSG",4326]]]"#
        );
    }
}
