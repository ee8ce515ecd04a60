//! `Storage::link` on both backends: the second name reads the same bytes,
//! survives the deletion of the first, refuses an existing target, and (on
//! the fault-injecting backend) survives a simulated crash only once its
//! directory is synced; `refuse_links` makes it fail as across file systems.

use std::path::Path;

use o3_storage::env::{FaultInjectingFs, FaultPlan, LocalFs, Storage};

fn write(fs: &dyn Storage, path: &Path, bytes: &[u8]) {
    let mut f = fs.create(path).expect("create");
    f.append(bytes).expect("append");
    f.sync().expect("sync");
}

fn link_behaves_like_a_second_name(fs: &dyn Storage, dir: &Path) {
    let a = dir.join("000001.sst");
    let b = dir.join("000002.sst");
    write(fs, &a, b"immutable table");
    fs.link(&a, &b).expect("link");
    assert_eq!(fs.read_all(&b).expect("read link"), b"immutable table");
    fs.delete(&a).expect("delete first name");
    assert!(!fs.exists(&a));
    assert_eq!(
        fs.read_all(&b).expect("read after delete"),
        b"immutable table"
    );
    let c = dir.join("000003.sst");
    write(fs, &c, b"other");
    let err = fs.link(&b, &c).expect_err("existing target");
    assert!(err.to_string().contains("000002.sst"), "{err}");
    assert_eq!(fs.read_all(&c).expect("read"), b"other");
}

#[test]
fn local_fs_links_are_hard_links() {
    let tmp = tempfile::tempdir().expect("tempdir");
    link_behaves_like_a_second_name(&LocalFs::new(), tmp.path());
}

#[test]
fn simulated_links_are_hard_links() {
    let fs = FaultInjectingFs::new();
    let dir = Path::new("/db");
    fs.create_dir_all(dir).expect("mkdir");
    link_behaves_like_a_second_name(&fs, dir);
}

#[test]
fn a_simulated_link_is_durable_only_after_its_directory_is_synced() {
    let fs = FaultInjectingFs::new();
    let (src, dst) = (Path::new("/a"), Path::new("/b"));
    fs.create_dir_all(src).expect("mkdir");
    fs.create_dir_all(dst).expect("mkdir");
    write(&fs, &src.join("t"), b"data");
    fs.sync_dir(src).expect("sync src");
    fs.link(&src.join("t"), &dst.join("t")).expect("link");
    fs.crash();
    assert!(!fs.exists(&dst.join("t")), "unsynced link survived a crash");
    fs.link(&src.join("t"), &dst.join("t")).expect("link again");
    fs.sync_dir(dst).expect("sync dst");
    fs.crash();
    assert_eq!(fs.read_all(&dst.join("t")).expect("read"), b"data");
}

#[test]
fn refused_links_fail_and_count_as_nothing() {
    let fs = FaultInjectingFs::new();
    let dir = Path::new("/db");
    fs.create_dir_all(dir).expect("mkdir");
    write(&fs, &dir.join("x"), b"x");
    fs.set_plan(FaultPlan {
        refuse_links: true,
        ..FaultPlan::default()
    });
    let before = fs.mutations();
    let err = fs
        .link(&dir.join("x"), &dir.join("y"))
        .expect_err("refused");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(!fs.exists(&dir.join("y")));
    assert_eq!(fs.mutations(), before);
}
