//! `records.pack`: the records the last build used, in one file — a no-op build of a
//! large experiment reads one file instead of one per node (thousands).
//!
//! The pack is a cache of `records/`, never the truth:
//! - an entry is a record file's exact bytes, so reading it is reading the file;
//! - the pack names the state of `records/` it was written against — a digest of the
//!   inode and mtime of `records/` and each shard directory, which adding, replacing or
//!   removing a record changes, whoever does it (a hand, an older llmd) — and a pack
//!   written against another state is ignored;
//! - every writer of records (a build executing a node, `cache gc`, `--repair`,
//!   `import`) removes the pack, durably, before its first change, so a crash never
//!   leaves a pack that claims records that are not there;
//! - a build that read a record from its file, or wrote one, writes a new pack at its end.
//!
//! Format: `llmd-record-pack 1\n`, `records <stamp>\n`, then per record
//! `<key> <length>\n<bytes>\n`.

use std::collections::HashMap;
use std::path::Path;

use crate::util::fs::Dir;

pub(super) const FILE: &str = "records.pack";
const MAGIC: &str = "llmd-record-pack 1";

pub(super) struct Pack {
    bytes: Vec<u8>,
    /// key → byte range of its record, in file order.
    entries: Vec<(String, std::ops::Range<usize>)>,
    by_key: HashMap<String, usize>,
}

/// The state of `records/` a pack is valid for: inode and mtime of the directory and of
/// every shard (`00`..`ff`; an absent one counts too). 257 `fstatat`s, relative to the
/// open `records/`.
pub(super) fn records_stamp(records: &Dir) -> String {
    let mut h = blake3::Hasher::new();
    let mut one = |name: &str| {
        let line = match records.stat(name) {
            Ok(s) => format!("{name} {} {}\n", s.ino, s.mtime_ns),
            Err(_) => format!("{name} -\n"),
        };
        h.update(line.as_bytes());
    };
    one(".");
    for i in 0..=255u8 {
        one(&format!("{i:02x}"));
    }
    h.finalize().to_hex().to_string()
}

/// The pack of the cache at `root`, if there is one written against its records as they are.
pub(super) fn load(root: &Path) -> Option<Pack> {
    let stamp = records_stamp(&Dir::open(&root.join("records")).ok()?);
    Pack::read(&root.join(FILE), &stamp)
}

impl Pack {
    /// The pack at `path`, if there is one and it was written against `stamp`.
    pub(super) fn read(path: &Path, stamp: &str) -> Option<Pack> {
        let bytes = std::fs::read(path).ok()?;
        Pack::parse(bytes, stamp)
    }

    fn parse(bytes: Vec<u8>, stamp: &str) -> Option<Pack> {
        let mut pos = 0;
        let line = |pos: &mut usize| -> Option<&str> {
            let end = *pos + bytes[*pos..].iter().position(|&b| b == b'\n')?;
            let text = std::str::from_utf8(&bytes[*pos..end]).ok()?;
            *pos = end + 1;
            Some(text)
        };
        if line(&mut pos)? != MAGIC || line(&mut pos)?.strip_prefix("records ")? != stamp {
            return None;
        }
        let mut entries = Vec::new();
        while pos < bytes.len() {
            let (key, len) = line(&mut pos)?.split_once(' ')?;
            let (key, len) = (key.to_string(), len.parse::<usize>().ok()?);
            let end = pos.checked_add(len)?;
            if bytes.get(end) != Some(&b'\n') {
                return None;
            }
            entries.push((key, pos..end));
            pos = end + 1;
        }
        let by_key = entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        Some(Pack { bytes, entries, by_key })
    }

    pub(super) fn get(&self, key: &str) -> Option<&[u8]> {
        self.by_key.get(key).map(|&i| &self.bytes[self.entries[i].1.clone()])
    }

    /// Every record, in file order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, r)| (k.as_str(), &self.bytes[r.clone()]))
    }
}

/// A pack of `entries` (key, record file bytes) for the records state `stamp`.
pub(super) fn encode<'a>(stamp: &str, entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = format!("{MAGIC}\nrecords {stamp}\n").into_bytes();
    for (key, bytes) in entries {
        out.extend_from_slice(format!("{key} {}\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_any_damage_discards_the_pack() {
        let recs: [(&str, &[u8]); 3] = [("aa11", b"{\n  \"key\": \"aa11\"\n}"), ("bb22", b""), ("cc33", b"x y\nz")];
        let bytes = encode("s1", recs);
        let pack = Pack::parse(bytes.clone(), "s1").unwrap();
        assert_eq!(pack.iter().collect::<Vec<_>>(), recs.to_vec());
        assert_eq!(pack.get("cc33"), Some(&b"x y\nz"[..]));
        assert_eq!(pack.get("dd44"), None);
        assert!(Pack::parse(bytes.clone(), "s2").is_none(), "written against other records");
        for cut in [0, 10, bytes.len() - 1] {
            assert!(Pack::parse(bytes[..cut].to_vec(), "s1").is_none(), "truncated at {cut}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"dd44 99\n{}\n");
        assert!(Pack::parse(longer, "s1").is_none(), "a length past the end");
        assert!(Pack::parse(encode("s1", []), "s1").is_some_and(|p| p.iter().count() == 0));
    }

    #[test]
    fn the_stamp_changes_when_a_record_is_added_or_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("ab")).unwrap();
        std::fs::write(d.path().join("ab/ab1.json"), b"{}").unwrap();
        let dir = Dir::open(d.path()).unwrap();
        let before = records_stamp(&dir);
        assert_eq!(records_stamp(&dir), before);
        // mtimes are as fine as the kernel's clock tick: wait past one.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::remove_file(d.path().join("ab/ab1.json")).unwrap();
        let removed = records_stamp(&dir);
        assert_ne!(removed, before);
        std::fs::create_dir(d.path().join("cd")).unwrap();
        assert_ne!(records_stamp(&dir), removed, "a new shard");
    }
}
