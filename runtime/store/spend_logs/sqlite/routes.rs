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

/// Routes remembered at most: past that the memory starts again empty, and a route is looked
/// up in the file once more (keys per user times models can make many).
const MOST_REMEMBERED: usize = 65_536;

/// The ids of the routes the file holds, by their names.
pub struct RouteIds {
    hasher: foldhash::fast::RandomState,
    /// By the names' hash; a collision is told apart by comparing the names.
    ids: foldhash::HashMap<u64, Vec<(OwnedNames, i64)>>,
    remembered: usize,
    most: usize,
}

impl Default for RouteIds {
    fn default() -> Self {
        RouteIds { hasher: Default::default(), ids: Default::default(), remembered: 0, most: MOST_REMEMBERED }
    }
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
        if self.remembered + found.0.len() > self.most {
            self.ids.clear();
            self.remembered = 0;
        }
        self.remembered += found.0.len();
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn file() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE spend_routes (id INTEGER PRIMARY KEY, workspace TEXT NOT NULL, app_id TEXT NOT NULL,
             service_id TEXT NOT NULL, model TEXT, deployment TEXT, key_id TEXT, user_id TEXT)",
        )
        .unwrap();
        conn
    }

    fn names<'a>(model: &'a str, key: Option<&'a str>) -> Names<'a> {
        [Some("w"), Some("app"), Some("svc"), Some(model), None, key, None]
    }

    /// Looks `models` up in one transaction, committed or not; their ids.
    fn look_up(conn: &mut Connection, routes: &mut RouteIds, models: &[&str], commit: bool) -> Vec<i64> {
        let tx = conn.transaction().unwrap();
        let mut pending = routes.pending();
        let ids = models.iter().map(|m| pending.id(&tx, names(m, None)).unwrap()).collect();
        let found = pending.found();
        if commit {
            tx.commit().unwrap();
            routes.learn(found);
        }
        ids
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM spend_routes", [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn names_that_differ_anywhere_are_other_routes_and_none_is_not_empty() {
        let mut conn = file();
        let tx = conn.transaction().unwrap();
        let routes = RouteIds::default();
        let mut pending = routes.pending();
        let plain = pending.id(&tx, names("a", None)).unwrap();
        assert_eq!(pending.id(&tx, names("a", None)).unwrap(), plain, "the same names, the same id");
        assert_ne!(pending.id(&tx, names("a", Some("k"))).unwrap(), plain);
        assert_ne!(pending.id(&tx, names("b", None)).unwrap(), plain);
        let mut empty_key = names("a", None);
        empty_key[5] = Some("");
        assert_ne!(pending.id(&tx, empty_key).unwrap(), plain);
        drop(pending);
        assert_eq!(rows(&tx), 4);
    }

    #[test]
    fn a_rolled_back_route_is_not_remembered() {
        let mut conn = file();
        let mut routes = RouteIds::default();
        let gone = look_up(&mut conn, &mut routes, &["a"], false);
        assert_eq!(rows(&conn), 0);
        let kept = look_up(&mut conn, &mut routes, &["b", "a"], true);
        assert_eq!(rows(&conn), 2, "a was added again, not taken from memory");
        assert_eq!(gone[0], kept[0], "its id was reused by the file, for b");
        assert_eq!(look_up(&mut conn, &mut routes, &["a", "b"], true), [kept[1], kept[0]]);
    }

    #[test]
    fn past_its_bound_memory_starts_again_and_the_file_still_answers() {
        let mut conn = file();
        let mut routes = RouteIds { most: 2, ..RouteIds::default() };
        let first = look_up(&mut conn, &mut routes, &["a", "b"], true);
        assert_eq!(routes.remembered, 2);
        look_up(&mut conn, &mut routes, &["c"], true);
        assert_eq!(routes.remembered, 1, "forgot a and b");
        assert_eq!(look_up(&mut conn, &mut routes, &["a", "b"], true), first, "found in the file");
        assert_eq!(rows(&conn), 3);
    }
}
