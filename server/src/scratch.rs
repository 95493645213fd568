//! A scratch folder for tests that need files or sockets.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh folder under the temp folder, removed on drop.
#[derive(Debug)]
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rg-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot make {}: {e}", dir.display());
        }
        Scratch(dir)
    }

    /// Writes `text` to `name` in the folder; its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Err(e) = std::fs::write(&p, text) {
            panic!("cannot write {}: {e}", p.display());
        }
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
