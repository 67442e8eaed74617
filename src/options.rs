//! Session options, settable in SQL: `SET floodsql.page_size = 50`.

use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;

extensions_options! {
    /// floodsql's session options.
    pub struct FloodsqlOptions {
        /// Items per page asked of a STAC API (`limit`).
        pub page_size: usize, default = 100
        /// Cap on the number of items a search returns (0 = no cap).
        pub max_items: usize, default = 0
        /// Default chunk side in pixels when `flood_chunks` is given none.
        pub chunk_size: usize, default = 1000
        /// Windows read concurrently per scan partition.
        pub read_concurrency: usize, default = 2
        /// Version tag of the process that made this session (set by
        /// floodsql itself; schedulers and executors refuse other versions).
        pub version: String, default = crate::version::version_tag().to_string()
    }
}

impl ConfigExtension for FloodsqlOptions {
    const PREFIX: &'static str = "floodsql";
}
