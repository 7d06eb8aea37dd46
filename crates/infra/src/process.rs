//! Child processes owned through pid files: spawn, check, stop by PID with verification.
