//! Stored Responses API answers shared by every instance, so a conversation continues (and
//! is read back) wherever the load balancer sends its next request: one key per response,
//! `ferrolite:response:{workspace}<US>{id}`, expiring with Redis's own TTL. Unlike the
//! controller's state these calls are on the request path, so they are async and bounded by
//! the usual timeout.

use super::{field, Cluster, ClusterError, TIMEOUT};
use std::time::Duration;

const PREFIX: &str = "ferrolite:response:";

fn key(workspace: &str, id: &str) -> String {
    format!("{PREFIX}{}", field(workspace, id))
}

impl Cluster {
    pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClusterError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ClusterError::Timeout(TIMEOUT)),
        }
    }

    pub async fn put_response(
        &self,
        workspace: &str,
        id: &str,
        record: &str,
        ttl: Duration,
    ) -> Result<(), ClusterError> {
        let seconds = ttl.as_secs().max(1);
        self.query::<()>(redis::cmd("SET").arg(key(workspace, id)).arg(record).arg("EX").arg(seconds)).await
    }

    pub async fn get_response(&self, workspace: &str, id: &str) -> Result<Option<String>, ClusterError> {
        self.query(redis::cmd("GET").arg(key(workspace, id))).await
    }

    /// Whether a record was there to delete.
    pub async fn delete_response(&self, workspace: &str, id: &str) -> Result<bool, ClusterError> {
        let n: i64 = self.query(redis::cmd("DEL").arg(key(workspace, id))).await?;
        Ok(n > 0)
    }
}
