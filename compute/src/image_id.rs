//! The name of a sealed memtable image (a leaf: jobs, state and
//! offloading all use it).

/// Identifies a sealed memtable image for as long as the database is open:
/// a flush installs by these, not by counting memtables, so a result can
/// only ever retire the images it was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId {
    pub shard: u32,
    /// Increases with every memtable sealed in the database.
    pub serial: u64,
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "image {} of shard {}", self.serial, self.shard)
    }
}
