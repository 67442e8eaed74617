//! STAC in: search an API or read a static catalogue; items become Arrow.

pub mod arrow;
pub mod item;
pub mod search;
pub mod table;
