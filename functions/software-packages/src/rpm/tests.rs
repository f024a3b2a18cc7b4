use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../tests/fixtures/rpm/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const FIXTURES: [(&str, &str, &str, &str, &str); 8] = [
    ("t-oceanbase-ocp-agent-3.1.2-20210812221645.alios7.x86_64.rpm", "t-oceanbase-ocp-agent", "3.1.2", "20210812221645.alios7", "x86_64"),
    ("oceanbase-ce-4.2.1.0-100000102023092807.el7.x86_64.rpm", "oceanbase-ce", "4.2.1.0", "100000102023092807.el7", "x86_64"),
    ("obproxy-ce-4.2.0.0-7.el7.aarch64.rpm", "obproxy-ce", "4.2.0.0", "7.el7", "aarch64"),
    ("obagent-4.2.0-100000062023080210.el8.x86_64.rpm", "obagent", "4.2.0", "100000062023080210.el8", "x86_64"),
    ("ob-backup-agent-1.1.0-3.el7.x86_64.rpm", "ob-backup-agent", "1.1.0", "3.el7", "x86_64"),
    ("ob-deploy-docs-1.0.0-1.el7.noarch.rpm", "ob-deploy-docs", "1.0.0", "1.el7", "noarch"),
    ("obclient-2.2.2-1.el9.x86_64.rpm", "obclient", "2.2.2", "1", "x86_64"),
    ("renamed-9.9.9-1.el9.noarch.rpm", "obproxy-ce", "4.2.1.0", "11.el8", "x86_64"),
];

#[test]
fn reads_what_rpm_reads_from_the_fixtures() {
    // The expected values are `rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{OS}'`.
    for (file, name, version, release, arch) in FIXTURES {
        let h = read_header(&fixture(file)[..]).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            (h.name.as_deref(), h.version.as_deref(), h.release.as_deref(), h.arch.as_deref(), h.os.as_deref()),
            (Some(name), Some(version), Some(release), Some(arch), Some("linux")),
            "{file}"
        );
        assert!(h.summary.as_deref().is_some_and(|s| s.contains(name)), "{h:?}");
    }
}

/// What a refusal must be: a 400 that says it is not a (readable) RPM.
fn assert_refused(r: Result<RpmHeader>, what: &str) {
    match r {
        Ok(_) => {}
        Err(Error::Invalid(m)) => assert!(m.contains("RPM"), "{what}: {m}"),
        Err(e) => panic!("{what}: not a 400: {e:?}"),
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = fixture(FIXTURES[0].0);
    // Where the main header ends: everything after it is payload, never read.
    let mut ends = None;
    for n in 0..bytes.len() {
        match read_header(&bytes[..n]) {
            Ok(_) => {
                ends.get_or_insert(n);
            }
            Err(Error::Invalid(m)) => {
                assert!(ends.is_none(), "a longer prefix was read at {ends:?}, {n} is refused: {m}");
                assert!(m.contains("RPM"), "{m}");
            }
            Err(e) => panic!("prefix {n}: {e:?}"),
        }
    }
    assert!(ends.is_some_and(|n| n < bytes.len()), "the payload is not read");
}

/// A small deterministic generator, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_fixtures_are_read_or_refused() {
    let mut rng = Rng(0x5eed_0f_0c9);
    for round in 0..4000 {
        let mut bytes = fixture(FIXTURES[round % FIXTURES.len()].0);
        // Mostly the headers: that is where the counts and offsets are.
        let span = if round % 4 == 0 { bytes.len() } else { 1024.min(bytes.len()) };
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(span);
            bytes[at] = match rng.below(4) {
                0 => 0xff,
                1 => 0,
                _ => rng.next() as u8,
            };
        }
        assert_refused(read_header(&bytes[..]), &format!("round {round}"));
    }
}

/// A header as rpm lays it out, from (tag, type, offset, count) entries and a store.
fn header_bytes(entries: &[(i32, u32, u32, u32)], store: &[u8]) -> Vec<u8> {
    let mut h = HEADER_MAGIC.to_vec();
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    h.extend_from_slice(&(store.len() as u32).to_be_bytes());
    for (tag, kind, offset, count) in entries {
        for v in [*tag as u32, *kind, *offset, *count] {
            h.extend_from_slice(&v.to_be_bytes());
        }
    }
    h.extend_from_slice(store);
    h
}

fn rpm_with(main: Vec<u8>) -> Vec<u8> {
    let mut f = fixture(FIXTURES[0].0)[..LEAD_BYTES].to_vec();
    // A signature header of one 5-byte tag, padded to 8.
    f.extend(header_bytes(&[(1000, 7, 0, 5)], b"12345"));
    f.extend_from_slice(&[0; 3]);
    f.extend(main);
    f
}

#[test]
fn generated_headers_read_back_and_hostile_ones_are_refused() {
    let mut rng = Rng(42);
    for round in 0..500 {
        // Random strings in random order in the store, as any writer may lay them out.
        let len = |rng: &mut Rng| 1 + rng.below(40);
        let values: Vec<(i32, String)> = [NAME, VERSION, RELEASE, ARCH]
            .iter()
            .map(|t| (*t, (0..len(&mut rng)).map(|_| (b'a' + rng.below(26) as u8) as char).collect()))
            .collect();
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by_key(|_| rng.next());
        let mut store = vec![0u8; rng.below(16)];
        let mut entries = vec![];
        for i in order {
            entries.push((values[i].0, STRING, store.len() as u32, 1));
            store.extend_from_slice(values[i].1.as_bytes());
            store.push(0);
            store.extend(std::iter::repeat_n(7u8, rng.below(8)));
        }
        let h = read_header(&rpm_with(header_bytes(&entries, &store))[..]).unwrap();
        let get = |t| values.iter().find(|(k, _)| *k == t).map(|(_, v)| v.clone());
        assert_eq!((h.name, h.version, h.release, h.arch), (get(NAME), get(VERSION), get(RELEASE), get(ARCH)), "{round}");
    }
    let s = |v: &str| format!("{v}\0").into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too many tags", {
            let mut h = header_bytes(&[], b"");
            h[8..12].copy_from_slice(&(MAX_INDEX_ENTRIES + 1).to_be_bytes());
            h
        }),
        ("a huge store", {
            let mut h = header_bytes(&[(NAME, STRING, 0, 1)], &s("x"));
            h[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
            h
        }),
        ("an offset past the store", header_bytes(&[(NAME, STRING, 100, 1)], &s("x"))),
        ("overlapping strings", header_bytes(&[(NAME, STRING, 0, 1), (VERSION, STRING, 1, 1)], &s("abc"))),
        ("a name twice", header_bytes(&[(NAME, STRING, 0, 1), (NAME, STRING, 2, 1)], b"a\0b\0")),
        ("an unterminated string", header_bytes(&[(NAME, STRING, 0, 1)], b"abc")),
        ("a string over the cap", header_bytes(&[(NAME, STRING, 0, 1)], &s(&"n".repeat(MAX_STRING_BYTES + 1)))),
        ("a name that is a number", header_bytes(&[(NAME, 4, 0, 1)], &[0, 0, 0, 1])),
        ("a name not UTF-8", header_bytes(&[(NAME, STRING, 0, 1)], b"\xff\xfe\0")),
        ("no header magic", vec![0u8; 64]),
    ];
    for (what, main) in cases {
        match read_header(&rpm_with(main)[..]) {
            Err(Error::Invalid(m)) => assert!(m.contains("RPM"), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // Not an RPM at all, and an RPM with another signature type.
    let e = read_header(&b"PK\x03\x04 a zip file, not an RPM, with enough bytes to fill a lead........................................."[..]);
    assert!(matches!(&e, Err(Error::Invalid(m)) if m.starts_with("not an RPM")), "{e:?}");
    let mut old = rpm_with(header_bytes(&[(NAME, STRING, 0, 1)], &s("x")));
    old[79] = 1;
    assert!(matches!(read_header(&old[..]), Err(Error::Invalid(m)) if m.contains("signature type 1")));
}
