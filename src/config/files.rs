//! Files named by the config (certificates, keys, CA bundles) are checked before anything
//! reads them: a device or FIFO path (`/dev/zero`, `/dev/stdin`) would block `check` or grow
//! its memory without bound, and no PEM file is anywhere near the cap.

use std::path::Path;

/// Largest PEM file accepted: a long chain or a full system CA bundle is well under 1 MiB.
pub const MAX_PEM_BYTES: u64 = 4 << 20;

/// `Ok` if `path` is a regular file (after symlinks) of at most [`MAX_PEM_BYTES`].
pub fn check_pem_file(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (a device, FIFO or directory cannot hold a certificate or key)",
            path.display()
        ));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!(
            "{} is {} bytes: larger than the {} bytes a PEM file may have",
            path.display(),
            meta.len(),
            MAX_PEM_BYTES
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_missing_and_huge_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("tandem-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.pem");
        std::fs::write(&ok, "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert_eq!(check_pem_file(&ok), Ok(()));
        let huge = dir.join("huge.pem");
        let f = std::fs::File::create(&huge).unwrap();
        f.set_len(MAX_PEM_BYTES + 1).unwrap(); // sparse: costs no disk
        let link = dir.join("zero.pem");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (p, want) in [
            (Path::new("/dev/zero"), "not a regular file"),
            (link.as_path(), "not a regular file"),
            (dir.as_path(), "not a regular file"),
            (huge.as_path(), "larger than"),
            (Path::new("/nonexistent/x.pem"), "cannot read"),
        ] {
            let e = check_pem_file(p).expect_err(want);
            assert!(e.contains(want), "{p:?}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
