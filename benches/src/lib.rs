//! What the benchmark driver (`bench`) and the soak (`soak`) share: process handling, ferrolite's
//! start and manifests, and the report's pieces.

pub mod gateway;
pub mod procs;
pub mod report;

/// Errors are messages for the person running the harness.
pub type Res<T> = Result<T, String>;
