//! The rampart web/application server: static files, the foobar application over MariaDB
//! with a read/write split, health endpoints, metrics and an access log.

pub mod site;
pub mod static_files;
