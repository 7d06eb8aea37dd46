//! What the keepers agree on through etcd, and the rules they decide by. Everything
//! here is pure: the keys and their JSON values, the [`View`] read from one range of
//! the prefix, who may take leadership ([`elect`]) and which replica the primary names
//! as its synchronous standby ([`choose_standby`]).
//!
//! Keys, under the configured prefix:
//! - `leader`: [`LeaderValue`], on the holder's lease. Created only if absent; its
//!   `create_revision` is the **epoch**, the fencing token every later leader write is
//!   guarded by. First written with `writable: false`, rewritten with `true` once the
//!   holder has turned `read_only` off: web servers send writes only then.
//! - `sync`: [`SyncValue`], no lease: the last leader, the only replica that may be
//!   promoted, the time of the last failover, and a planned switchover's target.
//! - `members/<host>`: [`MemberValue`], on each keeper's lease: what its server has.
//!
//! Who may take a free leader key (Patroni's synchronous mode, with one standby):
//! 1. No `sync` key: the etcd cluster never had a leader. Only the bootstrap host.
//! 2. A switchover names this host, and it is promotable.
//! 3. The named standby, if promotable (connected to the leader and caught up since its
//!    server last started), unless the last failover is within the quiet period.
//! 4. The last leader, when no standby is named: it alone has every acknowledged write.
//! 5. After both were down (neither is promotable), whichever of the two has the
//!    further position, once both report; the last leader on a tie.
//!
//! Nobody else is ever promoted: an out-of-date replica cannot become primary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gtid::Gtid;

/// The leader key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderValue {
    pub host: String,
    pub server_id: u32,
    pub addr: String,
    pub writable: bool,
}

/// The sync key's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncValue {
    pub leader: String,
    #[serde(default)]
    pub standby: Option<String>,
    /// Unix seconds of the last automatic failover (0: none).
    #[serde(default)]
    pub failover_at: u64,
    /// A planned switchover's target, allowed to take the key at once.
    #[serde(default)]
    pub handover: Option<String>,
    /// The replica about to become the standby: it connects as a semi-sync replica
    /// first; the primary then waits for it, and only then names it `standby`
    /// (promotable). Enabling semi-sync on the primary before the replica's semi-sync
    /// connection exists leaves commits waiting for acknowledgements of events the
    /// replica already received, forever.
    #[serde(default)]
    pub candidate: Option<String>,
}

/// What a keeper's server is doing, from its own view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Holds the leader key.
    Leader,
    /// Replicates from the leader.
    Replica,
    /// Up, read-only, and not replicating (no leader, or not yet pointed).
    Candidate,
    /// Its server is not running or not answering.
    Down,
    /// Its history has diverged from the leader's: it stays out until rebuilt.
    Diverged,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Leader => "leader",
            MemberRole::Replica => "replica",
            MemberRole::Candidate => "candidate",
            MemberRole::Down => "down",
            MemberRole::Diverged => "diverged",
        }
    }
}

/// A member key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValue {
    pub host: String,
    pub server_id: u32,
    pub role: MemberRole,
    /// `@@gtid_binlog_pos`.
    #[serde(default)]
    pub binlog: String,
    /// `@@gtid_current_pos`.
    #[serde(default)]
    pub current: String,
    /// `Gtid_IO_Pos`: what the IO thread received.
    #[serde(default)]
    pub received: String,
    /// The leader host its IO thread is connected to, if running.
    #[serde(default)]
    pub following: Option<String>,
    /// Connected to the current leader and caught up since its server last started.
    #[serde(default)]
    pub promotable: bool,
    /// Seconds behind the leader (`Seconds_Behind_Master`), when replicating.
    #[serde(default)]
    pub lag_seconds: Option<u64>,
    /// The replication error that keeps it out, if any.
    #[serde(default)]
    pub error: Option<String>,
}

impl MemberValue {
    /// How far this server's history goes: what it binlogged (with log_slave_updates
    /// that includes everything it applied) or received, whichever is further. Not
    /// `gtid_current_pos`: it counts binlogged GTIDs only of the *current* server id,
    /// and each start of a server has a new one, so after a restart it falls back to
    /// the old slave position (the failover test's total-outage round elected the
    /// server that was behind).
    fn position(&self) -> Gtid {
        let binlog = Gtid::parse(&self.binlog).unwrap_or_default();
        let received = Gtid::parse(&self.received).unwrap_or_default();
        if received.weight() > binlog.weight() {
            received
        } else {
            binlog
        }
    }
}

/// The leader key as read: its value, epoch and lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    pub value: LeaderValue,
    pub epoch: i64,
    pub lease: i64,
}

/// Everything under the prefix, from one linearizable range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub leader: Option<Leader>,
    pub sync: Option<SyncValue>,
    /// The sync key's `mod_revision` (0 when absent): a takeover is guarded by it.
    pub sync_revision: i64,
    pub members: BTreeMap<String, MemberValue>,
    pub revision: i64,
}

/// The keys, under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }
    pub fn sync(&self) -> String {
        format!("{}sync", self.prefix)
    }
    pub fn member(&self, host: &str) -> String {
        format!("{}members/{host}", self.prefix)
    }

    /// Builds the view from the key-values of a prefix range. A value that does not
    /// parse is ignored (and named in the returned list), never trusted.
    pub fn view(&self, kvs: &[rampart_etcd::Kv], revision: i64) -> (View, Vec<String>) {
        let mut view = View {
            revision,
            ..View::default()
        };
        let mut bad = Vec::new();
        let members = format!("{}members/", self.prefix);
        for kv in kvs {
            if kv.key == self.leader() {
                match serde_json::from_slice(&kv.value) {
                    Ok(value) => {
                        view.leader = Some(Leader {
                            value,
                            epoch: kv.create_revision,
                            lease: kv.lease,
                        });
                    }
                    Err(_) => bad.push(kv.key.clone()),
                }
            } else if kv.key == self.sync() {
                match serde_json::from_slice(&kv.value) {
                    Ok(v) => {
                        view.sync = Some(v);
                        view.sync_revision = kv.mod_revision;
                    }
                    Err(_) => bad.push(kv.key.clone()),
                }
            } else if let Some(host) = kv.key.strip_prefix(&members) {
                match serde_json::from_slice::<MemberValue>(&kv.value) {
                    Ok(v) if v.host == host => {
                        view.members.insert(host.to_owned(), v);
                    }
                    _ => bad.push(kv.key.clone()),
                }
            }
        }
        (view, bad)
    }
}

/// Whether this keeper may take the free leader key, and why (or why not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// Take it; `failover` says it replaces a leader that was lost (not a bootstrap,
    /// switchover or restart), which starts the quiet period.
    Take { failover: bool, why: String },
    /// Not this keeper, or not yet.
    Wait(String),
    /// It could, but the quiet period after the last failover forbids it.
    Refused(String),
}

/// Decides whether `me` may take the leader key now (see the module doc for the rules).
pub fn elect(
    me: &MemberValue,
    bootstrap: bool,
    view: &View,
    now_unix: u64,
    quiet_secs: u64,
) -> Election {
    if let Some(l) = &view.leader {
        return Election::Wait(format!("{} leads (epoch {})", l.value.host, l.epoch));
    }
    if matches!(me.role, MemberRole::Down | MemberRole::Diverged) {
        return Election::Wait(format!("this server is {}", me.role.as_str()));
    }
    let Some(sync) = &view.sync else {
        return if bootstrap {
            Election::Take {
                failover: false,
                why: "bootstrap: the cluster has never had a leader".into(),
            }
        } else {
            Election::Wait("no cluster yet: waiting for the bootstrap host".into())
        };
    };
    let host = me.host.as_str();
    if sync.handover.as_deref() == Some(host) && me.promotable {
        return Election::Take {
            failover: false,
            why: format!("switchover from {}", sync.leader),
        };
    }
    if sync.standby.as_deref() == Some(host) && me.promotable {
        let since = now_unix.saturating_sub(sync.failover_at);
        if sync.failover_at > 0 && since < quiet_secs {
            return Election::Refused(format!(
                "the last failover was {since} s ago, within the quiet period of {quiet_secs} s"
            ));
        }
        return Election::Take {
            failover: true,
            why: format!("{} is gone and this is its sync standby", sync.leader),
        };
    }
    if sync.leader == host && sync.standby.is_none() {
        return Election::Take {
            failover: false,
            why: "the last leader, with no standby named: it alone has every write".into(),
        };
    }
    let other = if sync.leader == host {
        sync.standby.as_deref()
    } else if sync.standby.as_deref() == Some(host) {
        Some(sync.leader.as_str())
    } else {
        None
    };
    let Some(other) = other else {
        return Election::Wait(format!(
            "only {} or {} may lead",
            sync.leader,
            sync.standby.as_deref().unwrap_or("(no standby)")
        ));
    };
    let Some(theirs) = view.members.get(other) else {
        return Election::Wait(format!(
            "waiting for {other} to report, to compare positions"
        ));
    };
    if theirs.promotable || matches!(theirs.role, MemberRole::Down | MemberRole::Diverged) {
        return Election::Wait(format!("{other} is {}", theirs.role.as_str()));
    }
    let (mine, them) = (me.position(), theirs.position());
    let ahead =
        mine.weight() > them.weight() || (mine.weight() == them.weight() && sync.leader == host);
    if ahead && mine.covers(&them) {
        Election::Take {
            failover: false,
            why: format!("both were down; this server ({mine}) is not behind {other} ({them})"),
        }
    } else {
        Election::Wait(format!(
            "{other} ({them}) is not behind this server ({mine})"
        ))
    }
}

/// The replica the leader names as its synchronous standby: one that follows it, runs
/// its IO thread, has received everything the leader has binlogged (`leader_binlog`),
/// and is not diverged. The first by host name, so the choice is stable.
pub fn choose_standby(leader: &str, view: &View, leader_binlog: &Gtid) -> Option<String> {
    view.members
        .values()
        .filter(|m| m.host != leader && m.role == MemberRole::Replica)
        .filter(|m| m.following.as_deref() == Some(leader) && m.error.is_none())
        .find(|m| m.position().covers(leader_binlog))
        .map(|m| m.host.clone())
}

/// Whether the named standby is still there for the leader: it reports, follows the
/// leader with its IO thread running.
pub fn standby_connected(leader: &str, standby: &str, view: &View) -> bool {
    view.members
        .get(standby)
        .is_some_and(|m| m.role == MemberRole::Replica && m.following.as_deref() == Some(leader))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member(host: &str, role: MemberRole, current: &str, promotable: bool) -> MemberValue {
        MemberValue {
            host: host.into(),
            server_id: 1,
            role,
            binlog: current.into(),
            current: current.into(),
            received: String::new(),
            following: None,
            promotable,
            lag_seconds: None,
            error: None,
        }
    }

    fn view(sync: Option<SyncValue>, members: &[MemberValue]) -> View {
        View {
            leader: None,
            sync,
            sync_revision: 7,
            members: members
                .iter()
                .map(|m| (m.host.clone(), m.clone()))
                .collect(),
            revision: 9,
        }
    }

    fn sync(leader: &str, standby: Option<&str>, failover_at: u64) -> Option<SyncValue> {
        Some(SyncValue {
            leader: leader.into(),
            standby: standby.map(Into::into),
            failover_at,
            handover: None,
            candidate: None,
        })
    }

    fn takes(e: &Election) -> bool {
        matches!(e, Election::Take { .. })
    }

    #[test]
    fn only_the_bootstrap_host_starts_a_cluster() {
        let db1 = member("db1", MemberRole::Candidate, "", false);
        let v = view(None, &[]);
        assert!(takes(&elect(&db1, true, &v, 100, 300)));
        assert!(!takes(&elect(&db1, false, &v, 100, 300)));
    }

    #[test]
    fn nobody_takes_a_held_key() {
        let db2 = member("db2", MemberRole::Replica, "0-1-5", true);
        let mut v = view(sync("db1", Some("db2"), 0), &[]);
        v.leader = Some(Leader {
            value: LeaderValue {
                host: "db1".into(),
                server_id: 1,
                addr: "a".into(),
                writable: true,
            },
            epoch: 3,
            lease: 1,
        });
        assert!(!takes(&elect(&db2, false, &v, 100, 300)));
    }

    #[test]
    fn the_promotable_standby_fails_over_outside_the_quiet_period() {
        let db2 = member("db2", MemberRole::Replica, "0-1-5", true);
        let v = view(sync("db1", Some("db2"), 0), &[]);
        assert_eq!(
            elect(&db2, false, &v, 1000, 300),
            Election::Take {
                failover: true,
                why: "db1 is gone and this is its sync standby".into()
            }
        );
        let v = view(sync("db1", Some("db2"), 900), &[]);
        assert!(matches!(
            elect(&db2, false, &v, 1000, 300),
            Election::Refused(_)
        ));
        // Not promotable (restarted, not caught up): no fast failover.
        let stale = member("db2", MemberRole::Replica, "0-1-5", false);
        let v = view(sync("db1", Some("db2"), 0), &[]);
        assert!(!takes(&elect(&stale, false, &v, 1000, 300)));
    }

    #[test]
    fn an_unnamed_replica_is_never_promoted() {
        let db3 = member("db3", MemberRole::Replica, "0-1-9", true);
        let v = view(sync("db1", Some("db2"), 0), &[]);
        assert!(!takes(&elect(&db3, false, &v, 1000, 300)));
        let v = view(sync("db1", None, 0), &[]);
        assert!(!takes(&elect(&db3, false, &v, 1000, 300)));
    }

    #[test]
    fn the_last_leader_retakes_only_without_a_standby() {
        let db1 = member("db1", MemberRole::Candidate, "0-1-9", false);
        assert!(takes(&elect(
            &db1,
            false,
            &view(sync("db1", None, 0), &[]),
            1000,
            300
        )));
        let v = view(sync("db1", Some("db2"), 0), &[]);
        assert!(!takes(&elect(&db1, false, &v, 1000, 300)));
    }

    #[test]
    fn after_both_were_down_the_further_one_leads_once_both_report() {
        let db1 = member("db1", MemberRole::Candidate, "0-1-9", false);
        let db2 = member("db2", MemberRole::Candidate, "0-1-10", false);
        let s = sync("db1", Some("db2"), 0);
        // Alone: wait for the other to report.
        assert!(!takes(&elect(
            &db1,
            false,
            &view(s.clone(), std::slice::from_ref(&db1)),
            1000,
            300
        )));
        let v = view(s.clone(), &[db1.clone(), db2.clone()]);
        assert!(!takes(&elect(&db1, false, &v, 1000, 300)));
        assert!(takes(&elect(&db2, false, &v, 1000, 300)));
        // A tie goes to the last leader, and only to it.
        let db2 = member("db2", MemberRole::Candidate, "0-1-9", false);
        let v = view(s, &[db1.clone(), db2.clone()]);
        assert!(takes(&elect(&db1, false, &v, 1000, 300)));
        assert!(!takes(&elect(&db2, false, &v, 1000, 300)));
    }

    #[test]
    fn positions_come_from_the_binlog_not_the_current_server_ids_view() {
        // db1 restarted under a new server id: its gtid_current_pos fell back to an old
        // slave position, but its binlog is further than db2's.
        let mut db1 = member("db1", MemberRole::Candidate, "0-1-10", false);
        db1.binlog = "0-7001-20".into();
        let db2 = member("db2", MemberRole::Candidate, "0-7001-15", false);
        let v = view(sync("db1", Some("db2"), 0), &[db1.clone(), db2.clone()]);
        assert!(takes(&elect(&db1, false, &v, 1000, 300)));
        assert!(!takes(&elect(&db2, false, &v, 1000, 300)));
    }

    #[test]
    fn a_switchover_target_takes_at_once() {
        let db2 = member("db2", MemberRole::Replica, "0-1-9", true);
        let mut s = sync("db1", Some("db2"), 990).unwrap();
        s.handover = Some("db2".into());
        let v = view(Some(s), &[]);
        assert!(takes(&elect(&db2, false, &v, 1000, 300)));
    }

    #[test]
    fn the_standby_is_a_caught_up_follower() {
        let mut db2 = member("db2", MemberRole::Replica, "0-1-4", false);
        db2.following = Some("db1".into());
        let mut db3 = member("db3", MemberRole::Replica, "0-1-5", false);
        db3.following = Some("db1".into());
        let v = view(None, &[db2.clone(), db3]);
        let pos = Gtid::parse("0-1-5").unwrap();
        assert_eq!(choose_standby("db1", &v, &pos), Some("db3".into()));
        db2.received = "0-1-5".into();
        let v = view(None, &[db2]);
        assert_eq!(choose_standby("db1", &v, &pos), Some("db2".into()));
        assert_eq!(choose_standby("db9", &v, &pos), None);
        assert!(standby_connected("db1", "db2", &v));
        assert!(!standby_connected("db1", "db3", &v));
    }

    #[test]
    fn the_view_ignores_values_that_do_not_parse() {
        let keys = Keys {
            prefix: "/r/".into(),
        };
        let kv = |key: &str, value: &str, create: i64| rampart_etcd::Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: create + 1,
            version: 1,
            lease: 5,
        };
        let (v, bad) = keys.view(
            &[
                kv(
                    "/r/leader",
                    r#"{"host":"db1","server_id":1,"addr":"a:1","writable":true}"#,
                    4,
                ),
                kv("/r/sync", r#"{"leader":"db1","standby":"db2"}"#, 2),
                kv(
                    "/r/members/db2",
                    r#"{"host":"db3","server_id":2,"role":"replica"}"#,
                    3,
                ),
                kv("/r/members/db1", "not json", 3),
            ],
            10,
        );
        assert_eq!(v.leader.as_ref().unwrap().epoch, 4);
        assert_eq!(v.sync_revision, 3);
        assert_eq!(v.sync.unwrap().standby.as_deref(), Some("db2"));
        assert!(v.members.is_empty());
        assert_eq!(
            bad,
            vec!["/r/members/db2".to_owned(), "/r/members/db1".to_owned()]
        );
    }
}
