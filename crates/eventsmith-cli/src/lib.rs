//! The parts of the `eventsmith` command line that other code (the fuzz targets) uses.

pub mod keyfile;
pub mod url;
