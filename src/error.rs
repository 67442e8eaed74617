//! floodsql's library error type, by kind (DataFusion's taxonomy):
//!
//! | [`ErrorKind`] | what went wrong | inside DataFusion |
//! |---|---|---|
//! | `User` | the user's input: arguments, SQL, a query whose result cannot be rasterised, a search that finds nothing, mismatched builds | `DataFusionError::Plan` |
//! | `Data` | the data or a service at run time: a STAC item, an asset, a COG, an HTTP answer, a file, the cluster | `DataFusionError::Execution`, naming the item/asset/URL/path |
//! | `Internal` | a floodsql bug | `DataFusionError::Internal` |
//!
//! Only the CLI (`cli/`) uses `anyhow`; it prints the root cause it finds by
//! walking the chain ([`crate::cli::report`]).

use datafusion::error::DataFusionError;

/// Everything that can go wrong in floodsql's library code.
///
/// `Debug` prints the message and its causes as one quoted string (as
/// anyhow does), not the variant's fields: Ballista ships a failed task's
/// error to the client in `Debug` form, and the user should read the
/// message there. Programs match on the variants.
#[derive(thiserror::Error)]
pub enum Error {
    // ---- user input ---------------------------------------------------
    /// A bbox that is not four finite lon/lat numbers in order.
    #[error("invalid bbox '{0}': {1}")]
    BadBbox(String, String),
    /// A datetime or interval that cannot be parsed.
    #[error("invalid datetime '{0}': {1}")]
    BadDatetime(String, String),
    /// A STAC source that is neither an API nor a readable static catalogue.
    #[error("invalid STAC source '{0}': {1}")]
    BadSource(String, String),
    /// Any other bad argument (`what` names it: "cluster URL", "chunk size", …).
    #[error("invalid {what} '{value}': {message}")]
    InvalidArgument {
        /// What the argument is.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        message: String,
    },
    /// SQL text that cannot be parsed or bound.
    #[error("SQL {0}")]
    Sql(String),
    /// A query whose result cannot become a raster output.
    #[error("cannot rasterise the query result: {0}")]
    NotRasterisable(String),
    /// The search found no item.
    #[error("no STAC items found: {0}")]
    NoItems(String),
    /// An update (`floodsql.skip_items`) that cannot be done by merging
    /// only the new items into the earlier result.
    #[error("not incremental: {0}")]
    NotIncremental(String),
    /// An update whose search finds no item the earlier result lacks.
    #[error("nothing new: every item the search finds is in the earlier result ({0} items)")]
    NothingNew(usize),
    /// A scan over a limit (`floodsql.max_grid_pixels`, `…max_read_bytes`).
    #[error("query too large: {0}")]
    TooLarge(String),
    /// Client, scheduler and executors are not the same floodsql build.
    #[error("floodsql version mismatch: {what}: peer is floodsql {peer}, this process is floodsql {ours} (run the same floodsql build on client, scheduler and executors)")]
    VersionMismatch {
        /// Who refuses what.
        what: String,
        /// The peer's version tag.
        peer: String,
        /// This process's version tag.
        ours: String,
    },

    // ---- data and services at run time --------------------------------
    /// A STAC API or catalogue request failed.
    #[error("STAC request to {url} failed: {message}")]
    Http {
        /// The URL asked.
        url: String,
        /// What happened.
        message: String,
    },
    /// A request that got no answer in time, after its retries (a STAC API,
    /// an object store).
    #[error("{message}")]
    Timeout {
        /// The URL or location asked (credentials masked).
        location: String,
        /// The timeout of one attempt, seconds.
        seconds: u64,
        /// What to tell the user (names the location and the option to raise).
        message: String,
    },
    /// A STAC item that floodsql cannot use.
    #[error("STAC item '{item}': {message}")]
    BadItem {
        /// The item id.
        item: String,
        /// What is wrong with it.
        message: String,
    },
    /// An error of one item's asset (its kind is the source's: a refused
    /// location, a timeout, an unreadable file).
    #[error("STAC item '{item}': {context}")]
    InItem {
        /// The item id.
        item: String,
        /// What was being done ("asset unreadable", ...).
        context: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// An item lacks the asset asked for.
    #[error(
        "item '{item}' lacks asset '{asset}' (its assets: {available}); to read such items \
         anyway, `SET floodsql.missing_assets = '{asset}=nodata'` (or a value, e.g. \
         '{asset}=0'; CLI: --missing-assets)"
    )]
    MissingAsset {
        /// The asset asked for.
        asset: String,
        /// The item id.
        item: String,
        /// The assets the item has.
        available: String,
    },
    /// A CRS the installed PROJ cannot use (named).
    #[error("CRS {crs}: {message}")]
    Crs {
        /// The CRS's name (or code).
        crs: String,
        /// Why.
        message: String,
    },
    /// GDAL refused (open, read, CRS, write).
    #[error("GDAL: {0}")]
    Gdal(String),
    /// An asset the native COG reader cannot read.
    #[error("{message}")]
    Read {
        /// The asset's location (credentials masked), when one is known.
        location: Option<String>,
        /// What went wrong (names the location when there is one).
        message: String,
    },
    /// A location the read policy does not allow (`access`).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A file could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output file failed.
    #[error("writing '{path}': {message}")]
    Output {
        /// The output file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The cluster cannot be reached or refused the query.
    #[error("cluster {url}: {message}")]
    Cluster {
        /// The scheduler address.
        url: String,
        /// What happened.
        message: String,
    },

    /// The query was cancelled (a signal): nothing of the run is kept.
    #[error("cancelled: the query was stopped and this run's files removed")]
    Cancelled,

    // ---- our bugs -----------------------------------------------------
    /// Something floodsql itself got wrong.
    #[error("internal error (a floodsql bug): {0}")]
    Internal(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.chain_message())
    }
}

/// A location the read policy refuses (see `access`), and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("asset refused by the read policy: {rule}")]
pub struct Refusal {
    /// The location refused (credentials masked).
    pub location: String,
    /// Which rule refuses it, in words (quotes the location).
    pub rule: String,
}

/// Which of DataFusion's error kinds an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input is wrong: a plan error.
    User,
    /// The data or a service failed at run time: an execution error.
    Data,
    /// floodsql's own bug: an internal error.
    Internal,
}

/// `Result` with floodsql's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadBbox(..)
            | Error::BadDatetime(..)
            | Error::BadSource(..)
            | Error::InvalidArgument { .. }
            | Error::Sql(_)
            | Error::NotRasterisable(_)
            | Error::NoItems(_)
            | Error::NotIncremental(_)
            | Error::NothingNew(_)
            | Error::TooLarge(_)
            | Error::VersionMismatch { .. } => ErrorKind::User,
            Error::Http { .. }
            | Error::BadItem { .. }
            | Error::MissingAsset { .. }
            | Error::Crs { .. }
            | Error::Gdal(_)
            | Error::Refused(_)
            | Error::Read { .. }
            | Error::Timeout { .. }
            | Error::InItem { .. }
            | Error::Io { .. }
            | Error::Output { .. }
            | Error::Cluster { .. }
            | Error::Cancelled => ErrorKind::Data,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A bad argument.
    pub fn invalid(
        what: &'static str,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument {
            what,
            value: value.into(),
            message: message.into(),
        }
    }

    /// This error and its causes, one line.
    pub fn chain_message(&self) -> String {
        chain_message(self)
    }

    /// The floodsql error inside `e` — a `DataFusionError` (floodsql's
    /// errors cross into DataFusion as `External` and keep their type), an
    /// `ArrowError`, an I/O error, any error chain: the outermost one found
    /// by walking the sources.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        causes(e).find_map(as_floodsql)
    }

    /// The innermost floodsql error inside `e` (see [`Error::find`]): for an
    /// item's error ([`Error::InItem`]) the cause, e.g. the refusal.
    pub fn find_root<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        causes(e).filter_map(as_floodsql).last()
    }
}

/// `e` as floodsql's error: itself, or boxed (an item's cause, [`Error::InItem`]).
fn as_floodsql<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    e.downcast_ref::<Error>()
        .or_else(|| e.downcast_ref::<Box<Error>>().map(|b| b.as_ref()))
}

/// `e` and its causes, outermost first (the one walk over `source()`).
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |c| c.source())
}

/// The root cause of a DataFusion error, as a user should read it: a
/// floodsql error's chain, or DataFusion's message without its
/// "Error during planning:"-style prefix.
pub fn root_message(e: &datafusion::error::DataFusionError) -> String {
    use datafusion::error::DataFusionError;
    match e.find_root() {
        DataFusionError::Internal(m) => format!("internal error: {m}"),
        DataFusionError::External(inner) => chain_message(inner.as_ref()),
        root => root.message().into_owned(),
    }
}

/// An error and its causes, each said once, one line.
pub(crate) fn chain_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for c in causes(e) {
        let m = c.to_string();
        if out.is_empty() {
            out = m;
        } else if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
    }
    out
}

impl From<gdal::errors::GdalError> for Error {
    fn from(e: gdal::errors::GdalError) -> Self {
        Error::Gdal(e.to_string())
    }
}

/// floodsql's errors cross into DataFusion as `External`, keeping their
/// type: a caller finds them with [`Error::find`] and asks their
/// [`Error::kind`] (which DataFusion kind they would be: a plan error for
/// the user's input, an execution error for data, internal for bugs).
impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// Attach a path to an I/O error.
pub fn io_err(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Io { path, source }
}

/// A blocking task that could not be joined (panicked or cancelled).
pub fn join_err(what: &str) -> impl FnOnce(tokio::task::JoinError) -> Error + '_ {
    move |e| Error::Internal(format!("{what} task failed: {e}"))
}

/// `text` with the credentials of `location` (a URL's `user:password@`)
/// masked wherever they appear — a message may quote them out of the URL —
/// and then every URL in it masked as [`redact_urls`] does.
pub(crate) fn redact(location: &str, text: &str) -> String {
    let text = match url::Url::parse(location) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            let userinfo = match u.password() {
                Some(p) => format!("{}:{p}@", u.username()),
                None => format!("{}@", u.username()),
            };
            text.replace(&userinfo, "***@")
        }
        _ => text.to_string(),
    };
    redact_urls(&text)
}

/// `text` with the credentials of every URL in it (`scheme://user:pass@host`)
/// masked as `scheme://***@host`, and its query string (a signed URL's
/// signature) as `?***`: for every message that may quote a URL.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let ends_url = |c: char| matches!(c, '\'' | '"' | '`' | '<' | '>') || c.is_whitespace();
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the path, query, fragment, a quote or a space
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || ends_url(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***@");
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        // a query string may sign the URL (S3/Azure/GCS presigned URLs): masked
        let tail = &tail[end..];
        let url_end = tail.find(ends_url).unwrap_or(tail.len());
        match tail[..url_end].find('?') {
            Some(q) => {
                out.push_str(&tail[..q]);
                out.push_str("?***");
            }
            None => out.push_str(&tail[..url_end]),
        }
        rest = &tail[url_end..];
    }
    out.push_str(rest);
    out
}

/// Levenshtein distance (short names: options, parameters, commands), for
/// "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != b[j]) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            redact_urls("cannot read 'https://me:s3cret@h:8/a.tif?x=1' (GET http://u@h2/b)"),
            "cannot read 'https://***@h:8/a.tif?***' (GET http://***@h2/b)"
        );
        assert_eq!(redact_urls("no url: a@b, x://"), "no url: a@b, x://");
        assert_eq!(
            redact_urls("/vsicurl/http://a:b@h/x"),
            "/vsicurl/http://***@h/x"
        );
    }

    #[test]
    fn errors_keep_their_type_through_datafusion() {
        let user: DataFusionError = Error::invalid("chunk size", "3", "too small").into();
        let found = Error::find(&user).unwrap();
        assert!(matches!(
            found,
            Error::InvalidArgument {
                what: "chunk size",
                ..
            }
        ));
        assert_eq!(found.kind(), ErrorKind::User);
        // wrapped again (context, an Arrow error around it): still found
        let arrow = arrow::error::ArrowError::ExternalError(Box::new(
            DataFusionError::from(Error::Io {
                path: "/x".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
            })
            .context("reading"),
        ));
        let data = DataFusionError::ArrowError(Box::new(arrow), None);
        let found = Error::find(&data).unwrap();
        assert!(matches!(found, Error::Io { .. }) && found.kind() == ErrorKind::Data);
        assert_eq!(found.chain_message(), "I/O error on /x: gone");
        // an item's error: the outer names the item, the root is the refusal
        let refused: DataFusionError = Error::InItem {
            item: "i".into(),
            context: "asset unreadable".into(),
            source: Box::new(Error::Refused(Refusal {
                location: "http://h/x.tif".into(),
                rule: "'http://h/x.tif': host h not allowed".into(),
            })),
        }
        .into();
        assert!(matches!(Error::find(&refused), Some(Error::InItem { .. })));
        assert!(
            matches!(Error::find_root(&refused), Some(Error::Refused(r)) if r.location == "http://h/x.tif")
        );
        assert_eq!(
            Error::find(&refused).unwrap().chain_message(),
            "STAC item 'i': asset unreadable: asset refused by the read policy: 'http://h/x.tif': host h not allowed"
        );
        let bug: DataFusionError = Error::Internal("x".into()).into();
        assert_eq!(Error::find(&bug).unwrap().kind(), ErrorKind::Internal);
        assert!(Error::find(&DataFusionError::Plan("p".into())).is_none());
    }

    #[test]
    fn a_locations_credentials_are_masked_anywhere() {
        assert_eq!(
            redact(
                "https://me:pw@h/a.tif",
                "GDAL says me:pw@h/a.tif is odd; see https://me:pw@h/a.tif?sig=1"
            ),
            "GDAL says ***@h/a.tif is odd; see https://***@h/a.tif?***"
        );
    }
}
