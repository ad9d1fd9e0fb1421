//! Spend records in PostgreSQL's `spend_logs` table (`--database-url`): every instance's in one
//! place, so a page shows the cluster's requests whichever instance serves it.

use super::{Cursor, SpendLogStore, SpendPage, SpendQuery, StatusFilter};
use crate::observability::metrics::LabelText;
use crate::observability::spend_log::{SpendOutcome, SpendRecord};
use crate::store::postgres::{pg_int, PgClient};
use crate::store::StoreError;
use postgres::types::ToSql;
use postgres::Row;

const COLUMNS: &str = "id, at_ms, request_id, key_id, user_id, workspace, app_id, service_id, model, deployment, \
    prompt_tokens, completion_tokens, cached_tokens, cost, status, outcome, latency_ms";

/// Rows a purge deletes per statement, so a large purge never holds the table for long.
const PURGE_CHUNK: usize = 10_000;

/// The spend log in PostgreSQL (its table made by the store's migrations).
pub struct PgSpendLogs {
    pg: PgClient,
}

impl PgSpendLogs {
    pub fn open(url: &str) -> Result<PgSpendLogs, StoreError> {
        Ok(PgSpendLogs { pg: PgClient::connect(url)? })
    }
}

impl SpendLogStore for PgSpendLogs {
    fn append(&self, records: &[SpendRecord]) -> Result<(), StoreError> {
        self.pg.with(|c| {
            let mut tx = c.transaction()?;
            let insert = tx.prepare(
                "INSERT INTO spend_logs (at_ms, request_id, key_id, user_id, workspace, app_id, service_id, model,
                   deployment, prompt_tokens, completion_tokens, cached_tokens, cost, status, outcome, latency_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )?;
            for r in records {
                tx.execute(
                    &insert,
                    &[
                        &pg_int(r.at_ms),
                        &r.request_id,
                        &r.key_id,
                        &r.user,
                        &&*r.workspace,
                        &&*r.app_id,
                        &&*r.service_id,
                        &r.model.as_deref(),
                        &r.deployment.as_deref(),
                        &pg_int(r.prompt_tokens),
                        &pg_int(r.completion_tokens),
                        &pg_int(r.cached_tokens),
                        &r.cost,
                        &i32::from(r.status),
                        &r.outcome.as_str(),
                        &r.latency_ms,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    fn page(&self, q: &SpendQuery) -> Result<SpendPage, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM spend_logs WHERE workspace = $1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(q.workspace.clone())];
        // `clause` names its arguments `?`, numbered here in order.
        let mut and = |clause: &str, values: Vec<Box<dyn ToSql + Sync + Send>>| {
            sql.push_str(" AND ");
            for (i, part) in clause.split('?').enumerate() {
                if i > 0 {
                    sql.push_str(&format!("${}", args.len() + i));
                }
                sql.push_str(part);
            }
            args.extend(values);
        };
        if let Some(start) = q.start_ms {
            and("at_ms >= ?", vec![Box::new(pg_int(start))]);
        }
        if let Some(end) = q.end_ms {
            and("at_ms < ?", vec![Box::new(pg_int(end))]);
        }
        if let Some(key) = &q.key_id {
            and("key_id = ?", vec![Box::new(key.clone())]);
        }
        if let Some(user) = &q.user {
            and("user_id = ?", vec![Box::new(user.clone())]);
        }
        if let Some(model) = &q.model {
            and("model = ?", vec![Box::new(model.clone())]);
        }
        if let Some(app) = &q.app {
            and("(app_id = ? OR service_id = ?)", vec![Box::new(app.clone()), Box::new(app.clone())]);
        }
        match q.status {
            Some(StatusFilter::Code(code)) => and("status = ?", vec![Box::new(i32::from(code))]),
            Some(StatusFilter::Class(class)) => {
                let low = i32::from(class) * 100;
                and("status >= ? AND status < ?", vec![Box::new(low), Box::new(low + 100)])
            }
            Some(StatusFilter::Outcome(outcome)) => and("outcome = ?", vec![Box::new(outcome.as_str().to_owned())]),
            None => {}
        }
        if let Some(Cursor { at_ms, id }) = q.cursor {
            let at = pg_int(at_ms);
            and("(at_ms < ? OR (at_ms = ? AND id < ?))", vec![Box::new(at), Box::new(at), Box::new(id)]);
        }
        // One more than asked: whether there is a next page.
        sql.push_str(&format!(" ORDER BY at_ms DESC, id DESC LIMIT ${}", args.len() + 1));
        args.push(Box::new(pg_int(q.limit as u64 + 1)));
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = self.pg.with(|c| c.query(&sql, &params))?;
        Ok(SpendPage::from_rows(rows.iter().map(read_row).collect(), q.limit))
    }

    fn purge(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let n = self.pg.with(|c| {
                c.execute(
                    "DELETE FROM spend_logs WHERE id IN (SELECT id FROM spend_logs WHERE at_ms < $1 LIMIT $2)",
                    &[&pg_int(before_ms), &(PURGE_CHUNK as i64)],
                )
            })? as usize;
            purged += n;
            if n < PURGE_CHUNK {
                return Ok(purged);
            }
        }
    }
}

fn read_row(row: &Row) -> (i64, SpendRecord) {
    let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    let outcome: &str = row.get(15);
    let record = SpendRecord {
        at_ms: count(1),
        request_id: row.get(2),
        key_id: row.get(3),
        user: row.get(4),
        workspace: row.get::<_, &str>(5).into(),
        app_id: row.get::<_, &str>(6).into(),
        service_id: row.get::<_, &str>(7).into(),
        model: row.get::<_, Option<String>>(8).map(LabelText::from_owned),
        deployment: row.get::<_, Option<String>>(9).map(LabelText::from_owned),
        prompt_tokens: count(10),
        completion_tokens: count(11),
        cached_tokens: count(12),
        cost: row.get(13),
        status: u16::try_from(row.get::<_, i32>(14)).unwrap_or(0),
        // A row another version wrote with an outcome this one does not know reads as an error.
        outcome: SpendOutcome::parse(outcome).unwrap_or(SpendOutcome::Error),
        latency_ms: row.get(16),
    };
    (row.get(0), record)
}
