//! Touches the host: child processes (mariadbd and rampart's own services), pid files and
//! the state directory. Only this crate starts, signals or stops processes.

pub mod firewall;
pub mod forward;
pub mod mariadb;
pub mod netns;
pub mod process;
pub mod stack;

pub use process::InfraError;
