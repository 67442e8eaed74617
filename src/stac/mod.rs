//! STAC in: search an API or read a static catalogue; items become Arrow.

pub(crate) mod arrow;
pub(crate) mod item;
pub(crate) mod property;
pub(crate) mod search;
pub(crate) mod table;
