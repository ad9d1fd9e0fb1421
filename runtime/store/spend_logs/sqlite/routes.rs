//! The names a spend record shares with every other request of the same app, model,
//! deployment, key and user, kept once in `spend_routes`: a row refers to them by id. Binding
//! six text values to every row cost more than the rest of its insert (SQLite copies each
//! one); a route id is one integer, looked up here in memory.

use rusqlite::{params, OptionalExtension, Transaction};
use std::hash::BuildHasher;

/// A record's route, in `spend_routes`' column order: workspace, app id, service id, model,
/// deployment, key id, user (the first three always present).
pub type Names<'a> = [Option<&'a str>; 7];
type OwnedNames = [Option<Box<str>>; 7];

/// The ids of the routes the file holds, by their names.
#[derive(Default)]
pub struct RouteIds {
    hasher: foldhash::fast::RandomState,
    /// By the names' hash; a collision is told apart by comparing the names.
    ids: foldhash::HashMap<u64, Vec<(OwnedNames, i64)>>,
}

/// Routes a transaction found or made, kept aside until it commits: a rolled-back insert's id
/// must not be remembered.
pub struct Pending<'r> {
    known: &'r RouteIds,
    found: Found,
}

/// The routes one transaction found or made.
#[derive(Default)]
pub struct Found(Vec<(u64, OwnedNames, i64)>);

impl RouteIds {
    /// Starts looking routes up for one transaction.
    pub fn pending(&self) -> Pending<'_> {
        Pending { known: self, found: Found::default() }
    }

    /// Remembers what a committed transaction found.
    pub fn learn(&mut self, found: Found) {
        for (hash, names, id) in found.0 {
            self.ids.entry(hash).or_default().push((names, id));
        }
    }

    fn get(&self, hash: u64, names: &Names<'_>) -> Option<i64> {
        self.ids.get(&hash)?.iter().find(|(owned, _)| same(owned, names)).map(|(_, id)| *id)
    }
}

impl Pending<'_> {
    /// The id of `names`' route: remembered, found in the file, or added to it.
    pub fn id(&mut self, tx: &Transaction<'_>, names: Names<'_>) -> rusqlite::Result<i64> {
        let hash = self.known.hasher.hash_one(names);
        if let Some(id) = self.known.get(hash, &names) {
            return Ok(id);
        }
        if let Some((_, _, id)) = self.found.0.iter().find(|(h, owned, _)| *h == hash && same(owned, &names)) {
            return Ok(*id);
        }
        let id = find_or_add(tx, &names)?;
        self.found.0.push((hash, names.map(|n| n.map(Box::from)), id));
        Ok(id)
    }

    /// What was found, for [`RouteIds::learn`] once the transaction commits.
    pub fn found(self) -> Found {
        self.found
    }
}

fn same(owned: &OwnedNames, names: &Names<'_>) -> bool {
    owned.iter().zip(names).all(|(a, b)| a.as_deref() == *b)
}

fn find_or_add(tx: &Transaction<'_>, n: &Names<'_>) -> rusqlite::Result<i64> {
    let found = tx
        .prepare_cached(
            "SELECT id FROM spend_routes WHERE workspace = ?1 AND app_id = ?2 AND service_id = ?3 AND model IS ?4 \
             AND deployment IS ?5 AND key_id IS ?6 AND user_id IS ?7 LIMIT 1",
        )?
        .query_row(params![n[0], n[1], n[2], n[3], n[4], n[5], n[6]], |row| row.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO spend_routes (workspace, app_id, service_id, model, deployment, key_id, user_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![n[0], n[1], n[2], n[3], n[4], n[5], n[6]])?;
    Ok(tx.last_insert_rowid())
}
