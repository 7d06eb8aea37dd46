//! MariaDB instances: data directories, server flags, users, GTID replication, semi-sync.
