//! The response cache's entries shared by every instance: one key per entry,
//! `ferrolite:cache:{namespace}:{key}`, expiring with Redis's own TTL (`SET PX`).

use super::{Cluster, ClusterError};
use std::time::Duration;

fn key(namespace: &str, key: &str) -> String {
    format!("ferrolite:cache:{namespace}:{key}")
}

impl Cluster {
    pub async fn put_cached(&self, namespace: &str, id: &str, entry: &str, ttl: Duration) -> Result<(), ClusterError> {
        let millis = (ttl.as_millis() as u64).max(1);
        self.query::<()>(redis::cmd("SET").arg(key(namespace, id)).arg(entry).arg("PX").arg(millis)).await
    }

    pub async fn get_cached(&self, namespace: &str, id: &str) -> Result<Option<String>, ClusterError> {
        self.query(redis::cmd("GET").arg(key(namespace, id))).await
    }
}
