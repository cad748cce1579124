//! A look at a database without changing it, for `waiver doctor`: which of this
//! build's migrations it has, and which conversation references it holds.
//!
//! One plain connection, no pool, no writer: an SQLite file is opened read-only (a
//! missing file is reported, never created) and nothing is migrated.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};

use super::{Backend, Result, StoreError, migrator, unreachable};
use crate::message::Platform;

/// How long connecting may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A migration, as this build knows it or as the database recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

/// The database's migrations compared with this build's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schema {
    /// Every migration of this build is applied, and no other.
    Current { latest: MigrationInfo, count: usize },
    /// Some of this build's migrations are not applied yet (all of them when the
    /// database holds no Waiver tables).
    Behind {
        pending: Vec<MigrationInfo>,
        total: usize,
    },
    /// The database holds migrations this build does not know: a newer Waiver
    /// migrated it.
    Ahead { unknown: Vec<MigrationInfo> },
    /// A migration failed part-way.
    Dirty { failed: MigrationInfo },
    /// An applied migration's SQL differs from this build's.
    Changed { changed: MigrationInfo },
}

/// A read-only connection to Waiver's database.
pub struct Inspection {
    conn: AnyConnection,
    backend: Backend,
}

/// The file an `sqlite:` URL names, unless it is an in-memory database.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Opens `url` to look at it. `Ok(None)`: an SQLite file that does not exist.
pub async fn inspect(url: &str) -> Result<Option<Inspection>> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url).ok_or_else(|| {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        StoreError::Url(scheme.chars().take(20).collect())
    })?;
    let url = match backend {
        Backend::Sqlite => {
            if sqlite_path(url).is_some_and(|p| !p.exists()) {
                return Ok(None);
            }
            let base = url.split('?').next().unwrap_or(url);
            let params: Vec<&str> = url
                .split_once('?')
                .map(|(_, q)| q.split('&').filter(|p| !p.starts_with("mode=")).collect())
                .unwrap_or_default();
            let mut read_only = format!("{base}?mode=ro");
            for p in params.into_iter().filter(|p| !p.is_empty()) {
                read_only.push('&');
                read_only.push_str(p);
            }
            read_only
        }
        Backend::Postgres => url.to_string(),
    };
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(&url))
        .await
        .map_err(|_| StoreError::Unreachable("timed out".into()))?
        .map_err(unreachable)?;
    Ok(Some(Inspection { conn, backend }))
}

impl Inspection {
    /// Whether a table of that name exists (in the connection's schema).
    async fn has_table(&mut self, name: &str) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_name = $1 AND table_schema = current_schema()"
            }
        };
        let row = sqlx::query(sql)
            .bind(name)
            .fetch_one(&mut self.conn)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// The database's migrations against this build's.
    pub async fn schema(&mut self) -> Result<Schema> {
        let migrator = migrator(self.backend);
        let embedded: Vec<_> = migrator.iter().collect();
        let info = |version: i64, description: &str| MigrationInfo {
            version,
            description: description.to_string(),
        };
        let mut applied = Vec::new();
        if self.has_table("_sqlx_migrations").await? {
            let failed = sqlx::query(
                "SELECT version, description FROM _sqlx_migrations WHERE NOT success \
                 ORDER BY version LIMIT 1",
            )
            .fetch_optional(&mut self.conn)
            .await?;
            if let Some(f) = failed {
                return Ok(Schema::Dirty {
                    failed: info(f.try_get("version")?, f.try_get("description")?),
                });
            }
            applied = sqlx::query(
                "SELECT version, description, checksum FROM _sqlx_migrations \
                 WHERE success ORDER BY version",
            )
            .fetch_all(&mut self.conn)
            .await?;
        }
        let mut unknown = Vec::new();
        let mut done: HashMap<i64, Vec<u8>> = HashMap::new();
        for row in &applied {
            let version: i64 = row.try_get("version")?;
            let description: String = row.try_get("description")?;
            let checksum: Vec<u8> = row.try_get("checksum")?;
            match embedded.iter().find(|m| m.version == version) {
                None => unknown.push(info(version, &description)),
                Some(m) if *m.checksum != *checksum => {
                    return Ok(Schema::Changed {
                        changed: info(version, &m.description),
                    });
                }
                Some(_) => {
                    done.insert(version, checksum);
                }
            }
        }
        if !unknown.is_empty() {
            return Ok(Schema::Ahead { unknown });
        }
        let pending: Vec<MigrationInfo> = embedded
            .iter()
            .filter(|m| !done.contains_key(&m.version))
            .map(|m| info(m.version, &m.description))
            .collect();
        if !pending.is_empty() {
            return Ok(Schema::Behind {
                pending,
                total: embedded.len(),
            });
        }
        let latest = embedded
            .last()
            .map(|m| info(m.version, &m.description))
            .ok_or_else(|| super::corrupt("migrations", "this build embeds none"))?;
        Ok(Schema::Current {
            latest,
            count: embedded.len(),
        })
    }

    /// Of `addresses`, those `platform` has a stored conversation reference for,
    /// with the reference (`None` when the database has no conversations yet).
    pub async fn conversations(
        &mut self,
        platform: Platform,
        addresses: &[String],
    ) -> Result<Option<HashMap<String, String>>> {
        if !self.has_table("conversations").await? {
            return Ok(None);
        }
        let mut found = HashMap::new();
        for chunk in addresses.chunks(500) {
            let list = self.backend.params(2, chunk.len());
            let sql = format!(
                "SELECT address, reference FROM conversations \
                 WHERE platform = {} AND address IN ({list})",
                self.backend.param(1)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(platform.as_str());
            for a in chunk {
                q = q.bind(a.as_str());
            }
            for row in q.fetch_all(&mut self.conn).await? {
                found.insert(row.try_get("address")?, row.try_get("reference")?);
            }
        }
        Ok(Some(found))
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_read_from_the_url() {
        assert_eq!(sqlite_path("sqlite://waiver.db"), Some("waiver.db".into()));
        assert_eq!(
            sqlite_path("sqlite:///var/lib/w.db?mode=rwc"),
            Some("/var/lib/w.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
