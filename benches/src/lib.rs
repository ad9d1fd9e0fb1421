//! What the benchmark driver (`bench`), the soak (`soak`) and its fault phase (`chaos`) share:
//! process handling, ferrolite's start and manifests, the report's pieces, and the chaos client
//! (which the test suite's chaos test uses too).

pub mod cluster_client;
pub mod gateway;
pub mod procs;
pub mod report;

/// Errors are messages for the person running the harness.
pub type Res<T> = Result<T, String>;
