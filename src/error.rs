//! floodsql's library error type. The CLI turns it into a message and exit code;
//! inside DataFusion it travels as an external error.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid bbox '{0}': {1}")]
    BadBbox(String, String),
    #[error("invalid datetime '{0}': {1}")]
    BadDatetime(String, String),
    #[error("invalid STAC source '{0}': {1}")]
    BadSource(String, String),
    #[error("STAC request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("STAC item '{item}': {message}")]
    BadItem { item: String, message: String },
    #[error("no STAC items found for {0}")]
    NoItems(String),
    #[error("asset '{asset}' not found in item '{item}' (assets: {available})")]
    MissingAsset {
        asset: String,
        item: String,
        available: String,
    },
    #[error("GDAL: {0}")]
    Gdal(String),
    #[error("I/O error on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("floodsql version mismatch: {what}: peer is floodsql {peer}, this process is floodsql {ours} (run the same floodsql build on client, scheduler and executors)")]
    VersionMismatch {
        what: String,
        peer: String,
        ours: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<gdal::errors::GdalError> for Error {
    fn from(e: gdal::errors::GdalError) -> Self {
        Error::Gdal(e.to_string())
    }
}

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
