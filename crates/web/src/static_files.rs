//! Static files: conditional requests, precompressed variants, no way out of the root.
