//! The archive reader against hostile headers. A counting allocator (this crate's unit
//! tests only) measures the most memory each read holds at once, on its own thread.
use super::*;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Write};

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let v = live.get() + delta;
        live.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            note(l.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            note(l.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        note(-(l.size() as i64));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            note(new as i64 - l.size() as i64);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most bytes `f` held allocated at once, beyond what was live before it ran.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, (PEAK.with(Cell::get) - base).max(0) as u64)
}

const SMALL: Limits = Limits {
    max_entries: 64,
    max_name_bytes: 4096,
    max_pax_bytes: 64 * 1024,
    max_file_bytes: 64 * 1024,
    max_wanted_bytes: 128 * 1024,
    max_unpacked_bytes: 64 * 1024 * 1024,
    max_ratio: 1_000_000,
};

/// What one read may hold at most: each capped buffer may double while it grows, plus
/// the readers' own fixed buffers (the inflater's window, the tar crate's skip buffer).
fn bound(l: &Limits) -> u64 {
    2 * (l.max_pax_bytes + 2 * l.max_name_bytes + l.max_wanted_bytes) + 512 * 1024
}

fn is_meta(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "RDS.yaml")
}

/// A tar header block of `kind` for `name` declaring `size`, with a valid checksum.
fn header(kind: u8, name: &[u8], size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(0o644);
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_cksum();
    *h.as_bytes()
}

fn entry(out: &mut Vec<u8>, kind: u8, name: &[u8], data: &[u8]) -> usize {
    let at = out.len();
    out.extend_from_slice(&header(kind, name, data.len() as u64));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    at
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![];
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn read_tar_bytes(bytes: &[u8], limits: &Limits) -> Res<Vec<(PathBuf, Vec<u8>)>> {
    read_files(Cursor::new(bytes), Format::Tar, limits, &is_meta)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn long_names_and_extension_headers_are_capped_before_they_are_read() {
    let big = vec![b'a'; 8 * 1024 * 1024];
    for kind in [b'L', b'K', b'x', b'g'] {
        let mut t = vec![];
        entry(&mut t, kind, b"././@LongLink", &big);
        entry(&mut t, b'0', b"c/RDS.yaml", b"name: x\n");
        let t = finish(t);
        for (format, bytes) in [(Format::Tar, t.clone()), (Format::Tgz, gzip(&t))] {
            let (res, peak) = peak_of(|| read_files(Cursor::new(&bytes[..]), format, &SMALL, &is_meta));
            assert!(matches!(&res, Err(ArchiveError::TooLarge(_))), "{}: {res:?}", kind as char);
            assert!(peak < bound(&SMALL), "type {}: {peak} bytes held", kind as char);
        }
    }
}

#[test]
fn names_come_from_long_names_and_pax_headers() {
    let long = format!("c/{}/RDS.yaml", "d".repeat(300));
    let mut t = vec![];
    entry(&mut t, b'L', b"././@LongLink", long.as_bytes());
    entry(&mut t, b'0', b"c/short", b"one");
    entry(&mut t, b'x', b"pax", &pax(&[("path", "e/RDS.yaml"), ("mtime", "1")]));
    entry(&mut t, b'0', b"e/other", b"two");
    entry(&mut t, b'5', b"e/", b"");
    let files = read_tar_bytes(&finish(t), &Limits::default()).unwrap();
    assert_eq!(files, vec![(PathBuf::from(&long), b"one".to_vec()), (PathBuf::from("e/RDS.yaml"), b"two".to_vec())]);
}

#[test]
fn refuses_what_no_package_needs() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("sparse", {
            let mut t = vec![];
            entry(&mut t, b'S', b"c/RDS.yaml", b"x");
            t
        }),
        ("link", {
            let mut t = vec![];
            entry(&mut t, b'2', b"c/RDS.yaml", b"");
            t
        }),
        ("fifo", {
            let mut t = vec![];
            entry(&mut t, b'6', b"c/f", b"");
            t
        }),
        ("parent", {
            let mut t = vec![];
            entry(&mut t, b'0', b"../RDS.yaml", b"x");
            t
        }),
        ("pax size", {
            let mut t = vec![];
            entry(&mut t, b'x', b"pax", &pax(&[("size", "5")]));
            entry(&mut t, b'0', b"c/RDS.yaml", b"x");
            t
        }),
        ("sparse through PAX", {
            let mut t = vec![];
            entry(&mut t, b'x', b"pax", &pax(&[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")]));
            entry(&mut t, b'0', b"c/RDS.yaml", b"x");
            t
        }),
        ("an entry after the end", {
            let mut t = vec![];
            entry(&mut t, b'0', b"c/RDS.yaml", b"x");
            t.extend_from_slice(&[0u8; 1024]);
            entry(&mut t, b'2', b"../../etc/passwd", b"");
            t
        }),
        ("dangling long name", {
            let mut t = vec![];
            entry(&mut t, b'L', b"././@LongLink", b"c/RDS.yaml");
            t
        }),
    ];
    for (what, t) in cases {
        let res = read_tar_bytes(&finish(t), &Limits::default());
        assert!(matches!(res, Err(ArchiveError::Broken(_))), "{what}: {res:?}");
    }
    // The wanted files are capped one by one and together.
    let mut t = vec![];
    for i in 0..3 {
        entry(&mut t, b'0', format!("c{i}/RDS.yaml").as_bytes(), &vec![b'#'; 60 * 1024]);
    }
    let res = read_tar_bytes(&finish(t), &SMALL);
    assert!(matches!(&res, Err(ArchiveError::TooLarge(m)) if m.contains("together")), "{res:?}");
}

/// A seed archive using every header kind, with where each header starts.
fn seed() -> (Vec<u8>, Vec<usize>) {
    let mut t = vec![];
    let mut at = vec![];
    at.push(entry(&mut t, b'x', b"pax", &pax(&[("path", "c/RDS.yaml")])));
    at.push(entry(&mut t, b'0', b"c/ignored", b"name: x\ncode: x\nversion: 1.0.0\n"));
    at.push(entry(&mut t, b'L', b"././@LongLink", format!("c/{}", "n".repeat(700)).as_bytes()));
    at.push(entry(&mut t, b'0', b"c/short", &[7u8; 3000]));
    at.push(entry(&mut t, b'g', b"global", &pax(&[("comment", "hello")])));
    at.push(entry(&mut t, b'5', b"c/", b""));
    // A large body, which a header mutated into a long name or PAX header would claim.
    at.push(entry(&mut t, b'0', b"c/big", &vec![b'b'; 3 * 1024 * 1024]));
    at.push(entry(&mut t, b'0', b"c/tail", b"t"));
    (finish(t), at)
}

fn set_size(block: &mut [u8], size: u64, binary: bool) {
    let field = &mut block[124..136];
    if binary {
        field.fill(0);
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
    } else {
        let s = format!("{:011o}\0", size.min(0o77777777777));
        field.copy_from_slice(s.as_bytes());
    }
}

fn fix_cksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|b| *b as u32).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn mutated_tar_headers_never_allocate_past_the_caps() {
    let (seed, headers) = seed();
    assert_eq!(read_tar_bytes(&seed, &SMALL).unwrap().len(), 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let sizes = [0u64, 1, 511, 512, 4097, 65537, 1 << 20, 3 << 20, 1 << 30, 1 << 33, u64::MAX >> 1];
    let kinds = b"0\x0057LKxgS12356V";
    let mut worst = 0;
    for round in 0..1500 {
        let mut t = seed.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = headers[rng.random_range(0..headers.len())];
            let block = &mut t[at..at + 512];
            match rng.random_range(0..4) {
                0 => block[156] = kinds[rng.random_range(0..kinds.len())],
                1 => set_size(block, sizes[rng.random_range(0..sizes.len())], rng.random_bool(0.3)),
                2 => {
                    block[156] = kinds[rng.random_range(0..kinds.len())];
                    set_size(block, sizes[rng.random_range(0..sizes.len())], rng.random_bool(0.3));
                }
                _ => {
                    for _ in 0..rng.random_range(1..8) {
                        block[rng.random_range(0..512)] = rng.random();
                    }
                }
            }
            if rng.random_bool(0.9) {
                fix_cksum(block);
            }
        }
        if rng.random_bool(0.1) {
            t.truncate(rng.random_range(0..t.len()));
        }
        let (format, bytes) = if round % 8 == 0 { (Format::Tgz, gzip(&t)) } else { (Format::Tar, t) };
        let (_, peak) = peak_of(|| read_files(Cursor::new(&bytes[..]), format, &SMALL, &is_meta));
        worst = worst.max(peak);
        assert!(peak < bound(&SMALL), "round {round}: {peak} bytes held");
    }
    eprintln!("worst peak over 1500 mutated archives: {worst} bytes (bound {})", bound(&SMALL));
}

#[test]
fn mutated_zips_never_allocate_past_the_caps() {
    let mut z = zip::ZipWriter::new(Cursor::new(vec![]));
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("c/RDS.yaml", opts).unwrap();
    z.write_all(b"name: x\n").unwrap();
    z.start_file(format!("c/{}", "n".repeat(900)), opts).unwrap();
    z.write_all(&[1u8; 5000]).unwrap();
    let seed = z.finish().unwrap().into_inner();
    assert_eq!(read_files(Cursor::new(&seed[..]), Format::Zip, &SMALL, &is_meta).unwrap().len(), 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    for round in 0..1500 {
        let mut z = seed.clone();
        for _ in 0..rng.random_range(1..6) {
            // Mostly in the central directory and the end record, where the lengths are.
            let from = if rng.random_bool(0.8) { z.len().saturating_sub(1100) } else { 0 };
            let i = rng.random_range(from..z.len());
            z[i] = rng.random();
        }
        let (_, peak) = peak_of(|| read_files(Cursor::new(&z[..]), Format::Zip, &SMALL, &is_meta));
        assert!(peak < bound(&SMALL), "round {round}: {peak} bytes held");
    }
}

/// A second gzip member is read and checked like the first: a hostile entry there is
/// refused, as tar and gzip tools would show it.
#[test]
fn every_gzip_member_is_checked() {
    let mut first = vec![];
    entry(&mut first, b'0', b"c/RDS.yaml", b"name: x\n");
    let mut second = vec![];
    entry(&mut second, b'2', b"../../escaped", b"");
    let second = finish(second);
    let mut both = gzip(&first);
    both.extend(gzip(&second));
    let res = read_files(Cursor::new(&both[..]), Format::Tgz, &Limits::default(), &is_meta);
    assert!(matches!(&res, Err(ArchiveError::Broken(m)) if m.contains("'..'")), "{res:?}");
    // Two members of a good archive are one archive.
    let mut good = gzip(&first);
    good.extend(gzip(&finish(vec![])));
    assert_eq!(read_files(Cursor::new(&good[..]), Format::Tgz, &Limits::default(), &is_meta).unwrap().len(), 1);
}

#[test]
fn zip_devices_are_refused() {
    let mut z = zip::ZipWriter::new(Cursor::new(vec![]));
    z.start_file("c/RDS.yaml", zip::write::SimpleFileOptions::default()).unwrap();
    z.write_all(b"name: x\n").unwrap();
    z.start_file("c/dev", zip::write::SimpleFileOptions::default()).unwrap();
    let mut bytes = z.finish().unwrap().into_inner();
    // The writer keeps modes to regular files: make the second central entry a
    // character device, as a hostile zip would (external attributes at offset 38).
    let central: Vec<usize> = bytes.windows(4).enumerate().filter(|(_, w)| *w == b"PK\x01\x02").map(|(i, _)| i).collect();
    let at = central[1] + 38;
    bytes[at..at + 4].copy_from_slice(&((0o020644u32) << 16).to_le_bytes());
    // Made by Unix, so that the mode is read.
    bytes[central[1] + 5] = 3;
    let res = read_files(Cursor::new(&bytes[..]), Format::Zip, &Limits::default(), &is_meta);
    assert!(matches!(&res, Err(ArchiveError::Broken(m)) if m.contains("neither a file")), "{res:?}");
}

#[test]
fn formats() {
    assert_eq!(Format::from_name("a-1.0.0.tar.gz"), Some((Format::TarGz, "a-1.0.0")));
    assert_eq!(Format::from_name("a-1.0.0.TGZ"), Some((Format::Tgz, "a-1.0.0")));
    assert_eq!(Format::from_name("a.zip"), Some((Format::Zip, "a")));
    assert_eq!(Format::from_name("a.rar"), None);
    assert_eq!(Format::from_name(".tgz"), None);
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(vec![]));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn listings_hash_every_file_and_refuse_names_twice() {
    use sha2::Digest;
    let bytes = zip_of(&[("APP-META.xml", b"<a/>"), ("htdocs/index.html", b"hello"), ("scripts/x.sh", b"")]);
    let got = read_listing(Cursor::new(&bytes[..]), Format::Zip, &Limits::default(), &|p| p == Path::new("APP-META.xml"))
        .unwrap();
    assert_eq!(got.wanted, vec![(PathBuf::from("APP-META.xml"), b"<a/>".to_vec())]);
    let names: Vec<_> = got.files.iter().map(|f| (f.path.to_str().unwrap(), f.size)).collect();
    assert_eq!(names, [("APP-META.xml", 4), ("htdocs/index.html", 5), ("scripts/x.sh", 0)]);
    assert_eq!(got.files[1].sha256, hex::encode(sha2::Sha256::digest(b"hello")));
    // The zip writer refuses a name twice; a hostile zip renames the second entry.
    let mut twice = zip_of(&[("a/one", b"1"), ("a/two", b"2")]);
    for at in twice.windows(5).enumerate().filter(|(_, w)| *w == b"a/two").map(|(i, _)| i).collect::<Vec<_>>() {
        twice[at..at + 5].copy_from_slice(b"a/one");
    }
    let res = read_listing(Cursor::new(&twice[..]), Format::Zip, &Limits::default(), &|_| false);
    assert!(matches!(&res, Err(ArchiveError::Broken(m)) if m.contains("twice")), "{res:?}");
}

#[test]
fn an_archive_inflates_to_a_bounded_multiple_of_its_size() {
    // 64 MiB of zeros deflates to about 64 KiB: a thousand times its size.
    let zeros = vec![0u8; 64 << 20];
    let bomb = zip_of(&[("c/RDS.yaml", b"name: x\n"), ("c/zeros", &zeros)]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let started = std::time::Instant::now();
    for res in [
        read_files(Cursor::new(&bomb[..]), Format::Zip, &Limits::default(), &is_meta).map(|_| ()),
        read_listing(Cursor::new(&bomb[..]), Format::Zip, &Limits::default(), &|_| false).map(|_| ()),
    ] {
        assert!(matches!(&res, Err(ArchiveError::TooLarge(m)) if m.contains("times its own size")), "{res:?}");
    }
    // Refused from the sizes the zip declares, before anything is inflated.
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    let mut tar = Vec::new();
    entry(&mut tar, b'0', b"c/RDS.yaml", b"name: x\n");
    entry(&mut tar, b'0', b"c/zeros", &zeros);
    let tgz = gzip(&finish(tar));
    let res = read_files(Cursor::new(&tgz[..]), Format::Tgz, &Limits::default(), &is_meta);
    assert!(matches!(&res, Err(ArchiveError::TooLarge(_))), "{res:?}");
    // The same bytes at an ordinary ratio pass.
    let limits = Limits { max_ratio: 10_000, ..Limits::default() };
    assert_eq!(read_files(Cursor::new(&tgz[..]), Format::Tgz, &limits, &is_meta).unwrap().len(), 1);
}
