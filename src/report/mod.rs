//! Presentation of profiled steps, kept out of the engine crates: the report table, the Chrome
//! trace, and the device ceilings with their cache in the user's cache folder (host probing).

pub mod ceilings;
pub mod table;
pub mod trace;
