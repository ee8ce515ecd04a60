//! Compaction as a service (placeholder until the crate lands).
