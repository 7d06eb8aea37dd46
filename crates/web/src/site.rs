//! The default site that ships in the binary, installed into a directory on first use.
