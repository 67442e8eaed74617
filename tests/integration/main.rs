//! floodsql's Rust integration tests, in one binary (fast to link).

mod cli;
mod cluster;
mod common;
mod errors;
mod slt;
mod udaf;
