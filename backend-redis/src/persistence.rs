//! What a publish that Redis answered survives: read from the server's
//! persistence settings at connect and said in the log, since the default
//! [`Durability::Reply`](crate::Durability::Reply) promises only what those
//! settings keep. `CONFIG GET` where allowed, `INFO persistence` otherwise
//! (which shows whether the append-only file is on, not its fsync policy).

use std::collections::HashMap;

use redis::aio::ConnectionManager;

/// The server's persistence, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// From `CONFIG GET`.
    Configured {
        /// `appendonly yes`.
        append_only: bool,
        /// `appendfsync`: `always`, `everysec` or `no`.
        fsync: String,
        /// `save`: the snapshot schedule, empty for none.
        save: String,
    },
    /// From `INFO persistence`: whether the append-only file is on.
    AppendOnly(bool),
    /// Neither could be read (both refused to this user, or renamed).
    Unknown,
}

impl Persistence {
    /// Reads the settings; never fails (an unreadable one is `Unknown`).
    pub(crate) async fn read(conn: &mut ConnectionManager) -> Self {
        let config: redis::RedisResult<HashMap<String, String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .arg("appendfsync")
            .arg("save")
            .query_async(conn)
            .await;
        if let Ok(config) = config
            && let (Some(append_only), Some(fsync), Some(save)) = (
                config.get("appendonly"),
                config.get("appendfsync"),
                config.get("save"),
            )
        {
            return Self::Configured {
                append_only: append_only == "yes",
                fsync: fsync.clone(),
                save: save.clone(),
            };
        }
        let info: redis::RedisResult<String> = redis::cmd("INFO")
            .arg("persistence")
            .query_async(conn)
            .await;
        info.ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("aof_enabled:"))
                    .map(|on| Self::AppendOnly(on.trim() == "1"))
            })
            .unwrap_or(Self::Unknown)
    }

    /// What a publish Redis answered survives; `None` when it survives a
    /// crash of Redis and its host (nothing to warn about).
    pub(crate) fn warning(&self) -> Option<String> {
        match self {
            Self::Configured {
                append_only: true,
                fsync,
                ..
            } => match fsync.as_str() {
                "always" => None,
                "everysec" => Some(
                    "Redis fsyncs its append-only file every second (appendfsync everysec): a returned publish survives a restart of Redis, \
                     but a crash of Redis or its host may lose up to the last second of publishes"
                        .into(),
                ),
                other => Some(format!(
                    "Redis leaves fsyncing its append-only file to the OS (appendfsync {other}): a crash of its host may lose \
                     publishes Redis had answered"
                )),
            },
            Self::Configured { save, .. } if save.trim().is_empty() => Some(
                "Redis keeps nothing on disk (appendonly no, save \"\"): a restart of Redis loses every publish it holds".into(),
            ),
            Self::Configured { save, .. } => Some(format!(
                "Redis only takes snapshots (appendonly no, save \"{save}\"): a restart of Redis loses every publish since the last one"
            )),
            Self::AppendOnly(true) => Some(
                "Redis has its append-only file on, fsync policy unreadable (CONFIG GET refused): a returned publish survives a restart \
                 of Redis, and a crash of it or its host as far as appendfsync allows"
                    .into(),
            ),
            Self::AppendOnly(false) => Some(
                "Redis has no append-only file (snapshots unreadable: CONFIG GET refused): a restart of Redis may lose every publish it holds"
                    .into(),
            ),
            Self::Unknown => Some(
                "Redis persistence unknown (CONFIG GET and INFO persistence refused): nothing says whether a returned publish survives \
                 a restart of Redis"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_says_what_survives() {
        let configured = |append_only, fsync: &str, save: &str| Persistence::Configured {
            append_only,
            fsync: fsync.into(),
            save: save.into(),
        };
        assert_eq!(configured(true, "always", "").warning(), None);
        assert!(
            configured(true, "everysec", "")
                .warning()
                .unwrap()
                .contains("last second")
        );
        assert!(
            configured(true, "no", "")
                .warning()
                .unwrap()
                .contains("crash of its host")
        );
        assert!(
            configured(false, "everysec", "")
                .warning()
                .unwrap()
                .contains("keeps nothing on disk")
        );
        assert!(
            configured(false, "everysec", "3600 1")
                .warning()
                .unwrap()
                .contains("snapshots")
        );
        assert!(
            Persistence::Unknown
                .warning()
                .unwrap()
                .contains("persistence unknown")
        );
    }
}
